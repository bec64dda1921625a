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
//  - A batch that would take the file past maxBytes is refused (append resolves null) and
//    nothing is written. Ack and loss lines are always written; they are short, and at
//    most one per batch already counted.
//  - Writes never block the event loop the tunnels share (an fsync can take 15 ms): append,
//    ack, loss reports and compact queue their work, and one writer does it in order,
//    asynchronously. append takes its seq at once (so seqs follow the calls), and resolves
//    only once its line is written and fdatasync'd: the caller sends the batch after that,
//    never before. Lines queued while a write is under way go out together in the next
//    write, under one fdatasync (group commit). A write that fails is cut back off the
//    file, and its batches reject with AGENT_ERR_SPOOL: their seqs are never sent, and are
//    used again only when no later seq was taken meanwhile.
//  - Nothing is read from the file on the event loop after open either: the lines this
//    process wrote are kept in memory until acked (up to LINE_CACHE_BYTES), so a batch
//    is sent as written (cached); any other is read back by the writer, in its turn
//    (read), so a read never meets a compaction's replaced file.
import { close, closeSync, fchmodSync, fdatasync, ftruncate, openSync, read as readAt, readFileSync, truncateSync, write } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Logger } from 'pino'

import type { UsageEvent, UsageLoss } from '../../../protocol/src/index.js'
import { writeFileAtomic, writeFileAtomicAsync } from '../../../platform/src/index.js'
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
/** Bytes of written, unacknowledged batch lines kept in memory to send without reading the file. */
export const LINE_CACHE_BYTES = 4 * 1024 * 1024

export interface UsageSpoolOptions {
  readonly stateDir: string
  readonly logger: Logger
  /** Dates a loss report, and names the file of unreadable lines. */
  readonly clock: Clock
  readonly maxBytes: number
  /** Bytes of written lines kept in memory until acked (default LINE_CACHE_BYTES). */
  readonly lineCacheBytes?: number
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

/** Work for the writer, in the order it was asked for. */
type Job =
  | { readonly kind: 'batch'; readonly seq: number; readonly line: Buffer; readonly done: (seq: number) => void; readonly failed: (err: Error) => void }
  | { readonly kind: 'ack'; readonly seq: number; readonly line: Buffer }
  | { readonly kind: 'compact'; readonly done: () => void; readonly failed: (err: Error) => void }
  | { readonly kind: 'read'; readonly seq: number; readonly done: (batch: SpooledBatch) => void; readonly failed: (err: Error) => void }

const writeAt = promisify(write)
const datasync = promisify(fdatasync)
const truncateTo = promisify(ftruncate)
const readInto = promisify(readAt)
const closeFd = promisify(close)

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
  /** Queued work, oldest first; the writer is running while #writing. */
  #jobs: Job[] = []
  #writing = false
  /** Bytes of batch lines queued and not yet written: they count against maxBytes already. */
  #queuedBytes = 0
  /** Resolved when the writer next runs out of work. */
  #idle: Array<() => void> = []
  /** Lines of unacknowledged batches as this process wrote them (newline included), and their bytes. */
  #lines = new Map<number, Buffer>()
  #linesBytes = 0
  readonly #lineCacheBytes: number


  private constructor(
    o: UsageSpoolOptions,
    state: { size: number; nextSeq: number; lease: number; unacked: Map<number, Location>; garbage: number; lossSeqs?: Set<number>; repair?: SpoolRepair },
  ) {
    this.#path = join(o.stateDir, SPOOL_FILE)
    this.#leasePath = join(o.stateDir, SEQ_FILE)
    this.#logger = o.logger
    this.#maxBytes = o.maxBytes
    this.#lineCacheBytes = o.lineCacheBytes ?? LINE_CACHE_BYTES
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

  /** Bytes of the batch lines queued and not yet written (they count against maxBytes already). */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  /** Unacknowledged seqs, ascending. */
  unackedSeqs(): number[] {
    return [...this.#unacked.keys()]
  }

  isUnacked(seq: number): boolean {
    return this.#unacked.has(seq)
  }

  /**
   * Queues `events` as one batch under the next seq (taken now). Resolves with the seq
   * once its line is written and fdatasync'd, or with null at once when the batch does
   * not fit under maxBytes (nothing written, no seq used). Rejects with AGENT_ERR_SPOOL
   * on an I/O error (the file is then as it was before; the seq is not used again).
   */
  append(events: readonly UsageEvent[]): Promise<number | null> {
    if (this.#closed) return Promise.reject(closedError())
    const seq = this.#nextSeq
    const line = encodeLine(`B ${seq} ${JSON.stringify(events)}`)
    if (this.#size + this.#queuedBytes + line.length > this.#maxBytes) return Promise.resolve(null)
    if (this.#broken) return Promise.reject(agentError('AGENT_ERR_SPOOL', 'an earlier write failed and could not be undone'))
    this.#nextSeq = seq + 1
    this.#queuedBytes += line.length
    return new Promise((done, failed) => this.#queue({ kind: 'batch', seq, line, done, failed }))
  }

  /**
   * Lets an unacknowledged batch go because it no longer reads back (the disk changed
   * under the spool), and queues a report of its loss under the next seq, so the
   * control plane hears of it (audited as usage.loss). Written past maxBytes, like an
   * ack. Resolves with the report's seq once it is durable; rejects with AGENT_ERR_SPOOL
   * on an I/O error (the batch is let go all the same: it cannot be read).
   */
  reportUnreadable(seq: number, at: number): Promise<number> {
    if (this.#closed) return Promise.reject(closedError())
    const loc = this.#unacked.get(seq)
    if (loc === undefined) return Promise.reject(agentError('AGENT_ERR_SPOOL', `batch ${seq} is not in the spool`))
    if (this.#broken) return Promise.reject(agentError('AGENT_ERR_SPOOL', 'an earlier write failed and could not be undone'))
    const report = this.#nextSeq
    const line = lossLine(report, { at, lines: 1, bytes: loc.length, batches: 1, seqs: [seq] })
    this.#nextSeq = report + 1
    this.#queuedBytes += line.length
    this.#lossSeqs.add(report)
    const written = new Promise<number>((done, failed) =>
      this.#queue({
        kind: 'batch',
        seq: report,
        line,
        done,
        failed: (err) => {
          this.#lossSeqs.delete(report)
          failed(err)
        },
      }),
    )
    // Queued after the report, so both go out in one write, the report first.
    this.ack(seq)
    return written
  }

  /** Resolves once everything queued so far (and anything queued meanwhile) is done. */
  idle(): Promise<void> {
    if (!this.#writing && this.#jobs.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /**
   * An unacknowledged batch this process wrote, from memory (its line is checked again
   * as on a read); undefined when it is not kept (written before this open, or past
   * LINE_CACHE_BYTES): read() it then.
   */
  cached(seq: number): SpooledBatch | undefined {
    this.#assertOpen()
    const line = this.#lines.get(seq)
    return line === undefined ? undefined : lineBatch(seq, line)
  }

  /**
   * Reads an unacknowledged batch back from the file, checking its sum again: queued
   * after the work before it, so it never meets a compaction half done. Rejects with
   * AGENT_ERR_SPOOL when it no longer reads back (or is not in the spool).
   */
  read(seq: number): Promise<SpooledBatch> {
    if (this.#closed) return Promise.reject(closedError())
    return new Promise((done, failed) => this.#queue({ kind: 'read', seq, done, failed }))
  }

  async #readNow(seq: number): Promise<SpooledBatch> {
    const loc = this.#unacked.get(seq)
    if (loc === undefined) throw agentError('AGENT_ERR_SPOOL', `batch ${seq} is not in the spool`)
    const buf = Buffer.alloc(loc.length)
    const got = (await readInto(this.#openFd(), buf, 0, loc.length, loc.offset)).bytesRead
    const batch = got === loc.length ? lineBatch(seq, buf) : undefined
    if (batch === undefined) throw agentError('AGENT_ERR_SPOOL', `batch ${seq} no longer reads back intact`)
    return batch
  }

  /**
   * Marks `seq` acknowledged. Returns false (and does nothing) for a seq that is not
   * unacknowledged here: a duplicate or unknown ack is harmless. The ack line is queued
   * and not fsync'd of its own: losing it only means one more resend, which the control
   * plane acks again; the next batch's fdatasync makes it durable anyway.
   */
  ack(seq: number): boolean {
    const loc = this.#unacked.get(seq)
    if (loc === undefined) return false
    this.#unacked.delete(seq)
    this.#lossSeqs.delete(seq)
    this.#forget(seq)
    this.#garbage += loc.length
    if (this.#broken) return true
    this.#queue({ kind: 'ack', seq, line: encodeLine(`A ${seq}`) })
    return true
  }

  /** True when compaction is worth its cost: everything is acked, or at least half the file is. */
  get compactable(): boolean {
    return this.#garbage > 0 && (this.#unacked.size === 0 || this.#garbage * 2 >= this.#size)
  }

  /**
   * Queues the replacement of the file, atomically, by the header and the
   * unacknowledged batches only (after everything queued before it). The header carries
   * the next seq, so the seq never goes back after compaction. Rejects with
   * AGENT_ERR_SPOOL on an I/O error (the old file, still correct, stays).
   */
  compact(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError())
    return new Promise((done, failed) => this.#queue({ kind: 'compact', done, failed }))
  }

  /** Finishes the queued work, then closes: every later append, read or compaction throws AGENT_ERR_CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return
    await this.idle()
    this.#closed = true
    this.#closeFd()
  }

  #forget(seq: number): void {
    const line = this.#lines.get(seq)
    if (line === undefined) return
    this.#lines.delete(seq)
    this.#linesBytes -= line.length
  }

  #assertOpen(): void {
    if (this.#closed) throw closedError()
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

  // ---- the writer: one job at a time, in order, off the event loop ----------------

  // The writer starts after the current task, so that work queued together (a flush and
  // the acks of one message, say) goes out in one write.
  #queue(job: Job): void {
    this.#jobs.push(job)
    if (this.#writing) return
    this.#writing = true
    queueMicrotask(() => void this.#run())
  }

  async #run(): Promise<void> {
    while (this.#jobs.length > 0) {
      const first = this.#jobs[0] as Job
      if (first.kind === 'compact') {
        this.#jobs.shift()
        await this.#compactNow().then(first.done, first.failed)
        continue
      }
      if (first.kind === 'read') {
        this.#jobs.shift()
        await this.#readNow(first.seq).then(first.done, first.failed)
        continue
      }
      // Every line queued up to the next compaction or read: one write, one fdatasync.
      let n = 1
      while (n < this.#jobs.length && !isTurn(this.#jobs[n] as Job)) n++
      await this.#writeLines(this.#jobs.splice(0, n) as Line[])
    }
    this.#writing = false
    for (const resolve of this.#idle.splice(0)) resolve()
  }

  /** Appends the lines of `jobs` (O_APPEND), fdatasync'd when a batch is among them; on failure cuts the file back to its known size. */
  async #writeLines(jobs: readonly Line[]): Promise<void> {
    const batches = jobs.filter((j) => j.kind === 'batch')
    const queued = batches.reduce((n, j) => n + j.line.length, 0)
    const fail = (err: unknown, what: string): void => {
      this.#queuedBytes -= queued
      // Seqs of batches that never reached the disk were never sent: when none was taken
      // after them, they are taken again, and an intact spool keeps its seqs contiguous.
      if (batches.length > 0 && top + 1 === this.#nextSeq) this.#nextSeq = (batches[0] as { seq: number }).seq
      const e = agentError('AGENT_ERR_SPOOL', `${what}: ${(err as Error).message}`, { cause: err })
      for (const j of batches) j.failed(e)
      if (batches.length === 0) this.#logger.warn({ code: 'AGENT_ERR_SPOOL', seqs: jobs.map((j) => j.seq) }, 'could not record a usage ack in the spool; the batch may be sent again after a restart')
    }
    const top = batches.reduce((m, j) => Math.max(m, j.seq), 0)
    if (this.#closed || this.#broken) return fail(new Error(this.#closed ? 'the spool is closed' : 'an earlier write failed and could not be undone'), 'write refused')
    if (top >= this.#lease) {
      try {
        await writeFileAtomicAsync(this.#leasePath, `${top + SEQ_LEASE}\n`, MODE)
      } catch (err) {
        return fail(err, `cannot write ${SEQ_FILE}`)
      }
      this.#lease = top + SEQ_LEASE
    }
    const bytes = Buffer.concat(jobs.map((j) => j.line))
    try {
      const fd = this.#openFd()
      let off = 0
      while (off < bytes.length) off += (await writeAt(fd, bytes, off, bytes.length - off, null)).bytesWritten
      if (batches.length > 0) await datasync(fd)
    } catch (err) {
      try {
        await truncateTo(this.#openFd(), this.#size)
      } catch {
        this.#broken = true
      }
      return fail(err, 'write failed')
    }
    let offset = this.#size
    for (const j of jobs) {
      if (j.kind === 'batch') {
        this.#unacked.set(j.seq, { offset, length: j.line.length })
        if (this.#linesBytes + j.line.length <= this.#lineCacheBytes) {
          this.#lines.set(j.seq, j.line)
          this.#linesBytes += j.line.length
        }
      } else this.#garbage += j.line.length
      offset += j.line.length
    }
    this.#size = offset
    this.#queuedBytes -= queued
    for (const j of batches) j.done(j.seq)
  }

  async #compactNow(): Promise<void> {
    if (this.#closed) throw closedError()
    const parts: Buffer[] = [headerLine(this.#nextSeq)]
    const unacked = new Map<number, Location>()
    let offset = parts[0]!.length
    try {
      for (const [seq, loc] of this.#unacked) {
        const buf = Buffer.alloc(loc.length)
        if ((await readInto(this.#openFd(), buf, 0, loc.length, loc.offset)).bytesRead !== loc.length) throw new Error(`batch ${seq} is short`)
        parts.push(buf)
        unacked.set(seq, { offset, length: loc.length })
        offset += loc.length
      }
      await writeFileAtomicAsync(this.#path, Buffer.concat(parts), MODE)
    } catch (err) {
      throw agentError('AGENT_ERR_SPOOL', `compaction failed: ${(err as Error).message}`, { cause: err })
    }
    // The old descriptor points at the replaced file: drop it before anything else is
    // written. Acks that came in meanwhile removed batches from #unacked; they are not
    // carried over (their ack lines are not in the new file, and need not be).
    const old = this.#fd
    this.#fd = undefined
    let garbage = 0
    for (const [seq, loc] of unacked) {
      if (this.#unacked.has(seq)) continue
      unacked.delete(seq)
      garbage += loc.length
    }
    this.#unacked = unacked
    this.#size = offset
    this.#garbage = garbage
    this.#broken = false
    if (old !== undefined) await closeFd(old).catch(() => undefined)
  }
}

const closedError = (): Error => agentError('AGENT_ERR_CLOSED', 'the usage spool is closed')

/** Jobs the writer writes out together: batch and ack lines. */
type Line = Extract<Job, { kind: 'batch' | 'ack' }>
/** Jobs that take the writer's turn alone. */
const isTurn = (j: Job): boolean => j.kind === 'compact' || j.kind === 'read'

/** The batch `seq` in a whole spool line (newline included), or undefined when the line does not hold it intact. */
function lineBatch(seq: number, line: Buffer): SpooledBatch | undefined {
  const rec = line[line.length - 1] === 0x0a ? parseLine(line.subarray(0, line.length - 1)) : null
  return rec?.n === seq ? decodeBatch(rec) : undefined
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
