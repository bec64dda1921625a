// Every start, in two steps: openInstallation locks the data directory and opens
// the store (nothing secret); unlockStore, once the store key is there
// (custody/provider.ts at start, or `keymesh unseal`), loads (or creates) the
// control plane's static X25519 identity and makes sure an operator can get in (a
// bootstrap admin token on an empty installation). Paths are logged; contents never are.
//
// On a store shared by several replicas (PostgreSQL) the first to start
// initialises it: identity, DIR/admin.token. Another replica, given the same
// master key (--master-key-file) or unsealed with the same shares, finds both there, writes the same identity.pub
// into its own DIR, and no admin.token (the operator already has one). Write
// transactions are serialised across replicas, so two first starts at once still
// create one identity and one token. A master key that cannot open the store's
// identity fails with CP_ERR_MASTER_KEY.
//
// The audit log is keyed from the store key (audit-chain.ts) and signs
// checkpoints with the installation's Ed25519 key (audit-checkpoint.ts), whose
// seed is sealed in the store (meta 'audit-signing-key') and whose public part
// is written to DIR/audit.pub. Once the store key has proven right (the
// identity opened), the keyed chain is started if it has not been: the bridge
// entry after whatever unkeyed entries the log already holds.
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'

import type { CryptoSuite, KeyPair } from '../../protocol/src/index.js'
import { formatPublicKey, newTokenId } from '../../protocol/src/index.js'
import { AUDIT_ANCHOR_META, CHAIN_START_ACTION, createAuditLog, type AuditLog } from './audit.js'
import { auditChainKey } from './audit-chain.js'
import { AUDIT_SIGNING_SEED_BYTES, auditSignerFromSeed, formatAuditPublicKey, type AuditSigner } from './audit-checkpoint.js'
import type { Clock } from '../../platform/src/index.js'
import { lockDir, type DirLock } from '../../platform/src/index.js'
import { writeFileAtomic } from '../../platform/src/index.js'
import { takeCustodyEvent, WRONG_MASTER_KEY } from './custody/provider.js'
import { cpError } from './errors.js'
import { isKeymeshError } from '../../protocol/src/index.js'
import { hashTokenBytes, newToken } from './policy.js'
import { createSealer, sealIdentity, type Sealer } from './seal.js'
import { openStore } from './store/open.js'
import type { Store, StoreTx } from './store/store.js'

/** Held while a control plane runs on the directory (platform/src/dir-lock.ts). */
export const CP_LOCK_FILE = 'control-plane.lock'
export const IDENTITY_META = 'cp-identity'
export const IDENTITY_PUB_FILE = 'identity.pub'
export const ADMIN_TOKEN_FILE = 'admin.token'
export const AUDIT_SIGNING_META = 'audit-signing-key'
export const AUDIT_PUB_FILE = 'audit.pub'

export interface BootstrapOptions {
  readonly dataDir: string
  readonly suite: CryptoSuite
  readonly clock: Clock
  readonly logger: Logger
  /** An already opened store (tests); otherwise the one `storeUrl` names. */
  readonly store?: Store
  /** `--store`: `sqlite:DIR` or `postgres://…` (store/open.ts); SQLite under dataDir when absent. */
  readonly storeUrl?: string | undefined
}

export interface Opened {
  readonly store: Store
  /** Held until the control plane closes: one control plane per data directory. */
  readonly lock: DirLock
}

/** What the store key opens: held while the control plane is unsealed. */
export interface Unlocked {
  readonly sealer: Sealer
  readonly audit: AuditLog
  readonly identity: KeyPair
  /** Zeroes every key above (seal, close). */
  wipe(): void
}

/** Locks the data directory and opens the store; nothing secret is read or written. */
export async function openInstallation(o: BootstrapOptions): Promise<Opened> {
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 })
  const lock = lockDir(o.dataDir, {
    file: CP_LOCK_FILE,
    owner: 'control plane',
    error: (detail, cause) => cpError('CP_ERR_DATA_DIR', detail, { cause }),
  })
  try {
    return { store: o.store ?? (await openStore(o.storeUrl, o.dataDir)), lock }
  } catch (e) {
    lock.release()
    throw e
  }
}

/**
 * With the store key (custody/provider.ts, custody/keyring.ts): the sealer, the keyed
 * audit log and the identity; on an empty store creates the identity and the bootstrap
 * admin token; audits a pending custody event. A store key that does not open the
 * identity is CP_ERR_MASTER_KEY. `storeKey` stays the caller's.
 */
export async function unlockStore(o: BootstrapOptions, store: Store, storeKey: Uint8Array): Promise<Unlocked> {
  const sealer = createSealer(storeKey, o.suite)
  const chainKey = auditChainKey(storeKey, o.suite)
  const now = (): number => o.clock.now()
  try {
    let identity: KeyPair
    try {
      identity = await loadIdentity(store, sealer, createAuditLog({ suite: o.suite, now, chainKey }), o)
    } catch (e) {
      if (!isKeymeshError(e) || e.code !== 'CP_ERR_UNSEAL') throw e
      throw cpError('CP_ERR_MASTER_KEY', WRONG_MASTER_KEY, { cause: e })
    }
    writeIdentityPub(o.dataDir, identity.publicKey, o.logger)
    const started = await keyedChainStarted(store, o.dataDir)
    const signer = await loadAuditSigner(store, sealer, o.suite)
    checkAuditPub(o.dataDir, signer)
    const audit = createAuditLog({ suite: o.suite, now, chainKey, signer })
    if (!started) await checkUnkeyedLog(createAuditLog({ suite: o.suite, now }), store)
    const bridge = await store.transaction((tx) => audit.startKeyedChain(tx))
    if (bridge) o.logger.info({ seq: bridge.seq }, 'started the keyed audit chain')
    await store.transaction(async (tx) => {
      const event = await takeCustodyEvent(tx)
      if (event) await audit.append(tx, { actor: 'system:custody', target: 'control-plane', outcome: 'ok', ...event })
    })
    writePublicFile(o.dataDir, AUDIT_PUB_FILE, `${formatAuditPublicKey(signer.publicKey)}\n`, o.logger, 'wrote audit public key (checks signed audit checkpoints)')
    return {
      sealer,
      audit,
      identity,
      wipe: () => {
        sealer.wipe()
        chainKey.fill(0)
        identity.secretKey.fill(0)
      },
    }
  } catch (e) {
    sealer.wipe()
    chainKey.fill(0)
    throw e
  }
}

/**
 * True when the store's keyed audit chain has started (its anchor is there). When the
 * anchor is missing but anything shows that the chain had started — DIR/audit.pub,
 * written at that start outside the database; a signed checkpoint; the chain's start
 * entry — someone removed it, and starting a new chain would
 * have this control plane vouch for whatever the log now holds: CP_ERR_AUDIT_KEY.
 * A database writer can erase every sign inside the store, not the file.
 */
async function keyedChainStarted(store: Store, dataDir: string): Promise<boolean> {
  const signs = await store.read(async (r) => ({
    anchor: (await r.getMeta(AUDIT_ANCHOR_META)) !== null,
    checkpoint: (await r.listAuditCheckpoints({ limit: 1 })).length > 0,
    start: (await r.listAuditEntries({ action: CHAIN_START_ACTION, limit: 1 })).length > 0,
  }))
  if (signs.anchor) return true
  const pub = existsSync(join(dataDir, AUDIT_PUB_FILE))
  if (pub || signs.checkpoint || signs.start) {
    const seen = [pub && `${AUDIT_PUB_FILE} in the data directory`, signs.checkpoint && 'signed checkpoints', signs.start && 'the chain\'s start entry'].filter(Boolean).join(', ')
    throw cpError('CP_ERR_AUDIT_KEY', `the keyed audit chain started here before (${seen}), but its anchor is gone from the store: the audit log may have been rewritten; restore the database from a backup, or check it with keymesh audit verify --public-key and a checkpoint kept elsewhere`)
  }
  return false
}

/** DIR/audit.pub, once written, names the one signing key of this installation: another one in the store is a replacement. */
function checkAuditPub(dataDir: string, signer: AuditSigner): void {
  const path = join(dataDir, AUDIT_PUB_FILE)
  if (!existsSync(path)) return
  if (readFileSync(path, 'utf8').trim() !== formatAuditPublicKey(signer.publicKey)) {
    throw cpError('CP_ERR_AUDIT_KEY', `the store's audit signing key is not the one in ${path}: it was replaced; restore the database from a backup`)
  }
}

/**
 * Before a first keyed start bridges the old, unkeyed entries, their hash chain must
 * hold: the bridge vouches for what the log holds at that moment (trust on first
 * use), so it must not vouch for a chain that is already broken.
 */
async function checkUnkeyedLog(unkeyed: AuditLog, store: Store): Promise<void> {
  const result = await unkeyed.verify(store)
  if (!result.ok) {
    throw cpError('CP_ERR_AUDIT_KEY', `the audit log is broken at entry ${result.firstBadSeq} (${result.reason}); a keyed chain is not started over it: restore the database from a backup`)
  }
}

/** The installation's audit signing key: sealed in the store, created on the first start that lacks it. */
async function loadAuditSigner(store: Store, sealer: Sealer, suite: CryptoSuite): Promise<AuditSigner> {
  const identity = sealIdentity.meta(AUDIT_SIGNING_META)
  const sealed = await store.transaction(async (tx) => {
    const existing = await tx.getMeta(AUDIT_SIGNING_META)
    if (existing) return existing
    // The key and the anchor are made together; an anchor without its key means the
    // key was removed, and a silently made new one would vouch for a rewritten log.
    if ((await tx.getMeta(AUDIT_ANCHOR_META)) !== null) {
      throw cpError('CP_ERR_AUDIT_KEY', 'the audit signing key is missing from a store whose keyed audit chain has started; restore the meta row audit-signing-key from a backup')
    }
    const seed = suite.randomBytes(AUDIT_SIGNING_SEED_BYTES)
    const value = sealer.seal(identity, seed)
    seed.fill(0)
    await tx.putMeta(AUDIT_SIGNING_META, value)
    return value
  })
  const seed = sealer.unseal(identity, sealed)
  try {
    return auditSignerFromSeed(seed)
  } finally {
    seed.fill(0)
  }
}

/**
 * Reads the sealed identity, or on an empty store creates it together with the
 * bootstrap admin token, in one transaction: when replicas start on an empty
 * database at once, the one that initialises it is the one whose DIR gets
 * admin.token.
 */
async function loadIdentity(store: Store, sealer: Sealer, audit: AuditLog, o: BootstrapOptions): Promise<KeyPair> {
  const identityName = sealIdentity.meta(IDENTITY_META)
  const sealed = await store.transaction(async (tx) => {
    const existing = await tx.getMeta(IDENTITY_META)
    if (existing) {
      await ensureAdminToken(tx, audit, o)
      return existing
    }
    const pair = o.suite.x25519Generate()
    const value = sealer.seal(identityName, pair.secretKey)
    pair.secretKey.fill(0)
    await tx.putMeta(IDENTITY_META, value)
    await audit.append(tx, {
      actor: 'system:bootstrap',
      action: 'identity.create',
      target: 'control-plane',
      outcome: 'ok',
      reason: 'first start: created the control plane static key',
      details: { identity: formatPublicKey(pair.publicKey) },
    })
    o.logger.info('created control-plane identity')
    await ensureAdminToken(tx, audit, o)
    return value
  })
  const secret = sealer.unseal(identityName, sealed)
  try {
    return o.suite.x25519FromSecret(secret)
  } finally {
    secret.fill(0)
  }
}

function writeIdentityPub(dataDir: string, publicKey: Uint8Array, logger: Logger): void {
  writePublicFile(dataDir, IDENTITY_PUB_FILE, `${formatPublicKey(publicKey)}\n`, logger, 'wrote control-plane public key (agents pin it)')
}

function writePublicFile(dataDir: string, name: string, text: string, logger: Logger, message: string): void {
  const path = join(dataDir, name)
  if (existsSync(path) && readFileSync(path, 'utf8') === text) return
  writeFileAtomic(path, text, 0o644)
  logger.info({ path }, message)
}

/** On an installation with no operator token at all, creates an admin token in DIR/admin.token (0600). */
async function ensureAdminToken(tx: StoreTx, audit: AuditLog, o: BootstrapOptions): Promise<void> {
  const path = join(o.dataDir, ADMIN_TOKEN_FILE)
  const existing = await tx.listOperatorTokens({ includeRevoked: true })
  if (existing.length > 0) return
  const token = newToken(o.suite, 'admin')
  const id = newTokenId(o.suite.randomBytes)
  await tx.insertOperatorToken({
    id,
    name: 'bootstrap-admin',
    tokenHash: hashTokenBytes(o.suite, token),
    role: 'admin',
    createdAt: o.clock.now(),
    expiresAt: null,
    revokedAt: null,
  })
  await audit.append(tx, {
    actor: 'system:bootstrap',
    action: 'token.create',
    target: `token:${id}`,
    outcome: 'ok',
    reason: 'first start: bootstrap admin token',
    details: { tokenId: id, role: 'admin', name: 'bootstrap-admin' },
  })
  // Written inside the transaction: if the file cannot be written, the token
  // is not created either, and the next start tries again.
  writeFileAtomic(path, `${token}\n`, 0o600)
  o.logger.info({ path }, 'created bootstrap admin token')
}
