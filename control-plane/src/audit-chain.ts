// The pure core of the audit log: the details guard, canonical JSON, the entry
// hash and a streaming chain verifier. No I/O here; audit.ts drives the store.
//
// hash = SHA-256( "keymesh audit v1" 0x00
//                 || u64be(seq) || i64be(at)
//                 || lp(actor) || lp(action) || lp(target) || lp(outcome) || lp(reason)
//                 || lp(canonical JSON of details)
//                 || prevHash (32 bytes) )
// where lp(s) = u32be(byte length of UTF-8 s) || UTF-8 s. Fixed-width integers
// and length prefixes make the encoding unambiguous: no two different entries
// produce the same byte string (a plain join could move a separator).
//
// The hash chain is public: anyone can recompute it, so on its own it only
// shows accidents. What a database writer cannot forge:
//   - mac = HMAC-SHA-256(chain key, "keymesh audit mac v1" 0x00 || u64be(seq) || hash),
//     chain key = HKDF-SHA256(master key, info "keymesh audit chain v1"). A MAC
//     covers its entry's hash, which covers every entry before it, so the MACs
//     chain too. Entries from before the upgrade have none; the bridge entry
//     (audit.ts) is the first with one, and its MAC covers the old chain.
//   - the anchor, meta 'audit-chain' = u64be(first keyed seq) || HMAC(chain key,
//     "keymesh audit anchor v1" 0x00 || u64be(first keyed seq)): where MACs
//     must start, so removing them all cannot pass for an old log.
//   - signed checkpoints (audit-checkpoint.ts): (seq, hash) under the
//     installation's Ed25519 key, checkable with the public key alone.
import { nodeSuite } from '../../protocol/src/index.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import { cpError } from './errors.js'
import type { AuditHead, AuditRow } from './store/records.js'

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue }
export type AuditDetails = { readonly [key: string]: JsonValue }

export const ZERO_HASH: Uint8Array = new Uint8Array(32)

const DOMAIN = new TextEncoder().encode('keymesh audit v1\0')
const MAC_DOMAIN = new TextEncoder().encode('keymesh audit mac v1\0')
const ANCHOR_DOMAIN = new TextEncoder().encode('keymesh audit anchor v1\0')
const CHAIN_KEY_INFO = new TextEncoder().encode('keymesh audit chain v1')
const utf8 = new TextEncoder()

/** Bytes of a MAC, of the chain key and of the anchor value. */
export const AUDIT_MAC_BYTES = 32
export const AUDIT_ANCHOR_BYTES = 8 + AUDIT_MAC_BYTES

const u64 = (n: number): Uint8Array => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt(n))
  return b
}

/** The key the audit MACs are made with, derived from the master key (see the file comment). */
export function auditChainKey(masterKey: Uint8Array, suite: CryptoSuite = nodeSuite): Uint8Array {
  return suite.hkdfSha256(masterKey, new Uint8Array(0), CHAIN_KEY_INFO, AUDIT_MAC_BYTES)
}

/** The MAC of the entry `seq` whose hash is `hash`. */
export function auditEntryMac(chainKey: Uint8Array, seq: number, hash: Uint8Array, suite: CryptoSuite = nodeSuite): Uint8Array {
  return suite.hmacSha256(chainKey, MAC_DOMAIN, u64(seq), hash)
}

/** The anchor value saying that MACs start at `keyedFrom`. */
export function encodeAuditAnchor(chainKey: Uint8Array, keyedFrom: number, suite: CryptoSuite = nodeSuite): Uint8Array {
  const out = new Uint8Array(AUDIT_ANCHOR_BYTES)
  out.set(u64(keyedFrom), 0)
  out.set(suite.hmacSha256(chainKey, ANCHOR_DOMAIN, u64(keyedFrom)), 8)
  return out
}

/** The first keyed seq an anchor names, or null when it is malformed or not made with this chain key. */
export function decodeAuditAnchor(chainKey: Uint8Array, value: Uint8Array, suite: CryptoSuite = nodeSuite): number | null {
  if (value.length !== AUDIT_ANCHOR_BYTES) return null
  const keyedFrom = Number(new DataView(value.buffer, value.byteOffset, 8).getBigUint64(0))
  if (!Number.isSafeInteger(keyedFrom) || keyedFrom < 1) return null
  return bytesEqual(value.subarray(8), suite.hmacSha256(chainKey, ANCHOR_DOMAIN, u64(keyedFrom))) ? keyedFrom : null
}

// Field names that suggest a secret. "key"/"token" count only as the last word
// (so keyName, keyVersion, tokenId stay usable); the rest anywhere in the name.
const SECRET_WORDS = new Set(['secret', 'secrets', 'material', 'psk', 'password', 'passphrase', 'plaintext', 'private', 'seed'])
const SECRET_LAST_WORDS = new Set(['key', 'keys', 'token', 'tokens'])

function looksSecret(field: string): boolean {
  const words = field.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(/[^a-z0-9]+/).filter(Boolean)
  const last = words[words.length - 1]
  return words.some((w) => SECRET_WORDS.has(w)) || (last !== undefined && SECRET_LAST_WORDS.has(last))
}

function encode(value: unknown, path: string): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw cpError('CP_ERR_AUDIT', `audit details ${path} is not a finite number`)
    return JSON.stringify(value)
  }
  if (value instanceof Uint8Array || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    throw cpError('CP_ERR_AUDIT', `audit details ${path} holds bytes; key material never goes in the audit log`)
  }
  if (Array.isArray(value)) return `[${value.map((v, i) => encode(v, `${path}[${i}]`)).join(',')}]`
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const parts: string[] = []
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k]
      if (v === undefined) continue
      if (looksSecret(k)) throw cpError('CP_ERR_AUDIT', `audit details field ${path}.${k} is named like a secret`)
      parts.push(`${JSON.stringify(k)}:${encode(v, `${path}.${k}`)}`)
    }
    return `{${parts.join(',')}}`
  }
  throw cpError('CP_ERR_AUDIT', `audit details ${path} is not plain JSON`)
}

/**
 * Canonical JSON of a details object (keys sorted at every level, no spaces),
 * after the guard: throws CP_ERR_AUDIT for fields named like secrets
 * (key/secret/token/material/psk/…), byte values, and anything not plain JSON.
 */
export function canonicalDetails(details: AuditDetails): string {
  if (details === null || typeof details !== 'object' || Array.isArray(details)) {
    throw cpError('CP_ERR_AUDIT', 'audit details must be a JSON object')
  }
  return encode(details, 'details')
}

/** The entry hash over everything but the hash itself (see the file comment). */
export function auditEntryHash(row: Omit<AuditRow, 'hash' | 'mac'>, suite: CryptoSuite = nodeSuite): Uint8Array {
  const ints = new Uint8Array(16)
  const view = new DataView(ints.buffer)
  view.setBigUint64(0, BigInt(row.seq))
  view.setBigInt64(8, BigInt(row.at))
  const fields = [row.actor, row.action, row.target, row.outcome, row.reason, row.detailsJson].flatMap((s) => {
    const bytes = utf8.encode(s)
    const len = new Uint8Array(4)
    new DataView(len.buffer).setUint32(0, bytes.length)
    return [len, bytes]
  })
  return suite.sha256(DOMAIN, ints, ...fields, row.prevHash)
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number)
  return diff === 0
}

/**
 * Why a chain is judged broken:
 *   seq-gap, prev-mismatch, hash-mismatch — the rows do not form a chain;
 *   head-mismatch — the chain does not end at the stored head;
 *   mac-mismatch — (master key) an entry from the first keyed seq on has no MAC or a wrong one;
 *   unkeyed — (master key) the anchor is missing or forged, so no entry can be trusted;
 *   checkpoint-mismatch — the chain does not pass through a trusted head
 *     (a signed checkpoint, --expect-head): an entry at or before it was changed;
 *   checkpoint-signature — a checkpoint kept in the store does not verify;
 *   truncated — a trusted head or the anchor names an entry the log no longer has.
 */
export type AuditBreak =
  | 'hash-mismatch' | 'prev-mismatch' | 'seq-gap' | 'head-mismatch'
  | 'mac-mismatch' | 'unkeyed' | 'checkpoint-mismatch' | 'checkpoint-signature' | 'truncated'

export type AuditVerifyResult =
  | {
      readonly ok: true
      readonly count: number
      readonly head: AuditHead
      /** Whether MACs were checked (a chain key was given). */
      readonly macs: 'checked' | 'unchecked'
      /** Trusted heads (signed checkpoints, expected heads) the chain was found to pass through. */
      readonly checkpoints: number
    }
  | { readonly ok: false; readonly firstBadSeq: number; readonly reason: AuditBreak; readonly count: number }

export interface AuditVerifierOptions {
  readonly suite?: CryptoSuite
  /** The chain key: MACs are checked from `keyedFrom` on. */
  readonly chainKey?: Uint8Array | undefined
  /** The first keyed seq, from the anchor; null when the store has no valid anchor. */
  readonly keyedFrom?: number | null | undefined
  /**
   * A head verified before (by this process): checking starts after it, trusting
   * everything up to it. The scheduled verification (health/audit-watch.ts) goes on
   * from where it stopped, so each pass costs what the log grew by.
   */
  readonly from?: AuditHead | undefined
}

/**
 * Checks entries one at a time, in seq order, keeping only the last good link
 * and the trusted heads still ahead: memory bounded by those, whatever the
 * log's length. `count` is the number of intact entries seen before the first break.
 */
export class AuditChainVerifier {
  #last: AuditHead = { seq: 0, hash: ZERO_HASH }
  #count = 0
  #failure: AuditVerifyResult | null = null
  readonly #suite: CryptoSuite
  readonly #chainKey: Uint8Array | undefined
  readonly #keyedFrom: number | null
  readonly #ahead = new Map<number, Uint8Array>()
  #matched = 0

  constructor(options: CryptoSuite | AuditVerifierOptions = {}) {
    const o: AuditVerifierOptions = 'sha256' in options ? { suite: options } : options
    this.#suite = o.suite ?? nodeSuite
    this.#chainKey = o.chainKey
    this.#keyedFrom = o.keyedFrom ?? null
    if (o.from) this.#last = { seq: o.from.seq, hash: o.from.hash }
    // With the key but without a valid anchor, a log stripped of its MACs
    // would look like one from before the upgrade: nothing can be trusted.
    if (this.#chainKey && this.#keyedFrom === null) this.#fail(1, 'unkeyed')
  }

  get lastSeq(): number {
    return this.#last.seq
  }

  /**
   * A head known from outside the rows (a verified checkpoint, --expect-head):
   * the chain must pass through it. One at or before the last checked entry is
   * compared at once.
   */
  expect(head: AuditHead): boolean {
    if (this.#failure) return false
    if (head.seq <= this.#last.seq) {
      // Only the last link is kept; earlier heads must be given before their rows.
      if (head.seq === this.#last.seq && bytesEqual(head.hash, this.#last.hash)) return (++this.#matched, true)
      return this.#fail(head.seq, 'checkpoint-mismatch')
    }
    const known = this.#ahead.get(head.seq)
    if (known && !bytesEqual(known, head.hash)) return this.#fail(head.seq, 'checkpoint-mismatch')
    this.#ahead.set(head.seq, head.hash)
    return true
  }

  /** Marks the chain broken at `seq` for a reason found outside the rows (a bad stored checkpoint). */
  fail(seq: number, reason: AuditBreak): false {
    if (this.#failure) return false
    return this.#fail(seq, reason)
  }

  /** Checks the next row; false once the chain is broken (later rows are not looked at). */
  push(row: AuditRow): boolean {
    if (this.#failure) return false
    const expected = this.#last.seq + 1
    if (row.seq !== expected) return this.#fail(expected, 'seq-gap')
    if (!bytesEqual(row.prevHash, this.#last.hash)) return this.#fail(row.seq, 'prev-mismatch')
    if (!bytesEqual(auditEntryHash(row, this.#suite), row.hash)) return this.#fail(row.seq, 'hash-mismatch')
    if (this.#chainKey && this.#keyedFrom !== null && row.seq >= this.#keyedFrom) {
      const mac = row.mac ?? new Uint8Array(0)
      if (!bytesEqual(auditEntryMac(this.#chainKey, row.seq, row.hash, this.#suite), mac)) return this.#fail(row.seq, 'mac-mismatch')
    }
    const trusted = this.#ahead.get(row.seq)
    if (trusted) {
      this.#ahead.delete(row.seq)
      if (!bytesEqual(trusted, row.hash)) return this.#fail(row.seq, 'checkpoint-mismatch')
      this.#matched++
    }
    this.#last = { seq: row.seq, hash: row.hash }
    this.#count++
    return true
  }

  /**
   * The verdict. With the stored head, a log whose end was cut off or extended,
   * or whose tail was rewritten with recomputed hashes, fails as head-mismatch,
   * naming the first entry the head and the rows disagree on. A trusted head
   * or an anchor beyond the last entry means entries were cut off: truncated.
   */
  finish(head?: AuditHead): AuditVerifyResult {
    if (this.#failure) return this.#failure
    const last = this.#last
    if (head && (head.seq !== last.seq || !bytesEqual(head.hash, last.hash))) {
      const firstBadSeq = head.seq === last.seq ? last.seq : Math.min(head.seq, last.seq) + 1
      return { ok: false, firstBadSeq, reason: 'head-mismatch', count: this.#count }
    }
    const keyedBeyond = this.#chainKey !== undefined && this.#keyedFrom !== null && this.#keyedFrom > last.seq
    if (this.#ahead.size > 0 || keyedBeyond) return { ok: false, firstBadSeq: last.seq + 1, reason: 'truncated', count: this.#count }
    return { ok: true, count: this.#count, head: last, macs: this.#chainKey ? 'checked' : 'unchecked', checkpoints: this.#matched }
  }

  #fail(firstBadSeq: number, reason: AuditBreak): false {
    this.#failure = { ok: false, firstBadSeq, reason, count: this.#count }
    return false
  }
}

/** Verifies rows (in seq order, sync or async iterable) against an optional stored head. */
export async function verifyAuditChain(
  rows: Iterable<AuditRow> | AsyncIterable<AuditRow>,
  head?: AuditHead,
  options: CryptoSuite | AuditVerifierOptions = {},
): Promise<AuditVerifyResult> {
  const v = new AuditChainVerifier(options)
  for await (const row of rows) if (!v.push(row)) break
  return v.finish(head)
}
