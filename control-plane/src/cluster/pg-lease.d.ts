import type { Logger } from 'pino';
import type { SchedulerLease } from '../scheduler.js';
import { type PgLocation } from '../store/pg-url.js';
export interface PgLeaseOptions {
    readonly location: PgLocation;
    readonly logger: Logger;
    /** Shown in pg_stat_activity as keymesh:<replicaId>:lease. */
    readonly replicaId?: string;
    /** Which lock of the installation (default: the scheduler's). */
    readonly lock?: number;
}
export interface PgLease extends SchedulerLease {
    readonly held: boolean;
    /** Releases the lease (by ending its session); tryAcquire() is false afterwards. */
    close(): Promise<void>;
}
export declare function createPgLease(o: PgLeaseOptions): PgLease;
