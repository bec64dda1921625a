// Usage reports: the agent's events (connections opened and closed, handshake
// failures, rejections) go to the control plane in numbered batches, exactly once.
//
// Exactly once = every batch is in the spool (fsync'd) before it is sent, its seq is
// never reused, and it is resent — same seq, same events — until acked; the control
// plane records each (agent, seq) once and acks a duplicate again. The spool writes
// off the event loop (spool.ts): a batch joins the send queue when its append
// resolves, and appends resolve in seq order, so batches are still sent in seq order.
//
// Contract:
//  - record() never blocks and never throws for I/O or a full spool: events that cannot
//    be spooled are dropped and counted in `dropped`, with one warning per episode
//    (code AGENT_ERR_SPOOL_FULL) and a summary when batches fit again. An invalid event
//    is a programming error and throws PROTO_ERR_MESSAGE_FIELD.
//  - A batch is formed at MAX_USAGE_EVENTS pending events, or flushMs after the first one.
//  - At most maxInFlight batches are sent and not yet acked, so a long outage's backlog
//    reaches the control plane at the pace it acks rather than in one burst. A batch not
//    acked within ACK_TIMEOUT_MS (the control plane could not record it) is sent again.
//  - After send() returns false (the control session is down), nothing is sent until
//    resend(), which starts again from the oldest unacked batch, in seq order.
//  - Once close() is called, record/flush/resend/ack do nothing (recorded events are
//    counted as dropped); close() resolves when the spool's queued writes are done.
import type { Logger } from 'pino'

import { decodeValue } from '../../../protocol/src/index.js'
import { MAX_USAGE_EVENTS, usageEventSchema, type UsageEvent } from '../../../protocol/src/index.js'
import { SECOND, type CancelTimer, type TimerClock } from '../clock.js'
import { agentError } from '../errors.js'
import { UsageSpool, type SpooledBatch } from './spool.js'

export const DEFAULT_MAX_IN_FLIGHT = 32
export const ACK_TIMEOUT_MS = 30 * SECOND

export interface UsageReporterOptions {
  readonly stateDir: string
  readonly clock: TimerClock
  readonly logger: Logger
  readonly maxSpoolBytes: number
  /** Batch at most this long (default in config: 1 s); also the shortest time between compactions. */
  readonly flushMs: number
  /** Sends one batch (events, or a loss report); returns false when the control session is down (the batch stays spooled). */
  readonly send: (batch: SpooledBatch) => boolean
  /** Batches sent and not yet acked, at most (default 32). */
  readonly maxInFlight?: number
  /** Bytes of spooled lines kept in memory to send without reading the file (spool.ts; default 4 MiB). */
  readonly lineCacheBytes?: number
}

export interface UsageStats {
  pendingEvents: number
  /** Batches formed and not yet acknowledged, those still being written to the spool included. */
  unackedBatches: number
  /** Bytes of those batches' spool lines. */
  unackedBytes: number
  /** The spool file's size once the writes under way land, acked lines not yet compacted away included. */
  spoolBytes: number
  dropped: number
  nextSeq: number
  /** Batches that could not be read back from the spool (at open, or later) and were reported to the control plane as lost. */
  lostBatches: number
  /** Intact batches recovered from a damaged spool at open, delivered as usual. */
  recoveredBatches: number
  /** Loss reports not yet acknowledged by the control plane. */
  lossReportsPending: number
}

export class UsageReporter {
  readonly #o: UsageReporterOptions
  readonly #spool: UsageSpool
  readonly #maxInFlight: number
  #pending: UsageEvent[] = []
  #cancelFlush: CancelTimer | undefined
  #cancelCompact: CancelTimer | undefined
  #cancelAckTimer: CancelTimer | undefined
  #lastCompactAt = Number.NEGATIVE_INFINITY
  /** False from a failed send until resend(): keeps batches in seq order across an outage. */
  #online = true
  /** Seqs to send on this connection, in order; #queueAt is the next one. Acked ones are skipped. */
  #queue: number[] = []
  #queueAt = 0
  /** Sent and not yet acked: seq → when it was sent. */
  #inFlight = new Map<number, number>()
  #dropped = 0
  /** Batches let go since open because they no longer read back (reported as lost). */
  #unreadable = 0
  /** Events dropped in the current spool-full episode; undefined when not full. */
  #fullDropped: number | undefined
  #closed = false
  /** close() was called: the spool is finishing its queued writes. */
  #closing = false
  /** Batches whose append is still being written. */
  #appending = 0
  /** A batch the spool did not keep in memory, being read back (the pump waits for it), or read. */
  #reading: number | undefined
  #read: SpooledBatch | undefined
  /** Batches that no longer read back, whose loss report is being written: not sent again. */
  readonly #lettingGo = new Set<number>()

  private constructor(o: UsageReporterOptions, spool: UsageSpool) {
    this.#o = o
    this.#spool = spool
    this.#maxInFlight = o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT
  }

  /** Reads the spool (recovering after a crash) and restores the next seq. Throws AGENT_ERR_SPOOL when the state dir cannot be used. */
  static open(o: UsageReporterOptions): UsageReporter {
    for (const [name, v] of [['maxSpoolBytes', o.maxSpoolBytes], ['flushMs', o.flushMs], ['maxInFlight', o.maxInFlight ?? 1]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw agentError('AGENT_ERR_CONFIG', `${name} must be a positive integer`)
    }
    const spool = UsageSpool.open({ stateDir: o.stateDir, logger: o.logger, clock: o.clock, maxBytes: o.maxSpoolBytes, ...(o.lineCacheBytes !== undefined ? { lineCacheBytes: o.lineCacheBytes } : {}) })
    if (spool.unackedCount > 0) o.logger.info({ unackedBatches: spool.unackedCount, nextSeq: spool.nextSeq }, 'usage batches from an earlier run are waiting for the control plane')
    return new UsageReporter(o, spool)
  }

  /** Queues one event. Never blocks; never throws on a full spool or an I/O error. */
  record(event: UsageEvent): void {
    // Validated (and copied, so the caller cannot change it later) before it is queued.
    const e = decodeValue(usageEventSchema, event) as UsageEvent
    if (this.#closed || this.#closing) {
      this.#dropped++
      return
    }
    this.#pending.push(e)
    if (this.#pending.length >= MAX_USAGE_EVENTS) this.flush()
    else this.#cancelFlush ??= this.#o.clock.setTimer(this.#o.flushMs, () => {
      this.#cancelFlush = undefined
      this.flush()
    })
  }

  /**
   * Closes the pending batch now: it takes the next seq and is appended to the spool,
   * and sent once the append is durable (idle() resolves after that).
   */
  flush(): void {
    this.#cancelFlush?.()
    this.#cancelFlush = undefined
    if (this.#closed || this.#closing || this.#pending.length === 0) return
    const events = this.#pending
    this.#pending = []
    this.#appending++
    this.#spool.append(events).then(
      (seq) => {
        this.#appending--
        this.#spooled(seq, events.length)
      },
      (err: Error) => {
        this.#appending--
        this.#dropped += events.length
        this.#o.logger.error({ code: 'AGENT_ERR_SPOOL', detail: err.message, events: events.length }, 'a usage batch could not be written to the spool; its events are dropped')
      },
    )
  }

  /** Resolves once every batch flushed so far is spooled (and sent, when the session is up), and no batch is being read back. */
  async idle(): Promise<void> {
    do {
      await this.#spool.idle()
      await new Promise<void>((resolve) => setImmediate(resolve))
    } while (this.#reading !== undefined)
  }

  /** A batch's append is durable (or refused): it joins the send queue. */
  #spooled(seq: number | null, events: number): void {
    if (seq === null) return this.#full(events)
    if (this.#closed) return
    if (this.#fullDropped !== undefined) {
      this.#o.logger.warn(
        { dropped: this.#fullDropped, spoolBytes: this.#spool.size },
        `usage spool has room again: ${this.#fullDropped} usage event(s) were dropped while it was full`,
      )
      this.#fullDropped = undefined
    }
    this.#queue.push(seq)
    this.#pump()
  }

  /** The control session is (re)connected: resend every unacked batch in seq order. */
  resend(): void {
    if (this.#closed) return
    this.#online = true
    this.#inFlight.clear()
    this.#queue = this.#spool.unackedSeqs()
    this.#queueAt = 0
    this.#pump()
  }

  /** usage.ack arrived. A duplicate or unknown seq is ignored. */
  ack(seq: number): void {
    if (this.#closed || !this.#spool.isUnacked(seq)) return
    this.#inFlight.delete(seq)
    this.#spool.ack(seq)
    this.#scheduleCompaction()
    this.#pump()
  }

  get stats(): UsageStats {
    return {
      pendingEvents: this.#pending.length,
      unackedBatches: this.#spool.unackedCount + this.#appending,
      unackedBytes: this.#spool.unackedBytes + this.#spool.queuedBytes,
      spoolBytes: this.#spool.size + this.#spool.queuedBytes,
      dropped: this.#dropped,
      nextSeq: this.#spool.nextSeq,
      lostBatches: this.#spool.repair.lostBatches + this.#unreadable,
      recoveredBatches: this.#spool.repair.recoveredBatches,
      lossReportsPending: this.#spool.pendingLossReports,
    }
  }

  /** Flushes, compacts if worthwhile, and closes the spool. Unacked batches stay on disk for the next start. */
  async close(): Promise<void> {
    if (this.#closed || this.#closing) return
    this.flush()
    this.#closing = true
    this.#cancelFlush?.()
    this.#cancelFlush = undefined
    this.#cancelCompact?.()
    this.#cancelCompact = undefined
    this.#cancelAckTimer?.()
    this.#cancelAckTimer = undefined
    await this.#spool.idle()
    await this.#compact()
    this.#closed = true
    await this.#spool.close()
  }

  #full(events: number): void {
    this.#dropped += events
    if (this.#fullDropped === undefined) {
      const size = this.#spool.size
      this.#o.logger.warn(
        { code: 'AGENT_ERR_SPOOL_FULL', spoolBytes: size, maxSpoolBytes: this.#o.maxSpoolBytes },
        `usage spool full (${size} bytes): usage events are being dropped until the control plane acknowledges batches`,
      )
      this.#fullDropped = 0
    }
    this.#fullDropped += events
  }

  /** Sends queued batches while the session is up and the window has room. */
  #pump(): void {
    if (!this.#online) return
    const now = this.#o.clock.monotonicMs()
    for (const [seq, sentAt] of this.#inFlight) {
      if (now - sentAt < ACK_TIMEOUT_MS) continue
      // Not acked in time: the control plane could not record it. Send it again (it dedups).
      this.#inFlight.delete(seq)
      this.#queue.splice(this.#queueAt, 0, seq)
    }
    while (this.#inFlight.size < this.#maxInFlight && this.#queueAt < this.#queue.length) {
      const seq = this.#queue[this.#queueAt]!
      if (this.#spool.isUnacked(seq) && !this.#inFlight.has(seq) && !this.#lettingGo.has(seq)) {
        const sent = this.#sendOne(seq, now)
        if (sent === 'reading') break
        if (!sent) return
      }
      this.#queueAt++
    }
    if (this.#queueAt > 1024 && this.#queueAt * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueAt)
      this.#queueAt = 0
    }
    this.#armAckTimer()
  }

  // While batches await their ack, wake up when the oldest times out, so an idle
  // agent resends it without waiting for the next event or reconnect.
  #armAckTimer(): void {
    if (this.#inFlight.size === 0) {
      this.#cancelAckTimer?.()
      this.#cancelAckTimer = undefined
    }
    if (this.#cancelAckTimer !== undefined || this.#closed || this.#inFlight.size === 0) return
    let oldest = Number.POSITIVE_INFINITY
    for (const sentAt of this.#inFlight.values()) oldest = Math.min(oldest, sentAt)
    this.#cancelAckTimer = this.#o.clock.setTimer(oldest + ACK_TIMEOUT_MS - this.#o.clock.monotonicMs(), () => {
      this.#cancelAckTimer = undefined
      if (!this.#closed) this.#pump()
    })
  }

  /**
   * False when the session is down (the batch stays queued for resend()); 'reading'
   * while the batch is read back from the spool file (the pump goes on once it is).
   */
  #sendOne(seq: number, now: number): boolean | 'reading' {
    // What is sent is exactly what was written: the spool's copy of the line, or the line
    // read back from the file (a batch from before this start, or past the spool's cache).
    let batch = this.#spool.cached(seq)
    if (batch === undefined && this.#read?.seq === seq) batch = this.#read
    if (batch === undefined) {
      this.#readBack(seq)
      return 'reading'
    }
    this.#read = undefined
    let sent: boolean
    try {
      sent = this.#o.send(batch)
    } catch (err) {
      this.#o.logger.warn({ code: (err as { code?: unknown }).code, seq }, 'sending a usage batch failed; it is resent when the control session reconnects')
      sent = false
    }
    if (!sent) {
      this.#online = false
      return false
    }
    this.#inFlight.set(seq, now)
    return true
  }

  /** Reads `seq` back from the spool file, off the event loop, then pumps again. */
  #readBack(seq: number): void {
    if (this.#reading !== undefined) return
    this.#reading = seq
    this.#spool.read(seq).then(
      (batch) => {
        this.#reading = undefined
        this.#read = batch
        if (!this.#closed) this.#pump()
      },
      (err: Error) => {
        this.#reading = undefined
        if (this.#closed || !this.#spool.isUnacked(seq)) return
        this.#letGo(seq, err.message)
        this.#pump()
      },
    )
  }

  /**
   * The disk changed under us since open: the batch would fail the same way forever, so
   * it is let go, loudly, and its loss is reported in a batch of its own (sent next).
   */
  #letGo(seq: number, detail: string): void {
    this.#unreadable++
    this.#lettingGo.add(seq)
    // The report is dated in wall time (it goes into the audit log); it is queued after its spool write.
    this.#spool.reportUnreadable(seq, this.#o.clock.now()).then(
      (report) => {
        this.#lettingGo.delete(seq)
        this.#queue.push(report)
        this.#o.logger.error({ code: 'AGENT_ERR_USAGE_LOST', seq, lossReportSeq: report, detail }, 'a spooled usage batch no longer reads back intact; its loss is reported to the control plane')
        if (!this.#closed) this.#pump()
      },
      (failure: Error) => {
        this.#lettingGo.delete(seq)
        this.#spool.ack(seq)
        this.#o.logger.error({ code: 'AGENT_ERR_USAGE_LOST', seq, detail: `${detail}; ${failure.message}` }, 'a spooled usage batch no longer reads back intact, and its loss could not be spooled; it is dropped')
      },
    )
  }

  /** Compacts now, or at most once per flush interval. */
  #scheduleCompaction(): void {
    if (this.#cancelCompact !== undefined || !this.#spool.compactable) return
    const wait = this.#lastCompactAt + this.#o.flushMs - this.#o.clock.monotonicMs()
    if (wait <= 0) return void this.#compact()
    this.#cancelCompact = this.#o.clock.setTimer(wait, () => {
      this.#cancelCompact = undefined
      void this.#compact()
    })
  }

  #compact(): Promise<void> {
    if (this.#closed || !this.#spool.compactable) return Promise.resolve()
    this.#lastCompactAt = this.#o.clock.monotonicMs()
    return this.#spool.compact().catch((err: Error) => {
      this.#o.logger.error({ code: 'AGENT_ERR_SPOOL', detail: err.message }, 'usage spool compaction failed; it is retried after the next ack')
    })
  }
}
