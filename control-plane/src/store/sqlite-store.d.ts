import { type Migration } from './migrations.js';
import { type SqliteDatabase } from './sqlite-driver.js';
import type { Store, StoreReader, StoreTx } from './store.js';
export declare const SQLITE_FILE = "keymesh.db";
export declare const DEFAULT_BUSY_TIMEOUT_MS = 5000;
export interface SqliteStoreOptions {
    /** The data directory; the database is DIR/keymesh.db. Created (0700) unless read-only. */
    readonly dir: string;
    /** Open an existing store without writing (offline `audit verify`); applies no migrations. */
    readonly readOnly?: boolean;
    /** How long to wait for another process's write lock before CP_ERR_STORE. */
    readonly busyTimeoutMs?: number;
    /** Clock for schema_migrations.applied_at. */
    readonly now?: () => number;
    /** Migrations to apply; tests pass their own, everyone else takes the default. */
    readonly migrations?: readonly Migration[];
}
export declare class SqliteStore implements Store {
    #private;
    readonly readOnly: boolean;
    readonly backend = "sqlite";
    constructor(db: SqliteDatabase, readOnly: boolean);
    transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
    read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T>;
    /** The connection's durability settings, for start-up logs and tests. */
    settings(): {
        journalMode: string;
        synchronous: number;
        foreignKeys: number;
        busyTimeoutMs: number;
    };
    close(): Promise<void>;
}
/** Opens (and, unless read-only, creates and migrates) the SQLite store under `dir`. */
export declare function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore>;
