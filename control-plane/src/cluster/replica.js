import { createLocalBus } from '../events.js';
import { PgStore } from '../store/pg-store.js';
import { createPgBus } from './pg-bus.js';
import { createPgLease } from './pg-lease.js';
/** Starts listening for other replicas' changes before the caller serves anything. */
export async function startReplica(o) {
    if (!(o.store instanceof PgStore)) {
        return { replicaId: undefined, bus: o.bus ?? createLocalBus(), lease: undefined, listening: undefined, close: async () => { } };
    }
    const { location } = o.store;
    const replicaId = Buffer.from(o.random(8)).toString('hex');
    const logger = o.logger.child({ replicaId });
    let bus = o.bus;
    let pgBus;
    if (!bus) {
        bus = pgBus = createPgBus({ location, logger, replicaId, ...(o.resyncIntervalMs !== undefined ? { resyncIntervalMs: o.resyncIntervalMs } : {}) });
        await pgBus.start().catch(async (e) => {
            await pgBus?.close();
            throw e;
        });
    }
    const lease = createPgLease({ location, logger, replicaId });
    o.logger.info({ replicaId, store: location.display }, 'running as one replica of a shared store');
    return {
        replicaId,
        bus,
        lease,
        listening: pgBus,
        async close() {
            await lease.close();
            await pgBus?.close();
        },
    };
}
//# sourceMappingURL=replica.js.map