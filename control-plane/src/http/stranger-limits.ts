// What a caller who has not authenticated may cost the admin API. server.ts asks
// `admit` before it looks at a token route's bearer token; app.ts hands every refusal
// of a caller without a principal (401, 429, …) to `refused`.
//
// Rate: each source (sourceOf: an IPv4 address, an IPv6 /64) has a token bucket
// (perSecond, burst). A request to a token route takes a token before its bearer token
// is hashed or the store is read; a request that authenticates (or fails for another
// reason than its credentials) gives it back. So only failed authentications spend a
// source's budget, and once it is spent the source is answered 429 CP_ERR_RATE_LIMITED
// with `retry-after`, for the price of a map lookup, until its bucket refills. Taking
// the token up front (not after the failure) keeps many concurrent requests from one
// source from all passing before the first of them fails. At most maxSources buckets
// are kept, the least recently used forgotten first: memory is bounded; a source that
// comes back starts with a full burst.
//
// Audit: refusals are tallied per (source, code) and window (RefusalSummaries, as the
// agent endpoint's admission does): the first is recorded at once with its reason and
// its target cut to TARGET_CHARS; the rest, 429s included, are only counted and
// recorded as one summary (`count`) when the window ends. So a stranger costs at most
// two audit rows per source, code and window, whatever it sends.
import { MINUTE, RefusalSummaries, TokenBucket, sourceOf, type TimerClock } from '../../../platform/src/index.js'

export interface StrangerLimitOptions {
  /** Failed authentications a source may make per second (default 20) … */
  readonly perSecond: number
  /** … and in a burst (default 40), before it is answered 429. */
  readonly burst: number
  /** Sources whose budget is tracked at most (default 4,096). */
  readonly maxSources: number
  /** Window over which a source's refusals of one code are summarised (default 1 minute). */
  readonly auditWindowMs: number
  /** (source, code) pairs summarised at most; more are counted under `(other)` (default 1,024). */
  readonly maxAuditKeys: number
}

export const DEFAULT_STRANGER_LIMITS: StrangerLimitOptions = Object.freeze({
  perSecond: 20,
  burst: 40,
  maxSources: 4096,
  auditWindowMs: MINUTE,
  maxAuditKeys: 1024,
})

/** Characters of a refused request's path kept in its audit target. */
export const TARGET_CHARS = 128

/** A request refused before a principal was known. */
export interface StrangerRequest {
  readonly remoteAddress: string | undefined
  readonly method: string
  /** The path without its query string. */
  readonly path: string
  readonly operation: string
  /** What the caller was answered with; its code is the tally's reason. */
  readonly error: { readonly code: string }
}

/** What to write to the audit log: the first refusal of a window (with its request) or a window's summary. */
export type StrangerRecord =
  | { readonly kind: 'first'; readonly source: string; readonly code: string; readonly request: StrangerRequest; readonly target: string }
  | { readonly kind: 'summary'; readonly source: string; readonly code: string; readonly count: number }

export interface StrangerHooks {
  /** Writes one audit entry; a rejection is the hook's to log (it is not awaited by the summary timer). */
  record(r: StrangerRecord): Promise<void>
  /** A request answered 429 (metrics). */
  onLimited?(): void
}

/** A request let through: `refund` when it turned out not to be a failed authentication. */
export interface StrangerTicket {
  refund(): void
}

export class StrangerLimits {
  readonly limits: StrangerLimitOptions
  /** What `retry-after` says: the seconds one token takes to flow in, rounded up. */
  readonly retryAfterSeconds: number
  readonly #clock: TimerClock
  readonly #hooks: StrangerHooks
  readonly #buckets = new Map<string, TokenBucket>()
  readonly #summaries: RefusalSummaries

  constructor(limits: Partial<StrangerLimitOptions>, clock: TimerClock, hooks: StrangerHooks) {
    const l = { ...DEFAULT_STRANGER_LIMITS, ...limits }
    for (const [name, value] of Object.entries(l)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`stranger limit ${name} must be a positive integer`)
    }
    this.limits = Object.freeze(l)
    this.retryAfterSeconds = Math.ceil(1 / l.perSecond)
    this.#clock = clock
    this.#hooks = hooks
    this.#summaries = new RefusalSummaries({ windowMs: l.auditWindowMs, maxKeys: l.maxAuditKeys }, clock, (e) =>
      hooks.record({ kind: 'summary', source: e.source, code: e.reason, count: e.count }))
  }

  /** Sources with a bucket held (tests, metrics). */
  get sources(): number {
    return this.#buckets.size
  }

  /** Before a bearer token is looked at: a ticket, or null when the source's budget is spent (answer 429). */
  admit(remoteAddress: string | undefined): StrangerTicket | null {
    const source = sourceOf(remoteAddress)
    const now = this.#clock.monotonicMs()
    let bucket = this.#buckets.get(source)
    if (bucket === undefined) {
      if (this.#buckets.size >= this.limits.maxSources) this.#buckets.delete(this.#buckets.keys().next().value as string)
      bucket = new TokenBucket(this.limits.perSecond, this.limits.burst, now)
    } else {
      // Last used goes last: the first key is always the least recently used.
      this.#buckets.delete(source)
    }
    this.#buckets.set(source, bucket)
    if (!bucket.take(now)) {
      this.#hooks.onLimited?.()
      return null
    }
    let refunded = false
    return {
      refund: () => {
        if (refunded) return
        refunded = true
        const b = this.#buckets.get(source)
        if (b !== bucket) return
        b.give(this.#clock.monotonicMs())
        // A full bucket holds nothing worth remembering.
        if (b.full(this.#clock.monotonicMs())) this.#buckets.delete(source)
      },
    }
  }

  /** A refusal of a caller without a principal: recorded now if first in its window, else counted. */
  refused(req: StrangerRequest): Promise<void> {
    return this.#summaries.note(sourceOf(req.remoteAddress), req.error.code, (e) =>
      this.#hooks.record({ kind: 'first', source: e.source, code: e.reason, request: req, target: `http:${req.method} ${cutPath(req.path)}` }))
  }

  /** Resolves once every entry handed to `record` so far has been written (tests, shutdown). */
  idle(): Promise<void> {
    return this.#summaries.idle()
  }

  /** Stops the summary timer; counts of windows still open are not written. */
  close(): void {
    this.#summaries.close()
  }
}

/** A path as an audit target: at most TARGET_CHARS characters, `…` marking a cut. */
export function cutPath(path: string): string {
  return path.length <= TARGET_CHARS ? path : `${path.slice(0, TARGET_CHARS)}…`
}
