import pg from 'pg';
import type { Migration } from './migrations.js';
import { type PgLocation } from './pg-url.js';
import type { Store, StoreReader, StoreTx } from './store.js';
export declare const DEFAULT_PG_POOL_SIZE = 8;
export declare const DEFAULT_PG_CONNECT_TIMEOUT_MS = 5000;
/** Write transactions that may wait for their turn in one process before new ones are refused. */
export declare const DEFAULT_PG_MAX_WAITING_WRITERS = 1000;
/** Idle time after which TCP keepalive probes start on every connection (the OS default is ~2 h). */
export declare const PG_KEEPALIVE_DELAY_MS = 10000;
/**
 * Keepalives the SERVER sends (seconds): it ends the session of a client that
 * vanished without a reset (host or network gone) within ~25 s, and with it the
 * session's advisory locks (the scheduler lease, the write lock) and its LISTEN.
 */
export declare const PG_SERVER_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3";
/**
 * What every connection keymesh opens to PostgreSQL shares: a name in
 * pg_stat_activity, TCP keepalives after 10 s idle, a bounded connect, and the
 * server's keepalives (plus `options`, server settings as `-c name=value`).
 */
export declare function pgConnection(location: PgLocation, applicationName: string, options?: readonly string[]): pg.ClientConfig;
export declare const DEFAULT_PG_LOCK_TIMEOUT_MS = 30000;
export declare const DEFAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60000;
export interface PgStoreOptions {
    /** postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME] (see pg-url.ts). */
    readonly url: string;
    /** Check the schema without migrating, and refuse write transactions. */
    readonly readOnly?: boolean;
    /** Clock for schema_migrations.applied_at and for how long a writer has waited for its connection. */
    readonly now?: () => number;
    /** Migrations to apply; tests pass their own, everyone else takes the default. */
    readonly migrations?: readonly Migration[];
    /** Connections in the pool. */
    readonly poolSize?: number;
    /** How long to wait for a connection (a new one, or a free one from the pool) before CP_ERR_STORE. */
    readonly connectTimeoutMs?: number;
    /** Write transactions that may wait for their turn in this process; more are refused at once (pg-writer-queue.ts). */
    readonly maxWaitingWriters?: number;
    /** How long a transaction waits for a lock (another replica's write transaction) before CP_ERR_STORE. */
    readonly lockTimeoutMs?: number;
    /**
     * The server ends a session left idle inside a transaction this long, so a
     * replica that froze (not died) mid-transaction cannot hold the write lock
     * for ever; a dead one's connection closes at once.
     */
    readonly idleInTransactionTimeoutMs?: number;
    /** application_name of the connections, as pg_stat_activity shows them. */
    readonly applicationName?: string;
    /** Told about errors on idle connections (the pool has already dropped them). */
    readonly onIdleError?: (err: Error) => void;
}
export declare class PgStore implements Store {
    #private;
    /** Where the store lives, for code that opens its own connections there (LISTEN, leases). */
    readonly location: PgLocation;
    readonly readOnly: boolean;
    readonly backend = "postgres";
    constructor(pool: pg.Pool, 
    /** Where the store lives, for code that opens its own connections there (LISTEN, leases). */
    location: PgLocation, readOnly: boolean, o: {
        readonly poolSize: number;
        readonly connectTimeoutMs: number;
        readonly maxWaitingWriters: number;
        readonly now: () => number;
    });
    transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
    read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T>;
    /** Waits for every running transaction, then closes the pool; later calls reject. */
    close(): Promise<void>;
}
/**
 * Opens the PostgreSQL store at `options.url`: creates its schema and applies
 * migrations unless read-only (then checks the schema version instead).
 * Connection failures reject with CP_ERR_STORE "database unreachable at <url>".
 */
export declare function openPgStore(options: PgStoreOptions): Promise<PgStore>;
