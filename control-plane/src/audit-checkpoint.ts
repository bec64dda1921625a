// Signed audit checkpoints: the installation's Ed25519 key (node:crypto) signs
// "the chain's entry `seq` had hash `hash`, at `at`", so that anyone holding only
// the public key (DIR/audit.pub, or a copy pinned elsewhere) can later check
// that a log still passes through that point: a rewrite or a truncation of
// anything up to `seq` shows, without the master key.
//
// Signed message = "keymesh audit checkpoint v1" 0x00 || u64be(seq) || i64be(at) || hash (32 bytes)
// The secret is the 32-byte Ed25519 seed, sealed under the master key in the
// store (meta 'audit-signing-key'); the public key text is `ed25519:` + unpadded
// base64url, like the control plane's `x25519:` identity.
//
// Exported form (`keymesh audit checkpoint --json`):
//   {"format":"keymesh-audit-checkpoint-v1","seq":…,"hash":"<hex>","at":<ms>,
//    "time":"<ISO>","signer":"ed25519:…","signature":"<base64url>"}
// `signer` says which key made it; a verifier checks it against the key it
// trusts, never against this field.
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'

import { cpError } from './errors.js'
import type { AuditCheckpointRecord, AuditHead } from './store/records.js'

export const AUDIT_SIGNING_SEED_BYTES = 32
export const AUDIT_SIGNATURE_BYTES = 64
export const AUDIT_PUBLIC_KEY_PREFIX = 'ed25519:'
export const CHECKPOINT_FORMAT = 'keymesh-audit-checkpoint-v1'

const DOMAIN = new TextEncoder().encode('keymesh audit checkpoint v1\0')
// DER wrappers of a raw Ed25519 key (RFC 8410): node:crypto imports keys only in these forms.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const PUBLIC_TEXT = /^ed25519:[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

export interface AuditSigner {
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array
}

/** The signer of a 32-byte seed; the seed is not kept (node:crypto holds the key). */
export function auditSignerFromSeed(seed: Uint8Array): AuditSigner {
  if (seed.length !== AUDIT_SIGNING_SEED_BYTES) throw cpError('CP_ERR_AUDIT_KEY', `the audit signing seed must be ${AUDIT_SIGNING_SEED_BYTES} bytes`)
  const der = Buffer.concat([PKCS8_PREFIX, seed])
  let key: KeyObject
  try {
    key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })
  } finally {
    der.fill(0)
  }
  const publicKey = new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length))
  return { publicKey, sign: (message) => new Uint8Array(sign(null, message, key)) }
}

export function formatAuditPublicKey(publicKey: Uint8Array): string {
  return AUDIT_PUBLIC_KEY_PREFIX + Buffer.from(publicKey).toString('base64url')
}

/** The 32 bytes of an `ed25519:` public key text (surrounding whitespace allowed); CP_ERR_AUDIT_KEY otherwise. */
export function parseAuditPublicKey(text: string): Uint8Array {
  const t = text.trim()
  const bytes = PUBLIC_TEXT.test(t) ? Buffer.from(t.slice(AUDIT_PUBLIC_KEY_PREFIX.length), 'base64url') : undefined
  if (bytes === undefined || bytes.length !== 32 || formatAuditPublicKey(bytes) !== t) {
    throw cpError('CP_ERR_AUDIT_KEY', 'not an audit public key (ed25519: and 43 base64url characters)')
  }
  return new Uint8Array(bytes)
}

function message(seq: number, at: number, hash: Uint8Array): Uint8Array {
  const ints = new Uint8Array(16)
  const view = new DataView(ints.buffer)
  view.setBigUint64(0, BigInt(seq))
  view.setBigInt64(8, BigInt(at))
  return Buffer.concat([DOMAIN, ints, hash])
}

/** A checkpoint of `head`, signed now. */
export function signCheckpoint(signer: AuditSigner, head: AuditHead, at: number): AuditCheckpointRecord {
  return { seq: head.seq, hash: head.hash, at, signature: signer.sign(message(head.seq, at, head.hash)) }
}

/** Whether `publicKey` signed this checkpoint. Never throws on malformed input. */
export function checkpointSignedBy(publicKey: Uint8Array, c: AuditCheckpointRecord): boolean {
  if (publicKey.length !== 32 || c.hash.length !== 32 || c.signature.length !== AUDIT_SIGNATURE_BYTES) return false
  if (!Number.isSafeInteger(c.seq) || c.seq < 1 || !Number.isSafeInteger(c.at)) return false
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    return verify(null, message(c.seq, c.at, c.hash), key, c.signature)
  } catch {
    return false
  }
}

/** The exported form (see the file comment). */
export function checkpointJson(c: AuditCheckpointRecord, publicKey: Uint8Array): Record<string, unknown> {
  return {
    format: CHECKPOINT_FORMAT,
    seq: c.seq,
    hash: Buffer.from(c.hash).toString('hex'),
    at: c.at,
    time: new Date(c.at).toISOString(),
    signer: formatAuditPublicKey(publicKey),
    signature: Buffer.from(c.signature).toString('base64url'),
  }
}

/**
 * Reads an exported checkpoint and checks its signature against the trusted
 * `publicKey`; CP_ERR_AUDIT_CHECKPOINT when it is malformed or not signed by it.
 */
export function parseCheckpoint(text: string, publicKey: Uint8Array): AuditCheckpointRecord {
  let v: Record<string, unknown>
  try {
    v = JSON.parse(text) as Record<string, unknown>
  } catch {
    throw cpError('CP_ERR_AUDIT_CHECKPOINT', 'not JSON')
  }
  if (v === null || typeof v !== 'object' || v['format'] !== CHECKPOINT_FORMAT) throw cpError('CP_ERR_AUDIT_CHECKPOINT', `format is not ${CHECKPOINT_FORMAT}`)
  const { seq, hash, at, signature } = v
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) throw cpError('CP_ERR_AUDIT_CHECKPOINT', 'seq must be a positive integer')
  if (typeof at !== 'number' || !Number.isSafeInteger(at)) throw cpError('CP_ERR_AUDIT_CHECKPOINT', 'at must be an integer')
  if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) throw cpError('CP_ERR_AUDIT_CHECKPOINT', 'hash must be 64 lowercase hex digits')
  if (typeof signature !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(signature)) throw cpError('CP_ERR_AUDIT_CHECKPOINT', 'signature must be 64 bytes in base64url')
  const c: AuditCheckpointRecord = { seq, at, hash: new Uint8Array(Buffer.from(hash, 'hex')), signature: new Uint8Array(Buffer.from(signature, 'base64url')) }
  if (!checkpointSignedBy(publicKey, c)) throw cpError('CP_ERR_AUDIT_CHECKPOINT', 'the signature does not verify with the trusted audit public key')
  return c
}
