// Which replica runs the scheduler: the one holding a session-level advisory lock
// on a connection of its own. PostgreSQL frees the lock when that session ends, so
// when the holder dies (kill -9, lost network) its lock goes with its connection,
// and another replica takes it at its next tick.
//
// What must hold:
// - `held` is true only while the lock's connection is believed alive: on the
//   connection's error or end it turns false at once, and the next tryAcquire()
//   opens a new connection and asks again;
// - tryAcquire() never throws: a database it cannot reach means "not the holder"
//   (logged once per outage);
// - exclusion is for efficiency, not correctness: each scheduled item is
//   re-checked inside its own write transaction, and the store serialises writes
//   across replicas, so two passes that overlap (say, a holder whose half-open
//   connection has not been noticed yet) still change each item once.
//
// A holder that froze or lost its network keeps the lock until the server's
// keepalives end its session (~25 s, PG_SERVER_KEEPALIVES).
import pg from 'pg';
import { pgConnection } from '../store/pg-store.js';
import { PG_LOCKS } from '../store/pg-url.js';
import { pgErrorText } from '../store/pg-errors.js';
export function createPgLease(o) {
    const { location } = o;
    const lock = o.lock ?? PG_LOCKS.scheduler;
    const log = o.logger.child({ component: 'pg-lease', lock });
    let client;
    let held = false;
    let closed = false;
    let unreachable = false;
    let inFlight;
    const drop = (c, err) => {
        if (client !== c)
            return;
        client = undefined;
        if (held)
            log.warn({ err: err ? pgErrorText(err, location) : 'connection ended' }, 'scheduler lease lost with its connection');
        held = false;
        c.end().catch(() => undefined);
    };
    const connect = async () => {
        // TCP and server keepalives (pgConnection): when this replica's host vanishes,
        // the server ends its session, freeing the lock, within ~25 s.
        const c = new pg.Client(pgConnection(location, `keymesh:${o.replicaId ?? 'replica'}:lease`));
        c.on('error', (err) => drop(c, err));
        c.on('end', () => drop(c));
        try {
            await c.connect();
        }
        catch (err) {
            await c.end().catch(() => undefined);
            throw err;
        }
        client = c;
        return c;
    };
    const attempt = async () => {
        if (closed)
            return false;
        if (held)
            return true;
        try {
            const c = client ?? (await connect());
            const { rows } = await c.query('SELECT pg_try_advisory_lock($1, $2) AS ok', [location.lockSpace, lock]);
            if (closed)
                return false;
            if (unreachable)
                log.info('scheduler lease check works again');
            unreachable = false;
            held = client === c && rows[0]?.ok === true;
            if (held)
                log.info('scheduler lease acquired: this replica runs scheduled work');
            return held;
        }
        catch (err) {
            if (!unreachable)
                log.warn({ err: pgErrorText(err, location) }, 'cannot check the scheduler lease (database unreachable or refusing)');
            unreachable = true;
            if (client)
                drop(client, err);
            return false;
        }
    };
    return {
        tryAcquire() {
            inFlight ??= attempt().finally(() => {
                inFlight = undefined;
            });
            return inFlight;
        },
        get held() {
            return held;
        },
        async close() {
            closed = true;
            await inFlight;
            const c = client;
            client = undefined;
            held = false;
            await c?.end().catch(() => undefined);
        },
    };
}
//# sourceMappingURL=pg-lease.js.map