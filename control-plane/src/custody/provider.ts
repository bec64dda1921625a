// How a starting control plane gets its store key (custody/record.ts), first match:
//   - the store's custody is "shares": it starts sealed; people unseal it (custody/keyring.ts);
//   - "file": the master key from --master-key-file, else KEYMESH_MASTER_KEY, else the
//     development key KEYDIR/<installation>.key (custody/dev-key.ts); missing is
//     CP_ERR_MASTER_KEY naming where it was looked for, a wrong one CP_ERR_MASTER_KEY too;
//   - no custody row, but an identity (a store from before custody): its old master key
//     is the store key: --master-key-file, KEYMESH_MASTER_KEY, else DIR/master.key. One
//     found in DIR/master.key moves out of the data directory once it has shown that it
//     opens the store (moveLegacyKey: a new development master key wraps it,
//     DIR/master.key is removed, the log says so); a given one stays as it is until `control-plane init
//     --from-key-file` moves the installation (replicas share that file);
//   - an empty store: a new installation: a random store key wrapped under the given
//     master key, or under a new development key. Replicas starting at once on one
//     empty database: the first custody row written wins (insertMetaIfAbsent); the
//     others read it and go on as for an existing one.
// Every custody change leaves a pending audit event (meta 'custody-event'): the
// audit chain is keyed from the store key, so it is written at the next unlock
// (bootstrap.ts), in the transaction that removes the row.
import { timingSafeEqual } from 'node:crypto'
import { existsSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'

import type { CryptoSuite } from '../../../protocol/src/index.js'
import type { AuditDetails } from '../audit-chain.js'
import { cpError } from '../errors.js'
import { decodeMasterKeyText, MASTER_KEY_FILE, readMasterKeyFile } from '../master-key.js'
import { createSealer, MASTER_KEY_BYTES, sealIdentity } from '../seal.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import type { Store, StoreTx } from '../store/store.js'
import { createDevKey, devKeyPath } from './dev-key.js'
import { newInstallationId, readCustody, unwrapStoreKey, wrapStoreKey, writeCustody, type CustodyRecord } from './record.js'

export const CUSTODY_EVENT_META = 'custody-event'
/** The meta row that shows a store was initialised before custody (bootstrap.ts's IDENTITY_META). */
const LEGACY_SIGN_META = 'cp-identity'

export const WRONG_MASTER_KEY = 'the master key does not open this store (a replica must use the master key of the first one: --master-key-file)'

export interface CustodyEvent {
  readonly action: string
  readonly reason: string
  readonly details: AuditDetails
}

export interface KeyOptions {
  readonly store: Store
  readonly dataDir: string
  readonly suite: CryptoSuite
  readonly logger: Logger
  readonly masterKeyFile?: string | undefined
  readonly masterKeyEnv?: string | undefined
  /** Where development keys live; without it, a new installation needs a given key. */
  readonly keyDir?: string | undefined
}

export type Opening =
  | { readonly sealed: true; readonly custody: CustodyRecord }
  | {
      readonly sealed: false
      readonly storeKey: Uint8Array
      readonly custody: CustodyRecord | null
    }

export async function writeCustodyEvent(tx: StoreTx, event: CustodyEvent): Promise<void> {
  await tx.putMeta(CUSTODY_EVENT_META, new TextEncoder().encode(JSON.stringify(event)))
}

/** The pending custody event, removed from the store: the caller audits it in the same transaction. */
export async function takeCustodyEvent(tx: StoreTx): Promise<CustodyEvent | null> {
  const bytes = await tx.getMeta(CUSTODY_EVENT_META)
  if (!bytes) return null
  await tx.deleteMeta(CUSTODY_EVENT_META)
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as CustodyEvent
}

function givenKey(o: KeyOptions): { key: Uint8Array; where: string } | null {
  if (o.masterKeyFile !== undefined) return { key: readMasterKeyFile(o.masterKeyFile), where: o.masterKeyFile }
  if (o.masterKeyEnv !== undefined) return { key: decodeMasterKeyText(o.masterKeyEnv, 'KEYMESH_MASTER_KEY'), where: 'KEYMESH_MASTER_KEY' }
  return null
}

function missing(where: string): Error {
  return cpError('CP_ERR_MASTER_KEY', `the key that opens this store is missing: looked for ${where}; give it with --master-key-file (or KEYMESH_MASTER_KEY), or restore the file`)
}

export async function openCustody(o: KeyOptions, retried = false): Promise<Opening> {
  const found = await o.store.read(async (r) => ({ custody: await readCustody(r), legacy: (await r.getMeta(LEGACY_SIGN_META)) !== null }))
  const { custody } = found
  if (custody?.kind === 'shares') {
    const given = givenKey(o)
    if (given) {
      given.key.fill(0)
      o.logger.warn('this store is unsealed with shares (keymesh unseal); the given master key is not used')
    }
    return { sealed: true, custody }
  }
  if (custody?.kind === 'pkcs11') return openWithHsm(o, custody)
  if (custody) {
    const given = givenKey(o)
    let master: Uint8Array
    if (given) master = given.key
    else {
      const path = o.keyDir !== undefined ? devKeyPath(o.keyDir, custody.installation) : undefined
      if (path === undefined || !existsSync(path)) throw missing(path ?? `a development key of installation ${custody.installation} (no key directory is set)`)
      master = readMasterKeyFile(path)
      o.logger.warn({ path }, `master key read from ${path}: a development setting (the file opens the store on its own); for production use keymesh control-plane init --shares`)
    }
    const storeKey = unwrapStoreKey(o.suite, custody, master)
    master.fill(0)
    if (!storeKey) throw cpError('CP_ERR_MASTER_KEY', WRONG_MASTER_KEY)
    return { sealed: false, storeKey, custody }
  }
  if (found.legacy) {
    const given = givenKey(o)
    if (given) return { sealed: false, storeKey: given.key, custody: null }
    const path = join(o.dataDir, MASTER_KEY_FILE)
    if (!existsSync(path)) throw missing(`${path} (this store was made before key custody; its key was in the data directory)`)
    const storeKey = readMasterKeyFile(path)
    return { sealed: false, storeKey, custody: await moveLegacyKey(o, path, storeKey) }
  }
  return newInstallation(o, retried)
}

async function newInstallation(o: KeyOptions, retried: boolean): Promise<Opening> {
  const installation = newInstallationId(o.suite)
  const given = givenKey(o)
  if (!given && o.keyDir === undefined) throw cpError('CP_ERR_MASTER_KEY', 'no master key for a new installation: give --master-key-file or KEYMESH_MASTER_KEY, or run keymesh control-plane init')
  const made = given ? undefined : createDevKey(o.keyDir as string, installation, o.suite.randomBytes)
  const master = given?.key ?? (made?.key as Uint8Array)
  const storeKey = o.suite.randomBytes(MASTER_KEY_BYTES)
  const custody = wrapStoreKey(o.suite, master, storeKey, { kind: 'file', installation })
  master.fill(0)
  const won = await o.store.transaction(async (tx) => {
    if (!(await tx.insertMetaIfAbsent('custody', new TextEncoder().encode(JSON.stringify(custody))))) return false
    await writeCustodyEvent(tx, {
      action: 'custody.init',
      reason: made ? 'first start: development key file' : 'first start: master key given',
      details: { kind: 'file', installation, ...(made ? { path: made.path } : { from: given?.where ?? null }) },
    })
    return true
  })
  if (!won) {
    // Another replica initialised the store meanwhile: its custody row stands.
    storeKey.fill(0)
    if (made) unlinkSync(made.path)
    if (retried) throw cpError('CP_ERR_MASTER_KEY', 'the store\'s custody changed twice during start-up; start again')
    return openCustody(o, true)
  }
  if (made) {
    o.logger.warn({ path: made.path, installation }, `created the master key in ${made.path}: a development setting (the key opens the store on its own); for production use keymesh control-plane init --shares`)
  }
  return { sealed: false, storeKey, custody }
}

/**
 * A legacy DIR/master.key, once it has shown that it opens the store (the identity
 * opens), moves out: it stays the store key, wrapped under a new development master
 * key (or, without a key directory, it stays where it is and the log says so).
 */
async function moveLegacyKey(o: KeyOptions, path: string, storeKey: Uint8Array): Promise<CustodyRecord | null> {
  const identity = (await o.store.read((r) => r.getMeta(LEGACY_SIGN_META))) as Uint8Array
  const check = createSealer(storeKey, o.suite)
  try {
    check.unseal(sealIdentity.meta(LEGACY_SIGN_META), identity).fill(0)
  } catch (e) {
    if (isKeymeshError(e) && e.code === 'CP_ERR_UNSEAL') throw cpError('CP_ERR_MASTER_KEY', `${path}: ${WRONG_MASTER_KEY}`)
    throw e
  } finally {
    check.wipe()
  }
  if (o.keyDir === undefined) {
    o.logger.warn({ path }, 'the master key is in the data directory (a store from before key custody); run keymesh control-plane init --from-key-file to move it')
    return null
  }
  const installation = newInstallationId(o.suite)
  const made = createDevKey(o.keyDir, installation, o.suite.randomBytes)
  const custody = wrapStoreKey(o.suite, made.key, storeKey, { kind: 'file', installation })
  made.key.fill(0)
  await o.store.transaction(async (tx) => {
    await writeCustody(tx, custody)
    await writeCustodyEvent(tx, { action: 'custody.migrate', reason: 'moved the master key out of the data directory', details: { kind: 'file', installation, path: made.path, from: path } })
  })
  // Only once the row is committed: until then the old file is the only way in.
  const old = readMasterKeyFile(path)
  if (timingSafeEqual(old, storeKey)) unlinkSync(path)
  old.fill(0)
  o.logger.warn({ from: path, path: made.path }, `moved the master key out of the data directory to ${made.path} (a development setting); ${path} is removed`)
  return custody
}

/**
 * Offline (audit verify --data-dir): the store key from a master key — unwrapped
 * from the custody row, or, on a store from before custody, the key itself.
 * A key that does not unwrap it is CP_ERR_MASTER_KEY.
 */
export async function storeKeyFromMaster(store: Pick<Store, 'read'>, masterKey: Uint8Array, suite: CryptoSuite): Promise<Uint8Array> {
  const custody = await store.read((r) => readCustody(r))
  if (!custody) return masterKey.slice()
  const storeKey = unwrapStoreKey(suite, custody, masterKey)
  if (!storeKey) throw cpError('CP_ERR_MASTER_KEY', WRONG_MASTER_KEY)
  return storeKey
}

/** Offline: the installation's custody row, for finding its development key. */
export async function custodyOf(store: Pick<Store, 'read'>): Promise<CustodyRecord | null> {
  return store.read((r) => readCustody(r))
}

/**
 * Kind "pkcs11": the HSM unwraps the master key, unattended. An HSM that cannot be
 * used now (unreachable, PIN refused: CP_ERR_PKCS11) leaves the control plane sealed,
 * the log saying why; a blob that does not open under the HSM key (CP_ERR_UNSEAL), or
 * a master key that does not open the store, refuses the start.
 */
async function openWithHsm(o: KeyOptions, custody: CustodyRecord): Promise<Opening> {
  const { pkcs11Unwrap } = await import('./pkcs11.js')
  const hsm = custody.pkcs11 as NonNullable<CustodyRecord['pkcs11']>
  let master: Uint8Array
  try {
    master = await pkcs11Unwrap(hsm.config, new Uint8Array(Buffer.from(hsm.blob, 'base64')))
  } catch (e) {
    if (!isKeymeshError(e) || e.code !== 'CP_ERR_PKCS11') throw e
    o.logger.error({ code: e.code }, `the HSM did not unwrap the master key; staying sealed: ${e.message}`)
    return { sealed: true, custody }
  }
  const storeKey = unwrapStoreKey(o.suite, custody, master)
  master.fill(0)
  if (!storeKey) throw cpError('CP_ERR_MASTER_KEY', 'the master key the HSM unwrapped does not open this store')
  o.logger.info({ module: hsm.config.module, keyLabel: hsm.config.keyLabel }, 'master key unwrapped by the HSM')
  return { sealed: false, storeKey, custody }
}
