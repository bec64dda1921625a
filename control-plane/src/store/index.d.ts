export type { AuditFilter, KeyFilter, KeyVersionFilter, Store, StoreReader, StoreTx } from './store.js';
export * from './records.js';
export { LATEST_SCHEMA_VERSION, SQLITE_MIGRATIONS, type Migration } from './migrations.js';
export { PG_MIGRATIONS } from './pg-migrations.js';
export { DEFAULT_BUSY_TIMEOUT_MS, SQLITE_FILE, openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
export { DEFAULT_PG_CONNECT_TIMEOUT_MS, DEFAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS, DEFAULT_PG_LOCK_TIMEOUT_MS, DEFAULT_PG_POOL_SIZE, PgStore, openPgStore, type PgStoreOptions, } from './pg-store.js';
export { PG_LOCKS, isPgUrl, parsePgUrl, type PgLocation } from './pg-url.js';
export { STORE_FORMS, openStore, type OpenStoreOptions } from './open.js';
