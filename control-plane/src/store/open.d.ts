import type { Migration } from './migrations.js';
import type { PgStoreOptions } from './pg-store.js';
import type { Store } from './store.js';
export interface OpenStoreOptions {
    readonly readOnly?: boolean;
    readonly now?: () => number;
    /** Per back-end, because their SQL differs; each defaults to its own list. */
    readonly sqliteMigrations?: readonly Migration[];
    readonly pgMigrations?: readonly Migration[];
    /** SQLite only. */
    readonly busyTimeoutMs?: number;
    /** PostgreSQL only. */
    readonly pg?: Omit<PgStoreOptions, 'url' | 'readOnly' | 'now' | 'migrations'>;
}
export declare const STORE_FORMS = "sqlite:DIR, or postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]";
/** Opens the store `spec` names; `dataDir` is where SQLite lives when no directory is given. */
export declare function openStore(spec: string | undefined, dataDir: string, options?: OpenStoreOptions): Promise<Store>;
