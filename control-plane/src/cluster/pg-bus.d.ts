import type { Logger } from 'pino';
import { type TimerClock } from '../../../platform/src/index.js';
import { type ChangeBus, type ChangeEvent } from '../events.js';
import type { PgLocation } from '../store/pg-url.js';
import type { StoreTx } from '../store/store.js';
export interface PgBusOptions {
    readonly location: PgLocation;
    readonly logger: Logger;
    /** This process's id among the replicas (random per process). */
    readonly replicaId: string;
    /** Largest NOTIFY payload sent, in bytes (PostgreSQL refuses 8,000 and more). */
    readonly maxPayloadBytes?: number;
    /** First reconnection delay; doubles up to maxBackoffMs. */
    readonly minBackoffMs?: number;
    readonly maxBackoffMs?: number;
    /** How often the LISTEN connection pings itself (default 10 s), and how long an answer may take (default 5 s). */
    readonly pingIntervalMs?: number;
    readonly pingTimeoutMs?: number;
    /** How often subscribers get a { kind: 'resync' } anyway (default 60 s). */
    readonly resyncIntervalMs?: number;
    readonly clock?: TimerClock;
    /** [0, 1), for the backoff's jitter. */
    readonly random?: () => number;
}
export interface PgBus extends ChangeBus {
    /** Connects and LISTENs; rejects with CP_ERR_STORE when the database cannot be reached. */
    start(): Promise<void>;
    stage(tx: StoreTx, events: readonly ChangeEvent[]): Promise<boolean>;
    /** 0 while listening for other replicas' changes; else for how long it has not been. */
    downForMs(): number;
    /** Resolves when every NOTIFY sent so far has been answered (sent or logged as failed). */
    flush(): Promise<void>;
    /** Stops listening, waits for pending NOTIFYs, releases both connections. */
    close(): Promise<void>;
}
export declare const DEFAULT_MAX_PAYLOAD_BYTES = 7000;
export declare const DEFAULT_PING_INTERVAL_MS: number;
export declare const DEFAULT_PING_TIMEOUT_MS: number;
export declare const DEFAULT_RESYNC_INTERVAL_MS: number;
export declare function createPgBus(o: PgBusOptions): PgBus;
