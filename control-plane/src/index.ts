// The public surface of the control-plane package: what the CLI, the tests of other
// packages and the benches may use. Everything else is internal (test/boundaries.test.ts).
//
// Every CLI command imports this entry, so nothing it loads when imported may pull
// in a server or a database driver: `keymesh key list` makes one HTTP request. What
// would (app.ts: ws, prom-client, pg; pg-store.ts: pg) is exported as an async
// function that imports its module on first call. better-sqlite3 is loaded at the
// first `new Database` (store/sqlite-driver.ts); prom-client by platform's metrics
// at first use. test/cli/light.test.ts keeps this true.
import type * as App from './app.js'
import type * as PgStoreModule from './store/pg-store.js'
import type * as InitModule from './custody/init.js'

export type { AgentEndpointInternals } from './agent-endpoint/endpoint.js'
export { verifyView } from './api/audit.js'
export type { ControlPlane, ControlPlaneOptions } from './app.js'
export { createAuditLog } from './audit.js'
export type { AuditLog } from './audit.js'
export { auditChainKey, auditEntryHash } from './audit-chain.js'
export { checkpointJson, parseAuditPublicKey, parseCheckpoint } from './audit-checkpoint.js'
export { ADMIN_TOKEN_FILE, AUDIT_PUB_FILE, IDENTITY_PUB_FILE } from './bootstrap.js'
export { PKCS11_BLOB_BYTES, pkcs11Config, pkcs11CreateKey, pkcs11Unwrap, pkcs11Wrap } from './custody/pkcs11.js'
export type { Pkcs11Config } from './custody/pkcs11.js'
export { CP_ERRORS, cpError } from './errors.js'
export { bindPort } from './http/bound-port.js'
export type { BoundPort } from './http/bound-port.js'
export { TLS_CERT_FILE, TLS_KEY_FILE, selfSignedCertificate, setupServerTls, tlsSans } from './http/tls.js'
export type { LoadedTls, ServerTls, TlsSetupOptions } from './http/tls.js'
export { devKeyPath } from './custody/dev-key.js'
export { custodyOf, storeKeyFromMaster } from './custody/provider.js'
export { CUSTODY_META, parseCustody, unwrapStoreKey } from './custody/record.js'
export type { CustodyRecord } from './custody/record.js'
export { SHARE_PREFIX, MAX_SHARES, checkShareCounts } from './custody/shares.js'
export type { InitOptions, InitResult } from './custody/init.js'
export type { SealStatus } from './custody/keyring.js'
export { lifecyclePolicy } from './key-lifecycle.js'
export { MASTER_KEY_FILE, decodeMasterKeyText, readMasterKeyFile } from './master-key.js'
export { hashTokenBytes, newToken, parseRights } from './policy.js'
export { createSealer, type Sealer } from './seal.js'
export { rotateDuePairs } from './scheduler.js'
export { destroyDueVersions } from './services/keys.js'
export type { KmsService } from './services/kms.js'
export { checkBackupFile, restoreBackup, writeBackup, type RestoreResult } from './store/backup.js'
export { BackupChecker, LineSplitter, type BackupHeader, type BackupSummary } from './store/backup-format.js'
export { STORE_TABLES, copyStore } from './store/copy.js'
export { SQLITE_MIGRATIONS } from './store/migrations.js'
export { STORE_FORMS, openStore } from './store/open.js'
export type { PgStore } from './store/pg-store.js'
export { PG_LOCKS, isPgUrl, parsePgUrl, redactStoreSpec } from './store/pg-url.js'
export { AUDIT_OUTCOMES, OPERATOR_ROLES } from './store/records.js'
export { Database } from './store/sqlite-driver.js'
export { openSqliteStore } from './store/sqlite-store.js'
export type { Store, StoreTx } from './store/store.js'

/** Starts a control plane (app.ts), loading the server on first call. */
export const startControlPlane: typeof App.startControlPlane = async (o) => (await import('./app.js')).startControlPlane(o)

/** `control-plane init` (custody/init.ts), loading the store on first call. */
export const initCustody: typeof InitModule.initCustody = async (o) => (await import('./custody/init.js')).initCustody(o)

/** Opens the PostgreSQL store (store/pg-store.ts), loading pg on first call. */
export const openPgStore: typeof PgStoreModule.openPgStore = async (o) => (await import('./store/pg-store.js')).openPgStore(o)
