// What both WebSocket listeners (the agent's tunnel listener, the control plane's
// /v1/agent) put in front of a Diffie-Hellman: per-source slots and rates
// (SourceLimiter), a replay cache of first messages (by the initiator's ephemeral
// key), and per-source summaries of refusals (RefusalSummaries), so that a stranger's
// refusals cost a bounded number of reports, never one each. What a report is (a
// log line, an audit entry) and which codes refusals carry are the listener's.
import { MINUTE, type TimerClock } from './clock.js'
import { RefusalSummaries } from './refusal-summaries.js'
import type { TallyEntry } from './refusal-tally.js'
import { ReplayCache } from './replay-cache.js'
import { SourceLimiter, type SourceRefusal, type SourceSlot } from './source-limiter.js'

/** How long a first message is remembered by the replay cache. */
export const REPLAY_TTL_MS = 10 * MINUTE
/** The initiator's ephemeral key: the first bytes of Noise message 1 in XK and KK. */
export const EPHEMERAL_BYTES = 32

/** The listeners' pre-authentication limits (each an option with a default of its own). */
export interface PreauthLimits {
  /** Connections that have not sent their first handshake message: all, and per source (defaults 1,024 and 64). */
  readonly maxIdleConnections: number
  readonly maxIdlePerSource: number
  /** Handshakes past their first message, not yet authenticated: all, per source, per prefix (defaults 256, 64, 128). */
  readonly maxPendingHandshakes: number
  readonly maxPendingPerSource: number
  /** Pending handshakes from one prefix, an IPv4 /24 or an IPv6 /48. */
  readonly maxPendingPerPrefix: number
  /** Connections per second, all sources, beyond which the listener counts as under load (default 200). */
  readonly loadConnectionsPerSecond: number
  /** Under load, each source's connections per second and burst (defaults 20 and 40). */
  readonly sourceConnectionsPerSecond: number
  readonly sourceConnectionBurst: number
  /** First handshake messages remembered to refuse replays (default 8,192, each for 10 minutes). */
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
   * Reports `count` refusals of `code` from `source`: the first of each source and code
   * in a window (count 1) unless note() is given its own way to report that one, and
   * the rest when the window ends. A report may be slow (an audit write): see idle().
   */
  readonly report: (source: string, code: string, count: number) => void | Promise<unknown>
}

export class PreauthGate {
  readonly limiter: SourceLimiter
  readonly #replay: ReplayCache
  readonly #summaries: RefusalSummaries
  readonly #report: (entry: TallyEntry) => Promise<void>

  constructor(limits: PreauthLimits, clock: TimerClock, o: PreauthGateOptions) {
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
    this.#report = async (e) => {
      await o.report(e.source, e.reason, e.count)
    }
    this.#summaries = new RefusalSummaries({ windowMs: o.windowMs, maxKeys: 1024 }, clock, this.#report)
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
   * Counts a refusal: the first of its source and code in the window is reported now
   * (by `first` when given, which can say more than a count), the rest in the window's
   * summary.
   */
  note(source: string, code: string, first?: () => Promise<unknown>): void {
    const record = first === undefined ? this.#report : async () => {
      await first()
    }
    void this.#summaries.note(source, code, record).catch(() => undefined)
  }

  /** Resolves once every report started so far has ended (tests, shutdown). */
  idle(): Promise<void> {
    return this.#summaries.idle()
  }

  /** Stops the summary timer and reports the counts not yet summarised, so none is lost; later notes are ignored. */
  /** Stops the summary timer and reports the counts not yet summarised, so none is lost; later notes are ignored. */
  close(): void {
    this.#summaries.close()
  }
}
