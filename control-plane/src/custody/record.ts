// Key custody: two levels of keys.
//
//   store key  — 32 random bytes made once per installation. It seals every secret in
//                the store (seal.ts) and keys the audit chain (audit-chain.ts). It is
//                never written anywhere in clear.
//   master key — 32 bytes that only wrap the store key. The wrapped store key is the
//                meta row 'custody' (below). Where the master key lives is the
//                installation's custody kind:
//                  shares — nowhere: split into Shamir shares at `control-plane init
//                           --shares N --threshold K`; people unseal (custody/shares.ts);
//                  file   — a key file outside the data directory (development, or
//                           --master-key-file / KEYMESH_MASTER_KEY; custody/dev-key.ts);
//                  pkcs11 — wrapped by an HSM key (custody/pkcs11.ts): unsealed
//                           unattended at every start.
//
// So a copied data directory (or database) opens nothing, and rekeying (a new master
// key, new shares) re-wraps one row while every replica keeps running: the store key,
// and with it the sealed material and the audit chain, does not change.
//
// Row 'custody', JSON in UTF-8 (no secret in clear):
//   {"v":1,"kind":"shares"|"file"|"pkcs11","installation":"<16 hex>","wrapped":"<base64>",
//    "shares":N,"threshold":K,            (kind "shares")
//    "pkcs11":{"config":{module,slot|tokenLabel,pinFile,keyLabel},"blob":"<base64>"}}  (kind "pkcs11")
// wrapped = seal.ts's format under the master key, identity 'custody:store-key:<installation>'.
// Opening it is the check that a master key (a combination of shares) is the right one:
// the AEAD tag fails for any other.
//
// An installation from before custody has no such row: its material is sealed directly
// under its old DIR/master.key. That key becomes the store key when the installation
// moves (bootstrap.ts: automatically for DIR/master.key, or `control-plane init
// --from-key-file`).
import type { CryptoSuite } from '../../../protocol/src/index.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import type { Pkcs11Config } from './pkcs11.js'
import { createSealer, MASTER_KEY_BYTES } from '../seal.js'
import type { StoreReader, StoreTx } from '../store/store.js'

export const CUSTODY_META = 'custody'
export const CUSTODY_KINDS = ['shares', 'file', 'pkcs11'] as const
export type CustodyKind = (typeof CUSTODY_KINDS)[number]

export interface CustodyRecord {
  readonly v: 1
  readonly kind: CustodyKind
  readonly installation: string
  readonly wrapped: string
  readonly shares?: number
  readonly threshold?: number
  /** Kind "pkcs11": how to reach the HSM key (no PIN, only its file's path) and the master key it wraps (custody/pkcs11.ts). */
  readonly pkcs11?: { readonly config: Pkcs11Config; readonly blob: string }
}

const INSTALLATION = /^[0-9a-f]{16}$/

const wrapIdentity = (installation: string): string => `custody:store-key:${installation}`

export function newInstallationId(suite: CryptoSuite): string {
  return Buffer.from(suite.randomBytes(8)).toString('hex')
}

/** Wraps `storeKey` under `masterKey` into a record of `kind`. */
export function wrapStoreKey(
  suite: CryptoSuite,
  masterKey: Uint8Array,
  storeKey: Uint8Array,
  o: { kind: CustodyKind; installation: string; shares?: number; threshold?: number; pkcs11?: CustodyRecord['pkcs11'] },
): CustodyRecord {
  const sealer = createSealer(masterKey, suite)
  try {
    const wrapped = Buffer.from(sealer.seal(wrapIdentity(o.installation), storeKey)).toString('base64')
    return {
      v: 1, kind: o.kind, installation: o.installation, wrapped,
      ...(o.shares !== undefined ? { shares: o.shares, threshold: o.threshold } : {}),
      ...(o.pkcs11 ? { pkcs11: o.pkcs11 } : {}),
    }
  } finally {
    sealer.wipe()
  }
}

/** The store key, or null when `masterKey` is not the one this record was wrapped under. */
export function unwrapStoreKey(suite: CryptoSuite, record: CustodyRecord, masterKey: Uint8Array): Uint8Array | null {
  if (masterKey.length !== MASTER_KEY_BYTES) return null
  const sealer = createSealer(masterKey, suite)
  try {
    return sealer.unseal(wrapIdentity(record.installation), new Uint8Array(Buffer.from(record.wrapped, 'base64')))
  } catch (e) {
    if (isKeymeshError(e) && e.code === 'CP_ERR_UNSEAL') return null
    throw e
  } finally {
    sealer.wipe()
  }
}

export function parseCustody(bytes: Uint8Array): CustodyRecord {
  let r: Partial<CustodyRecord>
  try {
    r = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<CustodyRecord>
  } catch {
    r = {}
  }
  const ok = r.v === 1 && CUSTODY_KINDS.includes(r.kind as CustodyKind) && typeof r.installation === 'string' && INSTALLATION.test(r.installation) &&
    typeof r.wrapped === 'string' && (r.kind !== 'shares' || (Number.isInteger(r.shares) && Number.isInteger(r.threshold))) &&
    (r.kind !== 'pkcs11' || (typeof r.pkcs11?.blob === 'string' && typeof r.pkcs11.config === 'object'))
  if (!ok) throw cpError('CP_ERR_MASTER_KEY', `the store's meta row ${CUSTODY_META} is malformed; restore the database from a backup`)
  return r as CustodyRecord
}

export async function readCustody(r: StoreReader): Promise<CustodyRecord | null> {
  const bytes = await r.getMeta(CUSTODY_META)
  return bytes ? parseCustody(bytes) : null
}

export async function writeCustody(tx: StoreTx, record: CustodyRecord): Promise<void> {
  await tx.putMeta(CUSTODY_META, new TextEncoder().encode(JSON.stringify(record)))
}

/** What a custody record says about itself, for seal-status and logs. */
export function describeCustody(record: CustodyRecord): { kind: CustodyKind; installation: string; shares?: number; threshold?: number } {
  return { kind: record.kind, installation: record.installation, ...(record.kind === 'shares' ? { shares: record.shares as number, threshold: record.threshold as number } : {}) }
}
