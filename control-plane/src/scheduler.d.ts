import type { CpContext } from './context.js';
export interface Scheduler {
    /** Starts ticking every settings.schedulerIntervalMs on ctx.clock. */
    start(): void;
    /** One pass: due rotations, pair-version expiry, due destructions, expired join tokens. */
    tick(): Promise<void>;
    /** Stops ticking and waits for a running pass. */
    stop(): Promise<void>;
}
/** Who may run a pass (one replica at a time); see cluster/pg-lease.ts. */
export interface SchedulerLease {
    /** True when this process holds the lease, taking it when free; never throws. */
    tryAcquire(): Promise<boolean>;
}
export interface SchedulerOptions {
    readonly lease?: SchedulerLease | undefined;
}
export declare function createScheduler(ctx: CpContext, options?: SchedulerOptions): Scheduler;
export declare function rotateDuePairs(ctx: CpContext, now: number): Promise<number>;
export declare function expireDuePairVersions(ctx: CpContext, now: number): Promise<number>;
export declare function deleteExpiredJoinTokens(ctx: CpContext, now: number): Promise<number>;
