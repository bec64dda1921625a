// The tunnel listener's pre-authentication layer: what an inbound connection must
// pass before a Tunnel (and its Diffie-Hellman) exists for it. listener.ts wires it.
//
//   upgrade ── SourceLimiter.open (idle slot) ── first message within helloTimeoutMs
//     ── screenHello (preamble and policy, from the key set alone) ── replay cache
//     ── slot.hello (pending slot) ── Tunnel (KK handshake) ── open: slot released
//
// Refusals, and how each is told (see SourceLimiter for the limits themselves):
//   - by a limit (idle, pending or source share, rate, hello timeout, replay): the
//     code as the HTTP status before the upgrade, else as the close code; counted in
//     keymesh_agent_tunnel_preauth_refusals_total and logged at most once a minute
//     per source and code (with the count), never a usage event: the peer has not
//     authenticated, and a flood must not fill the usage spool and the audit log.
//   - by the screen (text frame, malformed hello, policy), or a socket lost before its
//     first message: the same way, whatever the load (a stranger's attempts must not
//     cost one record each even below the load threshold).
//   - a handshake that fails after the screen, before it authenticates (its hello
//     named this agent's pair, key version and services): a usage event with those
//     facts, as before this layer existed; but while the limiter is under load, like
//     a limit refusal.
import type { Logger } from 'pino'

import { isKeymeshError, parseTunnelHello, type TunnelContext } from '../../../protocol/src/index.js'
import { EPHEMERAL_BYTES, MINUTE, PreauthGate, type SourceRefusal, type SourceSlot, type TimerClock } from '../../../platform/src/index.js'
import type { AgentLimits } from '../config.js'
import { AGENT_ERRORS, type AgentErrorCode } from '../errors.js'
import type { KeySet } from '../keyset.js'
import { authorizeInbound } from './authorize.js'
import { keySetBehind } from './catch-up.js'
import { tallyCode, type TunnelFacts } from './report.js'

/** The window of the per-source refusal summaries in the log. */
export const REFUSAL_LOG_WINDOW_MS = MINUTE

export interface AdmissionStats {
  /** Inbound connections that have not sent their first handshake message. */
  readonly awaitingHello: number
  /** Refusals by this layer's limits (and by its screen while under load), by code. */
  readonly preauthRefusalsByCode: Record<string, number>
}

export type Screened =
  | { readonly ok: true; readonly context: TunnelContext; readonly ephemeral: Uint8Array }
  | {
      readonly ok: false
      readonly code: string
      readonly closeCode: number
      readonly facts: TunnelFacts
      /** A refusal a fresher key set may lift (catch-up.ts): the pair to ask about, and the hello's ephemeral key. */
      readonly behind?: { readonly pairId: string; readonly ephemeral: Uint8Array }
    }

/**
 * The checks a first message passes before any Diffie-Hellman: a binary frame, a
 * well-formed hello, and a context this agent would accept (authorize.ts). Pure.
 * A refusal that only says this agent's key set is behind the initiator's names
 * the pair (`behind`): the listener may hold it while the set catches up.
 */
export function screenHello(data: Uint8Array, isBinary: boolean, keyset: KeySet, service: string, exposes: boolean): Screened {
  if (!isBinary) return refusal('AGENT_ERR_TEXT_FRAME', AGENT_ERRORS.AGENT_ERR_TEXT_FRAME.closeCode, {})
  let context: TunnelContext
  let message: Uint8Array
  try {
    ;({ context, message } = parseTunnelHello(data))
  } catch (err) {
    return isKeymeshError(err) ? refusal(err.code, err.closeCode, {}) : refusal('AGENT_ERR_INTERNAL', AGENT_ERRORS.AGENT_ERR_INTERNAL.closeCode, {})
  }
  const facts: TunnelFacts = { pairId: context.pairId, keyVersion: context.keyVersion, peerService: context.fromService, peerAgent: context.fromAgent }
  const ephemeral = message.subarray(0, EPHEMERAL_BYTES)
  try {
    authorizeInbound(keyset, service, exposes, context)
  } catch (err) {
    if (!isKeymeshError(err)) return refusal('AGENT_ERR_INTERNAL', AGENT_ERRORS.AGENT_ERR_INTERNAL.closeCode, facts)
    const behind = exposes && keySetBehind(keyset, context, err.code) ? { pairId: context.pairId, ephemeral } : undefined
    return { ...refusal(err.code, err.closeCode, facts), ...(behind ? { behind } : {}) }
  }
  return { ok: true, context, ephemeral }
}

function refusal(code: string, closeCode: number, facts: TunnelFacts): Screened {
  return { ok: false, code, closeCode, facts }
}

const REFUSAL_CODES: Readonly<Record<SourceRefusal, AgentErrorCode>> = Object.freeze({
  'idle-limit': 'AGENT_ERR_TUNNEL_LIMIT',
  'pending-limit': 'AGENT_ERR_TUNNEL_LIMIT',
  'source-idle-limit': 'AGENT_ERR_TUNNEL_SOURCE_LIMIT',
  'source-pending-limit': 'AGENT_ERR_TUNNEL_SOURCE_LIMIT',
  rate: 'AGENT_ERR_TUNNEL_RATE',
})

export function refusalCode(r: SourceRefusal): AgentErrorCode {
  return REFUSAL_CODES[r]
}

export interface AdmissionDeps {
  readonly limits: AgentLimits
  readonly clock: TimerClock
  readonly logger: Logger
}

/** The limiter, replay cache and refusal summaries of one listener. */
export class TunnelAdmission {
  readonly #gate: PreauthGate
  readonly #logger: Logger
  readonly #refusals = new Map<string, number>()

  constructor(d: AdmissionDeps) {
    this.#logger = d.logger
    this.#gate = new PreauthGate(d.limits, d.clock, {
      windowMs: REFUSAL_LOG_WINDOW_MS,
      report: (source, code, count) => this.#logger.warn({ source, code, count, direction: 'inbound' }, 'tunnel connections refused before authentication'),
    })
  }

  get limiter(): PreauthGate['limiter'] {
    return this.#gate.limiter
  }

  get underLoad(): boolean {
    return this.#gate.underLoad
  }

  /** A new connection: its idle slot, or the code to refuse it with. */
  open(source: string): SourceSlot | AgentErrorCode {
    const slot = this.#gate.open(source)
    return typeof slot === 'string' ? refusalCode(slot) : slot
  }

  /** True when this first message (by its ephemeral key) was seen lately; else it is remembered. */
  replayed(ephemeral: Uint8Array): boolean {
    return this.#gate.replayed(ephemeral)
  }

  /** A refusal counted here, not reported one by one (see the header). */
  refused(source: string, code: string): void {
    // A code a peer sent (its close reason) is counted as OTHER unless it is one of
    // ours, so that neither the counts nor the summaries grow with made-up codes.
    const known = tallyCode(code)
    this.#refusals.set(known, (this.#refusals.get(known) ?? 0) + 1)
    this.#gate.note(source, known)
  }

  /**
   * A handshake that failed before the peer authenticated (after the screen: its hello
   * named a pair and version of ours). The first of each source and code in a window
   * is reported by `report` (a usage event with the facts the hello claimed, which an
   * operator needs to see a stale pair key); the rest, and every one while under
   * load, are counted and summarised, so a stranger's attempts never write one event
   * each. Returns whether it reported.
   */
  failed(source: string, code: string, report: () => void): boolean {
    // Under load nothing is reported: a flood's first failures are counted like the rest.
    if (this.underLoad) {
      this.refused(source, code)
      return false
    }
    const known = tallyCode(code)
    let reported = false
    // The gate calls `first` at once when this opens a window (RefusalSummaries).
    this.#gate.note(source, known, async () => {
      reported = true
      report()
    })
    if (!reported) this.#refusals.set(known, (this.#refusals.get(known) ?? 0) + 1)
    return reported
  }

  stats(): AdmissionStats {
    return { awaitingHello: this.#gate.limiter.stats().idle, preauthRefusalsByCode: Object.fromEntries(this.#refusals) }
  }

  close(): void {
    this.#gate.close()
  }
}
