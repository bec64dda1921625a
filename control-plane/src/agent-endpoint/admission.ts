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
// by default), `details.count` saying how many refusals it stands for (RefusalTally).
// The peer has not authenticated, and a flood must not write one audit row per
// connection. Failures before authentication that are not a limit's (a bad or
// oversized frame before the session exists, a handshake the session refuses) go
// through failed(): the same summary, whatever the load, the first entry of a window
// carrying its reason.
import { PreauthGate, type PreauthLimits, type SourceRefusal, type SourceSlot } from '../../../platform/src/index.js'
import type { CpContext } from '../context.js'
import { CP_ERRORS, type CpErrorCode } from '../errors.js'
import { auditFailure } from '../operation.js'
import { KeymeshError, PROTO_ERRORS, type ErrorTable } from '../../../protocol/src/index.js'

export interface AdmissionLimits extends PreauthLimits {
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
  readonly #gate: PreauthGate
  readonly #ctx: CpContext
  readonly #onRefused: ((code: string) => void) | undefined

  constructor(ctx: CpContext, l: AdmissionLimits, onRefused?: (code: string) => void) {
    this.#ctx = ctx
    this.#onRefused = onRefused
    this.#gate = new PreauthGate(l, ctx.clock, { windowMs: l.refusalAuditWindowMs, report: (source, code, count) => this.#audit(source, code, count) })
  }

  get limiter(): PreauthGate['limiter'] {
    return this.#gate.limiter
  }

  get underLoad(): boolean {
    return this.#gate.underLoad
  }

  /** A new connection: its idle slot, or the code to refuse it with. */
  open(source: string): SourceSlot | CpErrorCode {
    const slot = this.#gate.open(source)
    return typeof slot === 'string' ? refusalCode(slot) : slot
  }

  /** True when this first message was seen lately (by the initiator's ephemeral key); else it is remembered. */
  replayed(first: Uint8Array): boolean {
    return this.#gate.replayed(first)
  }

  /** A refusal by a limit: counted, and audited as a summary (see the header). */
  refused(source: string, code: CpErrorCode): void {
    this.#onRefused?.(code)
    this.#gate.note(source, code)
  }

  /**
   * A handshake that failed before the peer authenticated (a bad message 1, an unknown
   * key or join token): the first of each source and code in a window is audited with
   * its reason, the rest are counted and summarised when the window ends, so a
   * stranger's failures cost a bounded number of audit rows, never one each.
   */
  failed(source: string, error: KeymeshError): void {
    this.#gate.note(source, error.code, () => auditFailure(this.#ctx, { kind: 'anonymous', remote: source }, 'agent.handshake', `remote:${source}`, error))
  }

  /** Resolves once every summary entry written so far is in the audit log (tests, shutdown). */
  idle(): Promise<void> {
    return this.#gate.idle()
  }

  close(): void {
    this.#gate.close()
  }

  #audit(source: string, code: string, count: number): Promise<unknown> {
    const detail = count === 1 ? `from ${source}` : `${count} refusals from ${source}`
    // A summary of handshake failures names their code, which may be the protocol's.
    const spec = (CP_ERRORS as ErrorTable)[code] ?? (PROTO_ERRORS as ErrorTable)[code] ?? CP_ERRORS.CP_ERR_INTERNAL
    return auditFailure(this.#ctx, { kind: 'anonymous', remote: source }, 'agent.handshake', `remote:${source}`, new KeymeshError(code, spec, detail), { count })
  }
}
