// The agent endpoint's pre-authentication layer: what a connection to /v1/agent must
// pass before an AgentSession (and its Diffie-Hellman) exists for it. endpoint.ts
// wires it:
//
//   upgrade ── SourceLimiter.open (idle slot) ── first message within helloTimeoutMs
//     ── replay cache (by the ephemeral key) ── slot.hello (pending slot)
//     ── AgentSession (XK handshake, admission) ── admitted or ended: slot released
//
// Refusals by these limits (idle, pending or source share, rate under load, hello
// timeout, replay) are counted (keymesh_cp_agent_preauth_refusals_total) and
// audited as a summary: at most one entry per source and code per window (a minute
// by default), `details.count` saying how many refusals it stands for (RefusalSummaries).
// The peer has not authenticated, and a flood must not write one audit row per
// connection. Everything past these limits is the session's to refuse and audit.
import { RefusalSummaries, ReplayCache, SourceLimiter, MINUTE, type SourceRefusal, type SourceSlot } from '../../../platform/src/index.js'
import type { CpContext } from '../context.js'
import { CP_ERRORS, type CpErrorCode } from '../errors.js'
import { auditFailure } from '../operation.js'
import { KeymeshError, PROTO_ERRORS, type ErrorTable } from '../../../protocol/src/index.js'

/** How long a first message is remembered by the replay cache. */
export const REPLAY_TTL_MS = 10 * MINUTE
const EPHEMERAL_BYTES = 32

export interface AdmissionLimits {
  readonly maxIdleConnections: number
  readonly maxIdlePerSource: number
  readonly maxPendingHandshakes: number
  readonly maxPendingPerSource: number
  readonly loadConnectionsPerSecond: number
  readonly sourceConnectionsPerSecond: number
  readonly sourceConnectionBurst: number
  readonly replayCacheEntries: number
  readonly refusalAuditWindowMs: number
}

const REFUSAL_CODES: Readonly<Record<SourceRefusal, CpErrorCode>> = Object.freeze({
  'idle-limit': 'CP_ERR_HANDSHAKE_LIMIT',
  'pending-limit': 'CP_ERR_HANDSHAKE_LIMIT',
  'source-idle-limit': 'CP_ERR_HANDSHAKE_SOURCE_LIMIT',
  'source-pending-limit': 'CP_ERR_HANDSHAKE_SOURCE_LIMIT',
  rate: 'CP_ERR_HANDSHAKE_RATE',
})

export function refusalCode(r: SourceRefusal): CpErrorCode {
  return REFUSAL_CODES[r]
}

export class AgentAdmission {
  readonly limiter: SourceLimiter
  readonly #ctx: CpContext
  readonly #replay: ReplayCache
  readonly #summaries: RefusalSummaries
  readonly #onRefused: ((code: string) => void) | undefined

  constructor(ctx: CpContext, l: AdmissionLimits, onRefused?: (code: string) => void) {
    this.#ctx = ctx
    this.#onRefused = onRefused
    this.limiter = new SourceLimiter(
      {
        maxIdle: l.maxIdleConnections,
        maxIdlePerSource: l.maxIdlePerSource,
        maxPending: l.maxPendingHandshakes,
        maxPendingPerSource: l.maxPendingPerSource,
        loadPerSecond: l.loadConnectionsPerSecond,
        sourcePerSecond: l.sourceConnectionsPerSecond,
        sourceBurst: l.sourceConnectionBurst,
        maxSources: 4 * (l.maxIdleConnections + l.maxPendingHandshakes),
      },
      ctx.clock,
    )
    this.#replay = new ReplayCache({ maxEntries: l.replayCacheEntries, ttlMs: REPLAY_TTL_MS }, ctx.clock)
    this.#summaries = new RefusalSummaries({ windowMs: l.refusalAuditWindowMs, maxKeys: 1024 }, ctx.clock, (e) => this.#audit(e.source, e.reason, e.count))
  }

  get underLoad(): boolean {
    return this.limiter.underLoad
  }

  /** A new connection: its idle slot, or the code to refuse it with. */
  open(source: string): SourceSlot | CpErrorCode {
    const slot = this.limiter.open(source)
    return typeof slot === 'string' ? refusalCode(slot) : slot
  }

  /**
   * True when this first message was seen lately (by its first 32 bytes, the
   * initiator's ephemeral key); else it is remembered. A message too short to hold
   * a key is left to the handshake, which refuses it.
   */
  replayed(first: Uint8Array): boolean {
    return first.length >= EPHEMERAL_BYTES && this.#replay.seen(first.subarray(0, EPHEMERAL_BYTES))
  }

  /** A refusal by a limit: counted, and audited as a summary (see the header). */
  refused(source: string, code: CpErrorCode): void {
    this.#onRefused?.(code)
    void this.#summaries.note(source, code, (e) => this.#audit(e.source, e.reason, e.count))
  }

  /**
   * A handshake that failed before the peer authenticated (a bad message 1, an unknown
   * key or join token): the first of each source and code in a window is audited with
   * its reason, the rest are counted and summarised when the window ends, so a
   * stranger's failures cost a bounded number of audit rows, never one each.
   */
  failed(source: string, error: KeymeshError): void {
    void this.#summaries.note(source, error.code, () => auditFailure(this.#ctx, { kind: 'anonymous', remote: source }, 'agent.handshake', `remote:${source}`, error))
  }

  /** Resolves once every summary entry written so far is in the audit log (tests, shutdown). */
  idle(): Promise<void> {
    return this.#summaries.idle()
  }

  close(): void {
    this.#summaries.close()
  }

  /** auditFailure logs its own failures: the promise never rejects. */
  #audit(source: string, code: string, count: number): Promise<void> {
    const detail = count === 1 ? `from ${source}` : `${count} refusals from ${source}`
    // A summary of handshake failures names their code, which may be the protocol's.
    const spec = (CP_ERRORS as ErrorTable)[code] ?? (PROTO_ERRORS as ErrorTable)[code] ?? CP_ERRORS.CP_ERR_INTERNAL
    const err = new KeymeshError(code, spec, detail)
    return auditFailure(this.#ctx, { kind: 'anonymous', remote: source }, 'agent.handshake', `remote:${source}`, err, { count })
  }
}
