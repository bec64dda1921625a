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
import { nodeSuite } from '../../protocol/src/index.js'
import type { CryptoSuite } from '../../protocol/src/index.js'
import { cpError } from './errors.js'
import type { AuditHead, AuditRow } from './store/records.js'

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue }
export type AuditDetails = { readonly [key: string]: JsonValue }

export const ZERO_HASH: Uint8Array = new Uint8Array(32)

const DOMAIN = new TextEncoder().encode('keymesh audit v1\0')
const utf8 = new TextEncoder()

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
export function auditEntryHash(row: Omit<AuditRow, 'hash'>, suite: CryptoSuite = nodeSuite): Uint8Array {
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

export type AuditBreak = 'hash-mismatch' | 'prev-mismatch' | 'seq-gap' | 'head-mismatch'

export type AuditVerifyResult =
  | { readonly ok: true; readonly count: number; readonly head: AuditHead }
  | { readonly ok: false; readonly firstBadSeq: number; readonly reason: AuditBreak; readonly count: number }

/**
 * Checks entries one at a time, in seq order, keeping only the last good link:
 * constant memory whatever the log's length. `count` is the number of intact
 * entries seen before the first break.
 */
export class AuditChainVerifier {
  #last: AuditHead = { seq: 0, hash: ZERO_HASH }
  #count = 0
  #failure: AuditVerifyResult | null = null

  constructor(private readonly suite: CryptoSuite = nodeSuite) {}

  get lastSeq(): number {
    return this.#last.seq
  }

  /** Checks the next row; false once the chain is broken (later rows are not looked at). */
  push(row: AuditRow): boolean {
    if (this.#failure) return false
    const expected = this.#last.seq + 1
    if (row.seq !== expected) return this.#fail(expected, 'seq-gap')
    if (!bytesEqual(row.prevHash, this.#last.hash)) return this.#fail(row.seq, 'prev-mismatch')
    if (!bytesEqual(auditEntryHash(row, this.suite), row.hash)) return this.#fail(row.seq, 'hash-mismatch')
    this.#last = { seq: row.seq, hash: row.hash }
    this.#count++
    return true
  }

  /**
   * The verdict. With the stored head, a log whose end was cut off or extended,
   * or whose tail was rewritten with recomputed hashes, fails as head-mismatch,
   * naming the first entry the head and the rows disagree on.
   */
  finish(head?: AuditHead): AuditVerifyResult {
    if (this.#failure) return this.#failure
    const last = this.#last
    if (head && (head.seq !== last.seq || !bytesEqual(head.hash, last.hash))) {
      const firstBadSeq = head.seq === last.seq ? last.seq : Math.min(head.seq, last.seq) + 1
      return { ok: false, firstBadSeq, reason: 'head-mismatch', count: this.#count }
    }
    return { ok: true, count: this.#count, head: last }
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
  suite: CryptoSuite = nodeSuite,
): Promise<AuditVerifyResult> {
  const v = new AuditChainVerifier(suite)
  for await (const row of rows) if (!v.push(row)) break
  return v.finish(head)
}
