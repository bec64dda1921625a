// The LISTEN side of the pg bus (pg-bus.ts): one dedicated connection that LISTENs
// on the installation's channel and hands every payload on.
//
// What must hold:
// - a lost connection is replaced, with jittered backoff, until closed; each time
//   it listens again `onRestored` runs (notifications sent meanwhile are lost:
//   PostgreSQL queues nothing for a session that is gone);
// - a connection that went silent (half-open: the database host or the network
//   vanished without a reset) counts as lost: the listener pings itself every
//   `pingIntervalMs` and drops the connection when `SELECT 1` fails or has no
//   answer within `pingTimeoutMs`. The server's keepalives (pgConnection) end
//   the session on its side too;
// - downForMs() tells how long it has not been listening (readiness.ts).
import pg from 'pg';
import { pgConnection } from '../store/pg-store.js';
import { pgErrorText } from '../store/pg-errors.js';
export function createPgListener(o) {
    const { location, logger: log, clock } = o;
    let listener;
    let retry;
    let ping;
    /** The connection whose ping has not been answered yet. */
    let pinging;
    let attempt = 0;
    let closed = false;
    let downSince;
    // Called once per connection that was listening; the first cause wins.
    let lose;
    /** Opens the LISTEN connection; on loss, schedules a reconnection. */
    const listen = async () => {
        const client = new pg.Client(pgConnection(location, `keymesh:${o.replicaId}:listen`));
        // Only a connection that was listening counts as lost: a failed attempt is
        // reported by connect()/query() rejecting (pg emits 'end' for it too).
        let live = false;
        const onLost = (why) => {
            if (!live)
                return;
            live = false;
            if (listener === client)
                listener = undefined;
            downSince ??= clock.now();
            // end() destroys the socket when a query hangs, so a silent peer cannot keep it open.
            client.end().catch(() => undefined);
            if (closed)
                return;
            log.warn({ err: why }, 'LISTEN connection lost; reconnecting');
            schedule();
        };
        client.on('error', (err) => onLost(pgErrorText(err, location)));
        client.on('end', () => onLost('connection ended'));
        client.on('notification', (msg) => o.onPayload(msg.payload ?? ''));
        try {
            await client.connect();
            await client.query(`LISTEN "${location.channel}"`);
        }
        catch (err) {
            await client.end().catch(() => undefined);
            throw err;
        }
        if (closed) {
            await client.end().catch(() => undefined);
            return;
        }
        live = true;
        listener = client;
        lose = onLost;
        downSince = undefined;
    };
    const schedule = () => {
        const ceiling = Math.min(o.maxBackoffMs, o.minBackoffMs * 2 ** attempt);
        attempt++;
        // Jitter spreads the replicas' reconnections after a database restart.
        const delay = ceiling / 2 + (o.random() * ceiling) / 2;
        retry = clock.setTimer(delay, () => {
            retry = undefined;
            if (closed)
                return;
            listen().then(() => {
                if (closed)
                    return;
                attempt = 0;
                o.onRestored();
            }, (err) => {
                log.warn({ err: pgErrorText(err, location), attempt }, 'LISTEN reconnection failed');
                if (!closed)
                    schedule();
            });
        });
    };
    /** Pings the current connection every interval; one ping at a time. */
    const pingLater = () => {
        ping = clock.setTimer(o.pingIntervalMs, () => {
            if (closed)
                return;
            pingLater();
            const client = listener;
            const lost = lose;
            if (!client || !lost || pinging === client)
                return;
            pinging = client;
            // After a long event-loop stall the timer fires before the poll phase reads
            // an answer already waiting in the socket: look again two turns later, so a
            // busy replica does not drop a healthy connection and resync every agent.
            const expired = (turns) => {
                if (pinging !== client)
                    return;
                if (turns > 0)
                    setImmediate(() => expired(turns - 1));
                else
                    lost(`no answer to a ping within ${o.pingTimeoutMs} ms`);
            };
            const timeout = clock.setTimer(o.pingTimeoutMs, () => expired(2));
            const answered = (err) => {
                timeout();
                if (pinging === client)
                    pinging = undefined;
                if (err)
                    lost(`ping failed: ${pgErrorText(err, location)}`);
            };
            client.query('SELECT 1').then(() => answered(), answered);
        });
    };
    return {
        async start() {
            await listen();
            if (!closed)
                pingLater();
        },
        downForMs: () => (downSince === undefined ? 0 : Math.max(0, clock.now() - downSince)),
        async close() {
            if (closed)
                return;
            closed = true;
            retry?.();
            ping?.();
            const client = listener;
            listener = undefined;
            await client?.end().catch(() => undefined);
        },
    };
}
//# sourceMappingURL=pg-listener.js.map