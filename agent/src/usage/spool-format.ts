// The usage spool's file format (spool.ts holds the file, spool-salvage.ts mends a
// damaged one): lines that check themselves, and one pass over a whole file that
// says what it holds and, when it is damaged, what can be recovered from it.
//
// Format, version 1: one record per line, each line checking itself.
//   keymesh-usage-spool/1 <next> <sum>   header, first line only; <next> = lowest unused seq
//   B <seq> <events as JSON> <sum>       a batch
//   L <seq> <loss as JSON> <sum>         a batch that reports usage lost to damage (spool-salvage.ts)
//   A <seq> <sum>                        batch <seq> was acknowledged
// <sum> is the first 16 hex digits of SHA-256 over the line's bytes before " <sum>".
// JSON.stringify escapes control characters, so a record never spans lines.
import { createHash } from 'node:crypto'

import { decodeValue } from '../../../protocol/src/index.js'
import { usageBatchSchema, usageLossSchema, type UsageEvent, type UsageLoss } from '../../../protocol/src/index.js'

export const HEADER_TAG = 'keymesh-usage-spool/1'
const SUM_CHARS = 16
export const NUMBER_RE = /^[1-9][0-9]{0,15}$/

export interface SpooledBatch {
  readonly seq: number
  readonly events: UsageEvent[]
  /** Set on a loss report (an `L` line): what could not be recovered from a damaged spool. */
  readonly loss?: UsageLoss
}

/** Where a batch's line is in the file. */
export interface Location {
  readonly offset: number
  readonly length: number
}

export interface Rec {
  readonly tag: string
  readonly n: number
  readonly payload: string
}

function sum(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex').slice(0, SUM_CHARS)
}

export function encodeLine(body: string): Buffer {
  const bytes = Buffer.from(body)
  return Buffer.concat([bytes, Buffer.from(` ${sum(bytes)}\n`)])
}

export const headerLine = (nextSeq: number): Buffer => encodeLine(`${HEADER_TAG} ${nextSeq}`)

/** A loss report's line; `from` names the set-aside files it took batches from (spool-salvage.ts). */
export function lossLine(seq: number, loss: UsageLoss, from: readonly string[] = []): Buffer {
  return encodeLine(`L ${seq} ${JSON.stringify({ loss, ...(from.length > 0 ? { from } : {}) })}`)
}

/** A line (without its newline) whose sum matches, split into tag, number and payload; null otherwise. */
export function parseLine(line: Buffer): Rec | null {
  const sp = line.lastIndexOf(0x20)
  if (sp < 0 || line.length - sp - 1 !== SUM_CHARS) return null
  const body = line.subarray(0, sp)
  if (line.toString('latin1', sp + 1) !== sum(body)) return null
  const text = body.toString('utf8')
  const a = text.indexOf(' ')
  const b = a < 0 ? -1 : text.indexOf(' ', a + 1)
  const numText = a < 0 ? '' : b < 0 ? text.slice(a + 1) : text.slice(a + 1, b)
  const n = NUMBER_RE.test(numText) ? Number(numText) : Number.NaN
  return { tag: a < 0 ? text : text.slice(0, a), n, payload: b < 0 ? '' : text.slice(b + 1) }
}

/** A `B` or `L` record as the batch it holds; undefined when its payload is not one. */
export function decodeBatch(rec: Rec): SpooledBatch | undefined {
  try {
    if (rec.tag === 'B') return decodeValue(usageBatchSchema, { seq: rec.n, events: JSON.parse(rec.payload) as unknown }) as SpooledBatch
    if (rec.tag !== 'L') return undefined
    const { loss } = JSON.parse(rec.payload) as { loss?: unknown }
    return { seq: rec.n, events: [], loss: decodeValue(usageLossSchema, loss) as UsageLoss }
  } catch {
    return undefined
  }
}

/** The set-aside files an `L` record says it took batches from. */
function importedFrom(rec: Rec): string[] {
  try {
    const { from } = JSON.parse(rec.payload) as { from?: unknown }
    return Array.isArray(from) ? from.filter((f): f is string => typeof f === 'string') : []
  } catch {
    return []
  }
}

/** Lines that could not be read back: counted, their bytes kept for the operator. */
export interface LostLines {
  lines: number
  bytes: number
  /** Lost lines that may have held a batch whose seq cannot be read. */
  unknownBatches: number
  /** Seqs of lost batches that could still be read. */
  readonly seqs: Set<number>
  readonly raw: Buffer[]
}

/** What one pass over a spool file found. */
export interface Scan {
  /** Where the last good line ends: after it, only a torn tail (a crash mid-write). */
  readonly cut: number
  /** Why the file is damaged (something other than a torn tail is wrong); undefined when it is not. */
  readonly damage: string | undefined
  /** The next seq: max(header, last batch + 1). Meaningful when not damaged. */
  readonly nextSeq: number
  /** The highest seq any good line names (a header counts as its next seq - 1). */
  readonly highest: number
  /** Intact batch and loss lines not acknowledged, by seq, in file order. */
  readonly unacked: Map<number, Location & { readonly tag: string }>
  /** Bytes that compaction would reclaim: acked batch lines and ack lines. */
  readonly garbage: number
  /** What did not read back (empty when not damaged). */
  readonly lost: LostLines
  /** Set-aside files already taken in by a loss report. */
  readonly imported: readonly string[]
}

interface Line {
  readonly offset: number
  readonly length: number
  readonly rec: Rec | null
}

/**
 * The seq a damaged line seems to name: a number after `B ` or `L ` (unchecked, but
 * the likeliest reading), null for a line that cannot have been a batch (an ack, the
 * header), undefined when nothing can be told.
 */
function seqOfDamaged(bytes: Buffer, index: number): number | null | undefined {
  if (index === 0) return null // the first line is always the header
  const head = bytes.toString('latin1', 0, 24)
  const m = /^[BL] ([1-9][0-9]{0,15}) /.exec(head)
  if (m) return Number(m[1])
  if (/^A [1-9]/.test(head) || head.startsWith('keymesh-usage-spool/')) return null
  return undefined
}

/**
 * Reads a whole spool file in one pass: the records that hold, the torn tail after
 * them, and — when something else is wrong — what can still be recovered and what
 * cannot. A damaged line in the middle costs that line only; an ack that reads back
 * shows the batch it acks was delivered, whatever became of the batch's own line.
 */
export function scanSpool(buf: Buffer): Scan {
  const lines: Line[] = []
  for (let start = 0; start < buf.length; ) {
    const nl = buf.indexOf(0x0a, start)
    const end = nl < 0 ? buf.length : nl
    lines.push({ offset: start, length: end + 1 - start, rec: nl < 0 ? null : parseLine(buf.subarray(start, end)) })
    start = end + 1
  }
  let last = lines.length - 1
  while (last >= 0 && lines[last]!.rec === null) last--
  const cut = last < 0 ? 0 : Math.min(buf.length, lines[last]!.offset + lines[last]!.length)

  let damage: string | undefined
  /** `seq`: the lost batch's seq; null when the line held no batch; undefined when it may have. */
  const bad: Array<{ readonly line: Line; readonly seq: number | null | undefined }> = []
  const lose = (l: Line, why: string, seq: number | null | undefined, index: number): void => {
    damage ??= `line ${index + 1} ${why}`
    bad.push({ line: l, seq })
  }
  let nextSeq = 0
  let highest = 0
  let lastBatch = 0
  let garbage = 0
  const unacked = new Map<number, Location & { tag: string }>()
  const acked = new Set<number>()
  const imported: string[] = []
  /** Seqs a loss report in the file already names. */
  const reported = new Set<number>()

  for (let i = 0; i <= last; i++) {
    const l = lines[i]!
    const r = l.rec
    if (r === null) {
      lose(l, 'is damaged and good records follow it', seqOfDamaged(buf.subarray(l.offset, l.offset + l.length), i), i)
      continue
    }
    if (!Number.isSafeInteger(r.n)) {
      lose(l, 'has no valid number', r.tag === 'B' || r.tag === 'L' ? undefined : null, i)
      continue
    }
    highest = Math.max(highest, r.tag.startsWith('keymesh-usage-spool/') ? r.n - 1 : r.n)
    if (i === 0 && r.tag === HEADER_TAG && r.payload === '') {
      nextSeq = r.n
      continue
    }
    if (i === 0 && r.tag.startsWith('keymesh-usage-spool/')) {
      // Another version's file: nothing in it can be read as ours, but its numbers still bound the seqs.
      for (let j = 0; j < lines.length; j++) {
        const n = lines[j]!.rec?.n
        if (n !== undefined && Number.isSafeInteger(n)) highest = Math.max(highest, n)
        lose(lines[j]!, `is of an unsupported spool version ${r.tag}`, j === 0 ? null : undefined, j)
      }
      return { cut: buf.length, damage: `unsupported spool version ${r.tag}`, nextSeq: 0, highest, unacked: new Map(), garbage: 0, lost: lostLines(buf, bad, acked, reported), imported }
    }
    if (i === 0) damage ??= 'no spool header' // the header holds no usage: nothing is lost with it
    if (r.tag === 'B' || r.tag === 'L') {
      if (decodeBatch(r) === undefined) {
        lose(l, `holds batch ${r.n} with invalid events`, r.n, i)
        continue
      }
      if (unacked.has(r.n) || acked.has(r.n)) {
        lose(l, `repeats batch ${r.n}`, null, i)
        continue
      }
      if (r.n <= lastBatch) damage ??= `batch ${r.n} on line ${i + 1} does not follow the seqs before it`
      unacked.set(r.n, { offset: l.offset, length: l.length, tag: r.tag })
      lastBatch = Math.max(lastBatch, r.n)
      nextSeq = Math.max(nextSeq, r.n + 1)
      if (r.tag === 'L') {
        imported.push(...importedFrom(r))
        for (const seq of decodeBatch(r)?.loss?.seqs ?? []) reported.add(seq)
      }
    } else if (r.tag === 'A' && r.payload === '') {
      const loc = unacked.get(r.n)
      if (loc !== undefined) {
        unacked.delete(r.n)
        garbage += loc.length
      }
      acked.add(r.n)
      garbage += l.length
    } else {
      lose(l, 'is not a spool record', null, i)
    }
  }
  return { cut, damage, nextSeq, highest, unacked, garbage, lost: lostLines(buf, bad, acked, reported), imported }
}

/**
 * The damaged lines as counted: a line whose batch a loss report in the file already
 * names is not counted again (a crash after the report, before the batch was let go),
 * and a lost batch whose ack reads back was delivered.
 */
function lostLines(buf: Buffer, bad: ReadonlyArray<{ readonly line: Line; readonly seq: number | null | undefined }>, acked: ReadonlySet<number>, reported: ReadonlySet<number>): LostLines {
  const lost: LostLines = { lines: 0, bytes: 0, unknownBatches: 0, seqs: new Set(), raw: [] }
  for (const { line, seq } of bad) {
    if (typeof seq === 'number' && reported.has(seq)) continue
    lost.lines++
    lost.bytes += line.length
    lost.raw.push(buf.subarray(line.offset, line.offset + line.length))
    if (seq === undefined) lost.unknownBatches++
    else if (seq !== null && !acked.has(seq)) lost.seqs.add(seq)
  }
  return lost
}
