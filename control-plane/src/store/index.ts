// The store's public surface: the interface, the record types, and the SQLite
// back-end. Callers depend on `Store`/`StoreTx`, never on a back-end's class.
export type { AuditFilter, KeyFilter, KeyVersionFilter, Store, StoreReader, StoreTx } from './store.js'
export * from './records.js'
export { LATEST_SCHEMA_VERSION, SQLITE_MIGRATIONS, type Migration } from './migrations.js'
export { DEFAULT_BUSY_TIMEOUT_MS, SQLITE_FILE, openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js'
