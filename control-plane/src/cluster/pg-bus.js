// The change bus of a replica that shares its PostgreSQL database with others:
// a change reaches this replica's subscribers at once and every other replica
// through NOTIFY; one dedicated connection LISTENs for theirs (pg-listener.ts).
//
// What must hold:
// - a change made in a transaction reaches the other replicas exactly when that
//   transaction commits: stage() NOTIFYs inside it (PostgreSQL delivers at COMMIT
//   and drops on rollback), and the publish({ staged: true }) that follows the
//   commit tells local subscribers only. So a replica killed right after COMMIT,
//   or a broken NOTIFY connection, cannot keep a rotation or revocation from the
//   others. publish() without `staged` (a change not born in a transaction)
//   NOTIFYs on a connection of its own, after the fact;
// - a publisher's own subscribers hear each event once: notifications carry the
//   sender's replicaId and a replica drops its own echo;
// - a NOTIFY payload stays under PostgreSQL's 8,000-byte limit: a 'services' event
//   too big for one is split into several, which together name every service;
// - notifications sent while the LISTEN connection is down are lost, so once it
//   listens again the bus emits { kind: 'resync' } locally and the hub recomputes
//   every key set; as a safety net it also does so every `resyncIntervalMs`;
// - a malformed notification is logged and dropped, never thrown.
import pg from 'pg';
import { MINUTE, SECOND, systemClock } from '../../../platform/src/index.js';
import { cpError } from '../errors.js';
import { createLocalBus } from '../events.js';
import { pgConnection } from '../store/pg-store.js';
import { pgErrorText } from '../store/pg-errors.js';
import { decodeNotification, encodeNotifications } from './notification.js';
import { createPgListener } from './pg-listener.js';
export const DEFAULT_MAX_PAYLOAD_BYTES = 7_000;
export const DEFAULT_PING_INTERVAL_MS = 10 * SECOND;
export const DEFAULT_PING_TIMEOUT_MS = 5 * SECOND;
export const DEFAULT_RESYNC_INTERVAL_MS = MINUTE;
export function createPgBus(o) {
    const { location, logger, replicaId } = o;
    const clock = o.clock ?? systemClock;
    const maxPayload = o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    const resyncInterval = o.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    const local = createLocalBus();
    const log = logger.child({ component: 'pg-bus', channel: location.channel });
    // One connection for NOTIFY, so notifications leave in the order they were published.
    // Named in pg_stat_activity, so an operator sees which replica holds what.
    const sender = new pg.Pool({ ...pgConnection(location, `keymesh:${replicaId}:notify`), max: 1, idleTimeoutMillis: 30_000 });
    sender.on('error', (err) => log.warn({ err: pgErrorText(err, location) }, 'NOTIFY connection failed while idle'));
    const pending = new Set();
    let closed = false;
    let resync;
    const listener = createPgListener({
        location,
        logger: log,
        replicaId,
        clock,
        random: o.random ?? Math.random,
        minBackoffMs: o.minBackoffMs ?? 250,
        maxBackoffMs: o.maxBackoffMs ?? 5_000,
        pingIntervalMs: o.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
        pingTimeoutMs: o.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
        // The connection LISTENs on one channel only, so every notification is ours.
        onPayload(payload) {
            const decoded = decodeNotification(payload);
            if (!decoded.ok) {
                log.warn({ why: decoded.why }, 'dropped a malformed change notification');
                return;
            }
            if (decoded.replicaId === replicaId)
                return;
            local.publish(decoded.event);
        },
        onRestored() {
            log.info('LISTEN connection restored; resynchronising connected agents');
            local.publish({ kind: 'resync', reason: 'change notifications may have been missed while the LISTEN connection was down' });
        },
    });
    const resyncLater = () => {
        resync = clock.setTimer(resyncInterval, () => {
            if (closed)
                return;
            log.debug('periodic resynchronisation of connected agents');
            local.publish({ kind: 'resync', reason: 'periodic check for changes missed from other replicas' });
            resyncLater();
        });
    };
    const notify = (event) => {
        if (closed) {
            log.debug({ kind: event.kind }, 'bus closed; change not sent to other replicas');
            return;
        }
        for (const payload of encodeNotifications(replicaId, event, maxPayload)) {
            // The change is already committed; a NOTIFY that fails cannot undo it. It is
            // logged, and the agents on other replicas catch up at their next resync.
            const p = sender
                .query('SELECT pg_notify($1, $2)', [location.channel, payload])
                .then(() => undefined, (err) => log.error({ err: pgErrorText(err, location), kind: event.kind }, 'could not notify other replicas of a change'))
                .finally(() => pending.delete(p));
            pending.add(p);
        }
    };
    const flush = async () => {
        while (pending.size > 0)
            await Promise.all([...pending]);
    };
    return {
        publish(event, options) {
            // Sent first, so that a local subscriber that throws cannot keep the change from the others.
            if (event.kind !== 'resync' && options?.staged !== true)
                notify(event);
            local.publish(event);
        },
        subscribe: (fn) => local.subscribe(fn),
        async stage(tx, events) {
            if (!tx.notify)
                return false;
            for (const event of events) {
                if (event.kind === 'resync')
                    continue;
                for (const payload of encodeNotifications(replicaId, event, maxPayload))
                    await tx.notify(location.channel, payload);
            }
            return true;
        },
        async start() {
            try {
                await listener.start();
            }
            catch (cause) {
                throw cpError('CP_ERR_STORE', `cannot LISTEN for changes at ${location.display}: ${pgErrorText(cause, location)}`, { cause });
            }
            if (closed)
                return;
            log.info('listening for changes from other replicas');
            resyncLater();
        },
        downForMs: () => listener.downForMs(),
        flush,
        async close() {
            if (closed)
                return;
            closed = true;
            resync?.();
            await listener.close();
            await flush();
            await sender.end().catch(() => undefined);
        },
    };
}
//# sourceMappingURL=pg-bus.js.map