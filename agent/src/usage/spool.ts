// The usage spool: an append-only file, `usage.spool` in the state dir (0600), that
// holds each usage batch from the moment it gets its seq until the control plane
// acknowledges it, so a batch survives a crash or a long outage and is resent with
// the same seq and the same events (the control plane records each seq once).
// The line format is in spool-format.ts.
//
// Contract:
//  - Seqs are assigned here only (append), strictly increasing, never reused. A seq is
//    used once its line is fsync'd, and nothing is sent before that. On open the next seq
//    is max(header next, highest batch + 1). `usage.seq` is a lease written atomically
//    ahead of use (SEQ_LEASE seqs at a time): every seq ever assigned is below it, so a
//    spool that was deleted or damaged still never lets a seq repeat. The lease is used
//    only then: an intact spool keeps seqs contiguous, so a gap in the audit log means
//    reports were lost, and says so.
//  - On open, a torn tail (everything from the first bad line, when no good line follows
//    it: a crash mid-write) is truncated and logged. Anything else that is wrong — a bad
//    line followed by a good one, a checksummed line that breaks the rules — is damage:
//    the spool is mended (spool-salvage.ts): every intact unacknowledged batch is kept
//    and delivered, what could not be read is reported to the control plane as a loss
//    (an `L` batch, audited as usage.loss), logged, and shown in stats; seqs go on above
//    every seq seen and above the lease. Spools older agents set aside are taken in too.
//  - A batch that would take the file past maxBytes is refused (append returns null) and
//    nothing is written. Ack and loss lines are always written; they are short, and at
//    most one per batch already counted.
//  - I/O is synchronous (openSync/writeSync/fsyncSync): batches are small and come at most
//    about once per flush interval, and sync calls make ordering trivially correct —
//    nothing can run between the append, its fsync and the send that follows.
import { closeSync, fchmodSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, truncateSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'

import type { UsageEvent, UsageLoss } from '../../../protocol/src/index.js'
import { writeFileAtomic } from '../../../platform/src/index.js'
import type { Clock } from '../clock.js'
import { agentError } from '../errors.js'
import { NUMBER_RE, decodeBatch, encodeLine, headerLine, lossLine, parseLine, scanSpool, type Location, type SpooledBatch } from './spool-format.js'
import { legacySpools, readLegacy, salvage, type Salvaged } from './spool-salvage.js'

export type { SpooledBatch } from './spool-format.js'

export const SPOOL_FILE = 'usage.spool'
export const SEQ_FILE = 'usage.seq'
/** How many seqs one write of usage.seq reserves. */
export const SEQ_LEASE = 1024
const MODE = 0o600

export interface UsageSpoolOptions {
  readonly stateDir: string
  readonly logger: Logger
  /** Dates a loss report, and names the file of unreadable lines. */
  readonly clock: Clock
  readonly maxBytes: number
}

/** What mending a damaged spool at open found (spool-salvage.ts); zeros when nothing was wrong. */
export interface SpoolRepair {
  /** Intact unacknowledged batches carried over from damaged files, to be delivered. */
  readonly recoveredBatches: number
  /** Batches that could not be read back and were not acknowledged: reported as lost. */
  readonly lostBatches: number
  /** Lines that could not be read back. */
  readonly damagedLines: number
  /** Where those lines were kept, if any. */
  readonly unreadableFile: string | undefined
}

const NO_REPAIR: SpoolRepair = Object.freeze({ recoveredBatches: 0, lostBatches: 0, damagedLines: 0, unreadableFile: undefined })

export class UsageSpool {
  readonly #path: string
  readonly #leasePath: string
  readonly #logger: Logger
  readonly #maxBytes: number
  #fd: number | undefined
  #size: number
  #nextSeq: number
  #lease: number
  /** Unacknowledged batches in seq order (Map keeps insertion order, and seqs only grow). */
  #unacked: Map<number, Location>
  /** Which of them are loss reports. */
  readonly #lossSeqs: Set<number>
  /** What was mended at open. */
  readonly repair: SpoolRepair
  /** Bytes that compaction would reclaim: acked batch lines and ack lines. */
  #garbage: number
  /** Set when a failed write could not be undone: appending more would bury a bad line mid-file. */
  #broken = false
  #closed = false

  private constructor(
    o: UsageSpoolOptions,
    state: { size: number; nextSeq: number; lease: number; unacked: Map<number, Location>; garbage: number; lossSeqs?: Set<number>; repair?: SpoolRepair },
  ) {
    this.#path = join(o.stateDir, SPOOL_FILE)
    this.#leasePath = join(o.stateDir, SEQ_FILE)
    this.#logger = o.logger
    this.#maxBytes = o.maxBytes
    this.#size = state.size
    this.#nextSeq = state.nextSeq
    this.#lease = state.lease
    this.#unacked = state.unacked
    this.#garbage = state.garbage
    this.#lossSeqs = state.lossSeqs ?? new Set()
    this.repair = state.repair ?? NO_REPAIR
    this.#fd = openSync(this.#path, 'a+', MODE)
    fchmodSync(this.#fd, MODE)
  }

  /** Opens (or creates) the spool, recovering as the contract says. Throws AGENT_ERR_SPOOL when the state dir cannot be used. */
  static open(o: UsageSpoolOptions): UsageSpool {
    const path = join(o.stateDir, SPOOL_FILE)
    try {
      const lease = readLease(join(o.stateDir, SEQ_FILE), o.logger)
      let buf: Buffer | undefined
      try {
        buf = readFileSync(path)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
      const legacy = legacySpools(o.stateDir)
      if (buf === undefined) return legacy.length > 0 ? UsageSpool.#mend(o, lease, undefined, legacy) : UsageSpool.#fresh(o, Math.max(lease, 1), lease)
      const scan = scanSpool(buf)
      if (scan.damage !== undefined || legacy.length > 0) return UsageSpool.#mend(o, lease, { name: undefined, buf, scan }, legacy)
      if (scan.cut < buf.length) {
        o.logger.warn({ truncatedBytes: buf.length - scan.cut }, 'usage spool ended in a torn record (a crash mid-write); the record was truncated')
      }
      // Not even a header survived: nothing to keep, and the lease still bounds the seqs.
      if (scan.cut === 0) return UsageSpool.#fresh(o, Math.max(lease, 1), lease)
      if (scan.cut < buf.length) truncateSync(path, scan.cut)
      const lossSeqs = new Set([...scan.unacked].filter(([, l]) => l.tag === 'L').map(([seq]) => seq))
      return new UsageSpool(o, { size: scan.cut, nextSeq: scan.nextSeq, lease, unacked: new Map(scan.unacked), garbage: scan.garbage, lossSeqs })
    } catch (err) {
      throw agentError('AGENT_ERR_SPOOL', `cannot open ${SPOOL_FILE}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** A damaged spool, or spools set aside by an older agent: mended into a new spool (spool-salvage.ts). */
  static #mend(o: UsageSpoolOptions, lease: number, spool: Parameters<typeof salvage>[0]['spool'], legacyNames: readonly string[]): UsageSpool {
    const path = join(o.stateDir, SPOOL_FILE)
    const legacy = legacyNames.map((name) => readLegacy(o.stateDir, name))
    const s = salvage({ path, stateDir: o.stateDir, clock: o.clock, lease, spool, legacy })
    logRepair(o.logger, spool?.scan.damage, s)
    const repair: SpoolRepair = {
      recoveredBatches: s.recovered,
      lostBatches: s.loss?.batches ?? 0,
      damagedLines: s.loss?.lines ?? 0,
      unreadableFile: s.unreadableFile,
    }
    return new UsageSpool(o, { size: s.content.length, nextSeq: s.nextSeq, lease, unacked: s.unacked, garbage: 0, lossSeqs: s.lossSeqs, repair })
  }

  static #fresh(o: UsageSpoolOptions, nextSeq: number, lease: number): UsageSpool {
    const header = headerLine(nextSeq)
    writeFileAtomic(join(o.stateDir, SPOOL_FILE), header, MODE)
    return new UsageSpool(o, { size: header.length, nextSeq, lease, unacked: new Map(), garbage: 0 })
  }

  get nextSeq(): number {
    return this.#nextSeq
  }

  /** The file's size in bytes. */
  get size(): number {
    return this.#size
  }

  get unackedCount(): number {
    return this.#unacked.size
  }

  /** Bytes of the unacknowledged batch lines (what a resend carries, before framing). */
  get unackedBytes(): number {
    let n = 0
    for (const loc of this.#unacked.values()) n += loc.length
    return n
  }

  /** Unacknowledged loss reports (spool-salvage.ts). */
  get pendingLossReports(): number {
    return this.#lossSeqs.size
  }

  /** Unacknowledged seqs, ascending. */
  unackedSeqs(): number[] {
    return [...this.#unacked.keys()]
  }

  isUnacked(seq: number): boolean {
    return this.#unacked.has(seq)
  }

  /**
   * Writes `events` as one batch under the next seq and fsyncs it. Returns the seq, or
   * null when the batch does not fit under maxBytes (nothing written, no seq used).
   * Throws AGENT_ERR_SPOOL on an I/O error; the file is then as it was before.
   */
  append(events: readonly UsageEvent[]): number | null {
    this.#assertOpen()
    const line = encodeLine(`B ${this.#nextSeq} ${JSON.stringify(events)}`)
    if (this.#size + line.length > this.#maxBytes) return null
    return this.#appendRecord(line)
  }

  /**
   * Lets an unacknowledged batch go because it no longer reads back (the disk changed
   * under the spool), and appends a report of its loss under the next seq, so the
   * control plane hears of it (audited as usage.loss). Written past maxBytes, like an
   * ack. Returns the report's seq; throws AGENT_ERR_SPOOL on an I/O error.
   */
  reportUnreadable(seq: number, at: number): number {
    this.#assertOpen()
    const loc = this.#unacked.get(seq)
    if (loc === undefined) throw agentError('AGENT_ERR_SPOOL', `batch ${seq} is not in the spool`)
    const loss: UsageLoss = { at, lines: 1, bytes: loc.length, batches: 1, seqs: [seq] }
    const report = this.#appendRecord(lossLine(this.#nextSeq, loss))
    this.#lossSeqs.add(report)
    this.ack(seq)
    return report
  }

  /** Writes one batch or loss line under the next seq (already in `line`), leasing seqs ahead as needed. */
  #appendRecord(line: Buffer): number {
    const seq = this.#nextSeq
    if (this.#broken) throw agentError('AGENT_ERR_SPOOL', 'an earlier write failed and could not be undone')
    if (seq >= this.#lease) {
      try {
        writeFileAtomic(this.#leasePath, `${seq + SEQ_LEASE}\n`, MODE)
      } catch (err) {
        throw agentError('AGENT_ERR_SPOOL', `cannot write ${SEQ_FILE}: ${(err as Error).message}`, { cause: err })
      }
      this.#lease = seq + SEQ_LEASE
    }
    this.#write(line, true)
    this.#unacked.set(seq, { offset: this.#size, length: line.length })
    this.#size += line.length
    this.#nextSeq = seq + 1
    return seq
  }

  /** Reads an unacknowledged batch back, checking its sum again. Throws AGENT_ERR_SPOOL when it no longer reads. */
  read(seq: number): SpooledBatch {
    const loc = this.#unacked.get(seq)
    if (loc === undefined) throw agentError('AGENT_ERR_SPOOL', `batch ${seq} is not in the spool`)
    const buf = Buffer.alloc(loc.length)
    const got = readSync(this.#openFd(), buf, 0, loc.length, loc.offset)
    const rec = got === loc.length && buf[loc.length - 1] === 0x0a ? parseLine(buf.subarray(0, loc.length - 1)) : null
    const batch = rec?.n === seq ? decodeBatch(rec) : undefined
    if (batch === undefined) throw agentError('AGENT_ERR_SPOOL', `batch ${seq} no longer reads back intact`)
    return batch
  }

  /**
   * Marks `seq` acknowledged. Returns false (and does nothing) for a seq that is not
   * unacknowledged here: a duplicate or unknown ack is harmless. The ack line is not
   * fsync'd: losing it only means one more resend, which the control plane acks again;
   * the next batch's fsync makes it durable anyway.
   */
  ack(seq: number): boolean {
    const loc = this.#unacked.get(seq)
    if (loc === undefined) return false
    this.#unacked.delete(seq)
    this.#lossSeqs.delete(seq)
    this.#garbage += loc.length
    if (this.#broken) return true
    const line = encodeLine(`A ${seq}`)
    try {
      this.#write(line, false)
      this.#size += line.length
      this.#garbage += line.length
    } catch (err) {
      this.#logger.warn({ code: (err as { code?: string }).code, seq }, 'could not record a usage ack in the spool; the batch may be sent again after a restart')
    }
    return true
  }

  /** True when compaction is worth its cost: everything is acked, or at least half the file is. */
  get compactable(): boolean {
    return this.#garbage > 0 && (this.#unacked.size === 0 || this.#garbage * 2 >= this.#size)
  }

  /**
   * Replaces the file atomically with the header and the unacknowledged batches only.
   * The header carries the next seq, so the seq never goes back after compaction.
   * Throws AGENT_ERR_SPOOL on an I/O error (the old file, still correct, stays).
   */
  compact(): void {
    this.#assertOpen()
    const parts: Buffer[] = [headerLine(this.#nextSeq)]
    const unacked = new Map<number, Location>()
    let offset = parts[0]!.length
    try {
      for (const [seq, loc] of this.#unacked) {
        const buf = Buffer.alloc(loc.length)
        if (readSync(this.#openFd(), buf, 0, loc.length, loc.offset) !== loc.length) throw new Error(`batch ${seq} is short`)
        parts.push(buf)
        unacked.set(seq, { offset, length: loc.length })
        offset += loc.length
      }
      writeFileAtomic(this.#path, Buffer.concat(parts), MODE)
    } catch (err) {
      throw agentError('AGENT_ERR_SPOOL', `compaction failed: ${(err as Error).message}`, { cause: err })
    }
    // The old descriptor points at the replaced file: drop it before anything else is written.
    this.#closeFd()
    this.#unacked = unacked
    this.#size = offset
    this.#garbage = 0
    this.#broken = false
  }

  /** After close, every append, read or compaction throws AGENT_ERR_CLOSED. */
  close(): void {
    this.#closed = true
    this.#closeFd()
  }

  #assertOpen(): void {
    if (this.#closed) throw agentError('AGENT_ERR_CLOSED', 'the usage spool is closed')
  }

  #openFd(): number {
    this.#assertOpen()
    if (this.#fd === undefined) this.#fd = openSync(this.#path, 'a+', MODE)
    return this.#fd
  }

  #closeFd(): void {
    if (this.#fd === undefined) return
    const fd = this.#fd
    this.#fd = undefined
    closeSync(fd)
  }

  /** Appends `line` (O_APPEND), fsync'd when asked; on failure cuts the file back to its known size. */
  #write(line: Buffer, sync: boolean): void {
    try {
      const fd = this.#openFd()
      let off = 0
      while (off < line.length) off += writeSync(fd, line, off)
      if (sync) fsyncSync(fd)
    } catch (err) {
      try {
        ftruncateSync(this.#openFd(), this.#size)
      } catch {
        this.#broken = true
      }
      throw agentError('AGENT_ERR_SPOOL', `write failed: ${(err as Error).message}`, { cause: err })
    }
  }
}

function readLease(path: string, logger: Logger): number {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
  const t = text.trim()
  if (NUMBER_RE.test(t) && Number.isSafeInteger(Number(t))) return Number(t)
  logger.error({ code: 'AGENT_ERR_SPOOL' }, `${SEQ_FILE} is damaged; usage batch numbers continue from the spool alone`)
  return 0
}

/** One line at error when usage was lost (AGENT_ERR_USAGE_LOST), else at warn: what was mended, and where the unreadable lines are. */
function logRepair(logger: Logger, damage: string | undefined, s: Salvaged): void {
  const fields = {
    reason: damage,
    recoveredBatches: s.recovered,
    lostBatches: s.loss?.batches ?? 0,
    damagedLines: s.loss?.lines ?? 0,
    ...(s.loss ? { lossReportSeq: s.loss.seq, lostSeqs: s.loss.seqs } : {}),
    ...(s.unreadableFile ? { unreadableFile: s.unreadableFile } : {}),
    ...(s.legacy.length > 0 ? { takenIn: s.legacy } : {}),
    nextSeq: s.nextSeq,
  }
  if ((s.loss?.batches ?? 0) > 0) {
    logger.error(
      { code: 'AGENT_ERR_USAGE_LOST', ...fields },
      `usage spool was damaged: ${s.recovered} intact batch(es) recovered and delivered as usual; ${s.loss?.batches} batch(es) could not be read and are reported to the control plane as lost`,
    )
  } else {
    logger.warn({ code: 'AGENT_ERR_SPOOL', ...fields }, `usage spool was damaged: ${s.recovered} intact batch(es) recovered; no unacknowledged batch was lost${s.loss ? ' (the damage is reported to the control plane)' : ''}`)
  }
}
