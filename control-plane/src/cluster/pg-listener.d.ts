import type { Logger } from 'pino';
import type { TimerClock } from '../../../platform/src/index.js';
import type { PgLocation } from '../store/pg-url.js';
export interface PgListenerOptions {
    readonly location: PgLocation;
    readonly logger: Logger;
    readonly replicaId: string;
    readonly clock: TimerClock;
    /** [0, 1), for the backoff's jitter. */
    readonly random: () => number;
    readonly minBackoffMs: number;
    readonly maxBackoffMs: number;
    readonly pingIntervalMs: number;
    readonly pingTimeoutMs: number;
    onPayload(payload: string): void;
    onRestored(): void;
}
export interface PgListener {
    /** Connects and LISTENs; rejects (with pg's error) when that fails. */
    start(): Promise<void>;
    /** 0 while listening; else how long since the connection was lost. */
    downForMs(): number;
    close(): Promise<void>;
}
export declare function createPgListener(o: PgListenerOptions): PgListener;
