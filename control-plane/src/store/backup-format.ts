// The backup file format (`keymesh backup`, GET /v1/sys/backup): the pure part.
// Lines in, verdicts out; backup.ts reads and writes the files and the stores.
//
// Format "keymesh-backup", version 1: UTF-8 text, one JSON value per line, each
// line ended by "\n".
//   1. The header:
//        {"format":"keymesh-backup","version":1,"createdAt":MS,"schemaVersion":N,
//         "identity":HEX|null,"auditHead":{"seq":N,"hash":HEX},"tables":{"meta":N,…}}
//      identity is the control plane's static X25519 public key when the maker
//      knew it (an online backup; offline ones say null). tables counts the rows
//      of every table of STORE_TABLES (copy.ts), in that order.
//   2. The rows, tables in STORE_TABLES order, each table's rows in primary-key
//      order: {"t":TABLE,"r":{COLUMN:VALUE,…}}. A value is a number, a string,
//      null, or bytes as {"b64":BASE64}. Sealed values (key material, the
//      identity, the audit signing key) stay sealed: nothing here opens them.
//   3. The trailer: {"end":"keymesh-backup","rows":TOTAL,"sha256":HEX[,"seal":BASE64]},
//      sha256 over every byte before the trailer line. Nothing follows it.
//
// The checksum finds a truncated or damaged file. It is not a signature: whoever
// can write the file can recompute it. The seal is what such a writer cannot
// forge: when the maker held the master key (always online, offline with
// --master-key-file), it is the installation's Sealer (seal.ts) applied to an
// empty plaintext under the record identity "backup:<sha256 hex>", so the AEAD
// tag authenticates the checksum, and with it every byte, under a key derived
// from the master key. No new primitive: the seal format and key of seal.ts.
// Given the master key, a reader opens it (CP_ERR_BACKUP_SEAL when it does not
// open) and checks the audit MACs from the anchor on.
import { createHash, type Hash } from 'node:crypto'

import { nodeSuite } from '../../../protocol/src/index.js'
import type { CryptoSuite } from '../../../protocol/src/index.js'
import { AUDIT_ANCHOR_META } from '../audit.js'
import { AuditChainVerifier, bytesEqual, decodeAuditAnchor, type AuditVerifyResult } from '../audit-chain.js'
import { cpError } from '../errors.js'
import type { Sealer } from '../seal.js'
import { STORE_TABLES } from './copy.js'
import type { AuditHead } from './records.js'
import { toAuditRow, type Row } from './sql-rows.js'

export const BACKUP_FORMAT = 'keymesh-backup'
export const BACKUP_VERSION = 1
/** The longest line a reader accepts; a row is a few KiB at most. */
export const MAX_BACKUP_LINE = 16 * 1024 * 1024

export interface BackupHeader {
  readonly format: typeof BACKUP_FORMAT
  readonly version: typeof BACKUP_VERSION
  readonly createdAt: number
  readonly schemaVersion: number
  /** Hex of the control plane's static public key, when known. */
  readonly identity: string | null
  readonly auditHead: { readonly seq: number; readonly hash: string }
  /** Rows per table, in STORE_TABLES order. */
  readonly tables: Readonly<Record<string, number>>
}

export interface BackupSummary {
  readonly header: BackupHeader
  readonly rows: number
  /** Hex of the checksum, as the trailer holds it. */
  readonly sha256: string
  /** The audit chain as checked: entries, and whether MACs were (a chain key was given). */
  readonly audit: { readonly count: number; readonly macs: 'checked' | 'unchecked' }
  /** The trailer's seal: opened with the master key, present but not opened (no key given), or absent. */
  readonly seal: 'verified' | 'unchecked' | 'absent'
}

/** The record identity a backup's seal is made under (see the file comment). */
export const backupSealIdentity = (sha256Hex: string): string => `backup:${sha256Hex}`

const TABLE_INDEX = new Map(STORE_TABLES.map((t, i) => [t.name, i]))
const HEX32 = /^[0-9a-f]{64}$/
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype

const corrupt = (why: string): Error => cpError('CP_ERR_BACKUP_CORRUPT', why)

// ---- Writing --------------------------------------------------------------------

function encodeValue(v: unknown): unknown {
  if (v === null || typeof v === 'number' || typeof v === 'string') return v
  if (v instanceof Uint8Array) return { b64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') }
  throw cpError('CP_ERR_STORE', `a stored value of type ${typeof v} cannot be backed up`)
}

export function headerLine(h: Omit<BackupHeader, 'format' | 'version'>): string {
  return `${JSON.stringify({ format: BACKUP_FORMAT, version: BACKUP_VERSION, ...h })}\n`
}

/** Row lines of one page of `table`, as driver rows come from SqlQueries.exportRows. */
export function rowLines(table: string, rows: readonly Row[]): string {
  let out = ''
  for (const r of rows) {
    const encoded: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(r)) encoded[k] = encodeValue(v)
    out += `${JSON.stringify({ t: table, r: encoded })}\n`
  }
  return out
}

/** The trailer; with a sealer, sealed (see the file comment). */
export function trailerLine(rows: number, sha256: Uint8Array, sealer?: Pick<Sealer, 'seal'>): string {
  const sum = hex(sha256)
  const seal = sealer ? { seal: Buffer.from(sealer.seal(backupSealIdentity(sum), new Uint8Array(0))).toString('base64') } : {}
  return `${JSON.stringify({ end: BACKUP_FORMAT, rows, sha256: sum, ...seal })}\n`
}

export const newChecksum = (): Hash => createHash('sha256')

// ---- Reading --------------------------------------------------------------------

function decodeValue(v: unknown, where: string): unknown {
  if (v === null || typeof v === 'number' || typeof v === 'string') return v
  if (isPlainObject(v) && typeof v.b64 === 'string' && Object.keys(v).length === 1) return Buffer.from(v.b64, 'base64')
  throw corrupt(`${where} holds a value that is neither a number, a string, null nor bytes`)
}

function parseHeader(value: unknown): BackupHeader {
  if (!isPlainObject(value) || value.format !== BACKUP_FORMAT) throw corrupt('the first line is not a keymesh backup header')
  if (value.version !== BACKUP_VERSION) {
    throw cpError('CP_ERR_BACKUP_VERSION', `the file is backup format version ${JSON.stringify(value.version)}; this keymesh reads version ${BACKUP_VERSION}`)
  }
  const head = value.auditHead
  const tables = value.tables
  const ok = isCount(value.createdAt) && isCount(value.schemaVersion) && value.schemaVersion >= 1 &&
    (value.identity === null || (typeof value.identity === 'string' && HEX32.test(value.identity))) &&
    isPlainObject(head) && isCount(head.seq) && typeof head.hash === 'string' && HEX32.test(head.hash) &&
    isPlainObject(tables) && Object.keys(tables).join() === STORE_TABLES.map((t) => t.name).join() &&
    Object.values(tables).every(isCount)
  if (!ok) throw corrupt('the header is malformed')
  return value as unknown as BackupHeader
}

/**
 * Cuts a byte stream into lines (without their "\n") as chunks arrive. A line
 * longer than `maxLine` is refused before it is held whole. `end()` tells
 * whether the stream ended with a "\n": bytes after the last one are a cut-off
 * line, never handed out.
 */
export class LineSplitter {
  #carry: Uint8Array[] = []
  #carried = 0

  constructor(private readonly maxLine = MAX_BACKUP_LINE) {}

  push(chunk: Uint8Array): Uint8Array[] {
    const lines: Uint8Array[] = []
    let start = 0
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const part = chunk.subarray(start, nl)
      lines.push(this.#carried === 0 ? part : Buffer.concat([...this.#carry, part]))
      this.#carry = []
      this.#carried = 0
      start = nl + 1
    }
    if (start < chunk.length) {
      this.#carry.push(chunk.subarray(start))
      this.#carried += chunk.length - start
      if (this.#carried > this.maxLine) throw corrupt(`a line is longer than ${this.maxLine} bytes`)
    }
    return lines
  }

  end(): boolean {
    return this.#carried === 0
  }
}

export interface BackupCheckOptions {
  readonly suite?: CryptoSuite
  /** The audit chain key (from the master key): every MAC from the anchor on is checked. */
  readonly chainKey?: Uint8Array | undefined
  /** A sealer of the master key: the trailer's seal must open with it. */
  readonly sealer?: Pick<Sealer, 'unseal'> | undefined
}

/**
 * Checks a backup one line at a time (the bytes of each line without its "\n"),
 * keeping only counts, the checksum state and the chain's last link: memory is
 * bounded by one line. `push` hands back the decoded row, for a restore to
 * write; `finish` gives the verdict once the input has ended. Faults of form
 * throw at once (CP_ERR_BACKUP_CORRUPT); the checksum is judged before the
 * audit chain, so a damaged byte is reported as damage, not as a broken chain.
 */
export class BackupChecker {
  readonly #sum = newChecksum()
  readonly #suite: CryptoSuite
  readonly #chainKey: Uint8Array | undefined
  readonly #sealer: Pick<Sealer, 'unseal'> | undefined
  #header: BackupHeader | null = null
  #trailer: { rows: number; sha256: string; seal: string | undefined } | null = null
  #table = 0
  #columns = ''
  readonly #counts = new Map<string, number>()
  #rows = 0
  #anchor: Uint8Array | null = null
  #chain: AuditChainVerifier | null = null
  #storedHead: AuditHead | null = null
  #line = 0
  #wrongKey = false

  constructor(options: BackupCheckOptions = {}) {
    this.#suite = options.suite ?? nodeSuite
    this.#chainKey = options.chainKey
    this.#sealer = options.sealer
  }

  /** Checks one line; a row line gives back its table and decoded row. */
  push(line: Uint8Array): { table: string; row: Row } | null {
    this.#line++
    if (this.#trailer) throw corrupt(`line ${this.#line} follows the trailer`)
    let value: unknown
    try {
      value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(line))
    } catch {
      throw corrupt(`line ${this.#line} is not JSON`)
    }
    if (this.#header === null) {
      this.#header = parseHeader(value)
      this.#sum.update(line).update('\n')
      return null
    }
    if (isPlainObject(value) && value.end === BACKUP_FORMAT) {
      const seal = value.seal
      if (!isCount(value.rows) || typeof value.sha256 !== 'string' || !HEX32.test(value.sha256) || (seal !== undefined && typeof seal !== 'string')) {
        throw corrupt('the trailer is malformed')
      }
      this.#trailer = { rows: value.rows, sha256: value.sha256, seal }
      return null
    }
    this.#sum.update(line).update('\n')
    return this.#row(value)
  }

  #row(value: unknown): { table: string; row: Row } {
    const where = `line ${this.#line}`
    if (!isPlainObject(value) || typeof value.t !== 'string' || !isPlainObject(value.r)) throw corrupt(`${where} is not a row`)
    const table = value.t
    const index = TABLE_INDEX.get(table)
    if (index === undefined) throw corrupt(`${where} names an unknown table ${JSON.stringify(table.slice(0, 64))}`)
    if (index < this.#table) throw corrupt(`${where}: table ${table} comes after ${STORE_TABLES[this.#table]?.name}`)
    const columns = JSON.stringify(Object.keys(value.r))
    if (index > this.#table) this.#columns = ''
    if (this.#columns !== '' && columns !== this.#columns) throw corrupt(`${where}: a row of ${table} with other columns than the ones before`)
    this.#table = index
    this.#columns = columns
    const n = (this.#counts.get(table) ?? 0) + 1
    if (n > (this.#header?.tables[table] ?? 0)) throw corrupt(`${where}: more rows of ${table} than the header counts`)
    this.#counts.set(table, n)
    this.#rows++
    // No prototype: a column named __proto__ stays a column (and is refused by the SQL name check).
    const row: Row = Object.create(null) as Row
    for (const [k, v] of Object.entries(value.r)) row[k] = decodeValue(v, where)
    this.#observe(table, row, where)
    return { table, row }
  }

  /** What the chain check needs from the rows: the anchor, the entries, the stored head. */
  #observe(table: string, row: Row, where: string): void {
    try {
      if (table === 'meta' && row.key === AUDIT_ANCHOR_META && row.value instanceof Uint8Array) this.#anchor = row.value
      if (table === 'audit_log') {
        this.#chain ??= this.#verifier()
        this.#chain.push(toAuditRow(row))
      }
      if (table === 'audit_head') {
        if (!(row.hash instanceof Uint8Array)) throw new TypeError('no hash')
        this.#storedHead = { seq: Number(row.seq), hash: new Uint8Array(row.hash) }
      }
    } catch {
      throw corrupt(`${where} is not a well-formed ${table} row`)
    }
  }

  #verifier(): AuditChainVerifier {
    const chainKey = this.#chainKey
    const keyedFrom = chainKey && this.#anchor ? decodeAuditAnchor(chainKey, this.#anchor, this.#suite) : null
    // Judged in finish(), after the checksum: a damaged anchor is damage, not a wrong key.
    this.#wrongKey = chainKey !== undefined && keyedFrom === null
    return new AuditChainVerifier({ suite: this.#suite, ...(this.#wrongKey ? {} : { chainKey, keyedFrom }) })
  }

  /** The verdict once the input has ended; `ended` is false when the last line had no "\n". */
  finish(ended = true): BackupSummary {
    const header = this.#header
    if (header === null) throw corrupt('the file is empty')
    if (this.#trailer === null || !ended) throw corrupt(`the file is truncated: it ends after ${this.#rows} rows without its trailer`)
    const sha256 = this.#sum.digest('hex')
    if (sha256 !== this.#trailer.sha256) throw corrupt('the checksum does not match: the file was altered or damaged')
    for (const t of STORE_TABLES) {
      const n = this.#counts.get(t.name) ?? 0
      if (n !== header.tables[t.name]) throw corrupt(`the file holds ${n} rows of ${t.name}, the header counts ${header.tables[t.name]}`)
    }
    if (this.#trailer.rows !== this.#rows) throw corrupt(`the trailer counts ${this.#trailer.rows} rows, the file holds ${this.#rows}`)
    const seal = this.#openSeal(sha256, this.#trailer.seal)
    const head: AuditHead = { seq: header.auditHead.seq, hash: new Uint8Array(Buffer.from(header.auditHead.hash, 'hex')) }
    const v: AuditVerifyResult = (this.#chain ?? this.#verifier()).finish(head)
    if (this.#wrongKey) {
      throw cpError('CP_ERR_MASTER_KEY', 'this master key is not the one of the backed-up installation (its audit anchor does not open with it)')
    }
    if (!v.ok) throw cpError('CP_ERR_BACKUP_CHAIN', `the audit chain breaks at seq ${v.firstBadSeq} (${v.reason})`)
    const stored = this.#storedHead
    if (stored === null || stored.seq !== head.seq || !bytesEqual(stored.hash, head.hash)) {
      throw cpError('CP_ERR_BACKUP_CHAIN', `the stored audit head is not the header's (seq ${header.auditHead.seq})`)
    }
    return { header, rows: this.#rows, sha256, audit: { count: v.count, macs: v.macs }, seal }
  }

  #openSeal(sha256: string, seal: string | undefined): BackupSummary['seal'] {
    if (seal === undefined) return 'absent'
    if (this.#sealer === undefined) return 'unchecked'
    try {
      this.#sealer.unseal(backupSealIdentity(sha256), Buffer.from(seal, 'base64'))
    } catch (cause) {
      throw cpError('CP_ERR_BACKUP_SEAL', 'it was not made with this master key, or was altered and checksummed again', { cause })
    }
    return 'verified'
  }
}
