// What both WebSocket listeners (the agent's tunnel listener, the control plane's
// /v1/agent) put in front of a Diffie-Hellman: per-source slots and rates
// (SourceLimiter), a replay cache of first messages (by the initiator's ephemeral
// key), and per-source summaries of refusals (RefusalTally), so that a stranger's
// refusals cost a bounded number of reports, never one each. What a report is (a
// log line, an audit entry) and which codes refusals carry are the listener's.
import { MINUTE, type CancelTimer, type TimerClock } from './clock.js'
import { RefusalTally } from './refusal-tally.js'
import { ReplayCache } from './replay-cache.js'
import { SourceLimiter, type SourceRefusal, type SourceSlot } from './source-limiter.js'

/** How long a first message is remembered by the replay cache. */
export const REPLAY_TTL_MS = 10 * MINUTE
/** The initiator's ephemeral key: the first bytes of Noise message 1 in XK and KK. */
export const EPHEMERAL_BYTES = 32

/** The listeners' pre-authentication limits (each an option with a default of its own). */
export interface PreauthLimits {
  readonly maxIdleConnections: number
  readonly maxIdlePerSource: number
  readonly maxPendingHandshakes: number
  readonly maxPendingPerSource: number
  /** Pending handshakes from one prefix, an IPv4 /24 or an IPv6 /48. */
  readonly maxPendingPerPrefix: number
  readonly loadConnectionsPerSecond: number
  readonly sourceConnectionsPerSecond: number
  readonly sourceConnectionBurst: number
  readonly replayCacheEntries: number
}

/** The defaults both listeners start from: generous for real peers, a fraction of a core for one stranger. */
export const DEFAULT_PREAUTH_LIMITS: PreauthLimits = Object.freeze({
  maxIdleConnections: 1024,
  maxIdlePerSource: 64,
  maxPendingHandshakes: 256,
  maxPendingPerSource: 64,
  maxPendingPerPrefix: 128,
  loadConnectionsPerSecond: 200,
  sourceConnectionsPerSecond: 20,
  sourceConnectionBurst: 40,
  replayCacheEntries: 8192,
})

export interface PreauthGateOptions {
  /** The window of the refusal summaries. */
  readonly windowMs: number
  /**
   * Reports `count` refusals of `code` from `source`: called for the first of each
   * source and code in a window (count 1) unless note() was told the caller reports
   * that one itself, and when the window ends for the rest.
   */
  readonly report: (source: string, code: string, count: number) => void
}

export class PreauthGate {
  readonly limiter: SourceLimiter
  readonly #replay: ReplayCache
  readonly #tally: RefusalTally
  readonly #clock: TimerClock
  readonly #report: (source: string, code: string, count: number) => void
  #cancelTally: CancelTimer | undefined
  #closed = false

  constructor(limits: PreauthLimits, clock: TimerClock, o: PreauthGateOptions) {
    this.#clock = clock
    this.#report = o.report
    this.limiter = new SourceLimiter(
      {
        maxIdle: limits.maxIdleConnections,
        maxIdlePerSource: limits.maxIdlePerSource,
        maxPending: limits.maxPendingHandshakes,
        maxPendingPerSource: limits.maxPendingPerSource,
        maxPendingPerPrefix: limits.maxPendingPerPrefix,
        loadPerSecond: limits.loadConnectionsPerSecond,
        sourcePerSecond: limits.sourceConnectionsPerSecond,
        sourceBurst: limits.sourceConnectionBurst,
        maxSources: 4 * (limits.maxIdleConnections + limits.maxPendingHandshakes),
      },
      clock,
    )
    this.#replay = new ReplayCache({ maxEntries: limits.replayCacheEntries, ttlMs: REPLAY_TTL_MS }, clock)
    this.#tally = new RefusalTally({ windowMs: o.windowMs, maxKeys: 1024 }, clock)
  }

  get underLoad(): boolean {
    return this.limiter.underLoad
  }

  /** A new connection: its idle slot, or why the limiter refuses it. */
  open(source: string): SourceSlot | SourceRefusal {
    return this.limiter.open(source)
  }

  /**
   * True when this first message was seen lately (by its first EPHEMERAL_BYTES, the
   * initiator's ephemeral key); else it is remembered. A message too short to hold a
   * key is left to the handshake, which refuses it.
   */
  replayed(first: Uint8Array): boolean {
    return first.length >= EPHEMERAL_BYTES && this.#replay.seen(first.subarray(0, EPHEMERAL_BYTES))
  }

  /**
   * Counts a refusal. Returns true when it is the first of its source and code in the
   * window: reported now (by `report`, or by the caller when `reportsFirst`), the rest
   * in the window's summary. After close() nothing is counted (false).
   */
  note(source: string, code: string, reportsFirst = false): boolean {
    if (this.#closed) return false
    const entry = this.#tally.note(source, code)
    if (entry && !reportsFirst) this.#report(entry.source, entry.reason, entry.count)
    this.#arm()
    return entry !== undefined
  }

  /** Stops the summary timer and reports the counts not yet summarised, so none is lost; later notes are ignored. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#cancelTally?.()
    this.#cancelTally = undefined
    for (const e of this.#tally.flush()) this.#report(e.source, e.reason, e.count)
  }

  #arm(): void {
    if (this.#cancelTally !== undefined) return
    const next = this.#tally.nextDue()
    if (next === undefined) return
    this.#cancelTally = this.#clock.setTimer(next - this.#clock.now(), () => {
      this.#cancelTally = undefined
      for (const e of this.#tally.due()) this.#report(e.source, e.reason, e.count)
      this.#arm()
    })
  }
}
