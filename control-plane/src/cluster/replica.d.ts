import type { Logger } from 'pino';
import type { RandomSource } from '../../../protocol/src/index.js';
import { type ChangeBus } from '../events.js';
import type { ListenState } from '../readiness.js';
import type { SchedulerLease } from '../scheduler.js';
import type { Store } from '../store/store.js';
export interface ReplicaOptions {
    readonly store: Store;
    readonly logger: Logger;
    readonly random: RandomSource;
    /** A bus given by the caller (tests); else one chosen by the store. */
    readonly bus?: ChangeBus | undefined;
    /** How often a PostgreSQL replica resynchronises its agents anyway (CpSettings.resyncIntervalMs). */
    readonly resyncIntervalMs?: number;
}
export interface Replica {
    /** Set when the store is shared (PostgreSQL). */
    readonly replicaId: string | undefined;
    readonly bus: ChangeBus;
    readonly lease: SchedulerLease | undefined;
    /** Whether it hears other replicas' changes (readiness.ts); absent when there are none to hear. */
    readonly listening: ListenState | undefined;
    /** Releases the lease and stops listening. */
    close(): Promise<void>;
}
/** Starts listening for other replicas' changes before the caller serves anything. */
export declare function startReplica(o: ReplicaOptions): Promise<Replica>;
