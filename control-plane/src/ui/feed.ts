// What changed, for the console's live pages: the audit log's new entries. Every
// change keymesh makes, on any replica, by any operator, agent or the scheduler,
// appends an entry in its own transaction, so the log is the one feed that misses
// nothing; an entry read here is committed.
//
// The feed reads the entries after the last one it handed out when nudged (this
// replica answered a request, or its change bus spoke: app.ts) and every `pollMs`
// (default 500 ms: another replica's change reaches a console within a second).
// It reads only while someone listens, and one read serves every listener.
//
// What must hold:
//   - listeners get each entry once, in seq order, from the head at their subscribe on;
//   - at most `maxBatch` entries per read: a burst larger than that hands out the
//     newest `maxBatch` with `skipped` saying how many were passed over (a page
//     then reloads rather than patching in the tail);
//   - a failed read is retried at the next nudge or tick, and logged once per outage;
//   - after close(), nothing is read or handed out.
import { toAuditEntry, type AuditEntry } from '../audit.js'
import type { CpContext } from '../context.js'
import type { CancelTimer } from '../../../platform/src/index.js'

export const DEFAULT_FEED_POLL_MS = 500
export const DEFAULT_FEED_BATCH = 200

export interface FeedBatch {
  readonly entries: readonly AuditEntry[]
  /** Entries passed over before these (more arrived at once than one batch holds). */
  readonly skipped: number
}

export type FeedListener = (batch: FeedBatch) => void

export interface FeedOptions {
  readonly pollMs?: number
  readonly maxBatch?: number
}

export class ConsoleFeed {
  readonly #ctx: CpContext
  readonly #pollMs: number
  readonly #maxBatch: number
  readonly #listeners = new Set<FeedListener>()
  #lastSeq: number | undefined
  #reading: Promise<void> | undefined
  #again = false
  #timer: CancelTimer | undefined
  #closed = false
  /** A read failed and none has succeeded since: the next failure is not logged again. */
  #failing = false

  constructor(ctx: CpContext, o: FeedOptions = {}) {
    this.#ctx = ctx
    this.#pollMs = o.pollMs ?? DEFAULT_FEED_POLL_MS
    this.#maxBatch = o.maxBatch ?? DEFAULT_FEED_BATCH
  }

  /** Starts handing entries to `fn`; returns the unsubscribe function. Resolves once the feed knows where the log ends. */
  async subscribe(fn: FeedListener): Promise<() => void> {
    if (this.#listeners.size === 0) {
      // Nobody listened: the log's end is where this listener starts.
      this.#lastSeq = undefined
      await this.read()
      this.#arm()
    }
    this.#listeners.add(fn)
    return () => {
      this.#listeners.delete(fn)
      if (this.#listeners.size === 0) this.#disarm()
    }
  }

  /** Something may have changed: read now (coalesced with a read under way). */
  nudge(): void {
    if (this.#listeners.size > 0) void this.read()
  }

  /** Reads what is new and hands it out; one read at a time, one more queued behind it. */
  read(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    if (this.#reading) {
      this.#again = true
      return this.#reading
    }
    this.#reading = (async () => {
      try {
        do {
          this.#again = false
          await this.#readOnce()
        } while (this.#again && !this.#closed)
        if (this.#failing) this.#ctx.logger.info('console feed: reading the audit log again')
        this.#failing = false
      } catch (err) {
        // Once per outage, not twice a second while the store is away.
        if (!this.#failing) this.#ctx.logger.warn({ err }, 'console feed: reading the audit log failed; retrying at the next change')
        this.#failing = true
      } finally {
        this.#reading = undefined
      }
    })()
    return this.#reading
  }

  close(): void {
    this.#closed = true
    this.#disarm()
    this.#listeners.clear()
  }

  async #readOnce(): Promise<void> {
    const { head, rows } = await this.#ctx.store.read(async (r) => {
      const head = (await r.getAuditHead()).seq
      const after = this.#lastSeq
      if (after === undefined || head <= after) return { head, rows: [] }
      // The newest maxBatch after `after`, oldest first.
      const newest = await r.listAuditEntries({ afterSeq: after, order: 'desc', limit: this.#maxBatch })
      return { head, rows: newest.reverse() }
    })
    const after = this.#lastSeq
    this.#lastSeq = Math.max(head, after ?? 0)
    if (after === undefined || rows.length === 0 || this.#closed) return
    const skipped = (rows[0]?.seq ?? after + 1) - after - 1
    const batch: FeedBatch = { entries: rows.map(toAuditEntry), skipped }
    for (const fn of [...this.#listeners]) {
      try {
        fn(batch)
      } catch (err) {
        this.#ctx.logger.error({ err }, 'console feed: a listener failed')
      }
    }
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#closed) return
    this.#timer = this.#ctx.clock.setTimer(this.#pollMs, () => {
      this.#timer = undefined
      if (this.#listeners.size === 0) return
      void this.read().finally(() => this.#arm())
    })
  }

  #disarm(): void {
    this.#timer?.()
    this.#timer = undefined
  }
}
