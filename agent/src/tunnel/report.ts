// What the tunnel layer tells the outside world: usage events (for the audit log,
// via the usage spool) and log lines, with the counters that TunnelStats shows.
//
// Contract:
//   - Every rejection (conn.reject) and handshake failure (handshake.fail) is
//     logged at warn with its code and counted, in all and by code (for metrics;
//     a code outside the agent's and the protocol's tables, which a peer's close
//     reason may carry, counts as OTHER, so peers cannot grow the tallies);
//     conn.open / conn.close are logged at info.
//   - Fields are names, ids, versions, counts and error codes only: never key
//     material, never peer-supplied free text (a reason is kept only when it is a
//     well-formed error code).
//   - A usage sink that throws never breaks a tunnel: the error is logged.
import type { Logger } from 'pino'

import { PROTO_ERRORS, isKeymeshError } from '../../../protocol/src/index.js'
import type { UsageEvent } from '../../../protocol/src/index.js'
import type { Clock } from '../clock.js'
import { AGENT_ERRORS } from '../errors.js'

export interface UsageSink {
  record(e: UsageEvent): void
}

/** What is known about a tunnel when it is reported; any field may be missing early on. */
export interface TunnelFacts {
  readonly pairId?: string | undefined
  readonly peerService?: string | undefined
  readonly peerAgent?: string | undefined
  readonly keyVersion?: number | undefined
}

export interface CloseFacts extends TunnelFacts {
  readonly bytesIn: number
  readonly bytesOut: number
  readonly durationMs: number
  /** Undefined for a clean close (both directions ended with code 1000). */
  readonly reason?: string | undefined
}

const ERROR_CODE_RE = /^(?:PROTO|CP|AGENT)_ERR_[A-Z0-9_]{1,50}$/

/** A tunnel's connection ended without an authenticated CLOSE. */
export const TRUNCATED = 'AGENT_ERR_TUNNEL_TRUNCATED'

/** `text` when it is a well-formed error code (e.g. a peer's close reason), else undefined. */
export function asErrorCode(text: string | undefined): string | undefined {
  return text !== undefined && text.length <= 64 && ERROR_CODE_RE.test(text) ? text : undefined
}

/** ws errors are frame-level protocol violations; the one with a limit has its own code. */
export function reasonOfWsError(err: Error): string {
  const c = (err as { code?: string }).code
  if (c === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return 'PROTO_ERR_RECORD_TOO_LARGE'
  if (c !== undefined && c.startsWith('WS_ERR_')) return 'PROTO_ERR_RECORD_MALFORMED'
  return TRUNCATED
}

/** Why a WebSocket closed before an authenticated CLOSE: the peer's code if it sent one, else truncation. */
export function reasonOfWsClose(closeCode: number, reason: Buffer): string {
  return (closeCode >= 4000 && closeCode <= 4999 ? asErrorCode(reason.toString('latin1')) : undefined) ?? TRUNCATED
}

/**
 * A refusal by policy (an AGENT_ERR_* from authorization or limits) is a
 * rejection; anything else before a tunnel opens (PROTO_ERR_*: a bad or forged
 * handshake, a timeout) is a handshake failure.
 */
export function isRejection(code: string): boolean {
  return code.startsWith('AGENT_ERR_') && code !== 'AGENT_ERR_HANDSHAKE_TIMEOUT' && code !== 'AGENT_ERR_TEXT_FRAME' && code !== TRUNCATED
}

/** Where a code outside the known tables is counted. */
export const OTHER_CODE = 'OTHER'

/** `code` when it is in one of our tables, else OTHER: a peer's made-up code is never a label or a key of ours. */
export function tallyCode(code: string): string {
  return Object.hasOwn(AGENT_ERRORS, code) || Object.hasOwn(PROTO_ERRORS, code) ? code : OTHER_CODE
}

export class TunnelReporter {
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #usage: UsageSink
  handshakeFailures = 0
  rejections = 0
  /** Counts by code (see the contract). */
  readonly handshakeFailuresByCode = new Map<string, number>()
  readonly rejectionsByCode = new Map<string, number>()

  constructor(clock: Clock, logger: Logger, usage: UsageSink) {
    this.#clock = clock
    this.#logger = logger
    this.#usage = usage
  }

  /** A connection refused before or during the handshake by policy or limits. */
  reject(code: string, facts: TunnelFacts, direction: 'inbound' | 'outbound'): void {
    this.rejections++
    tally(this.rejectionsByCode, code)
    this.#logger.warn({ code, direction, ...pick(facts) }, 'tunnel rejected')
    this.#record({ kind: 'conn.reject', ...pick(facts), reason: code })
  }

  handshakeFail(code: string, facts: TunnelFacts, direction: 'inbound' | 'outbound'): void {
    this.handshakeFailures++
    tally(this.handshakeFailuresByCode, code)
    this.#logger.warn({ code, direction, ...pick(facts) }, 'tunnel handshake failed')
    this.#record({ kind: 'handshake.fail', ...pick(facts), reason: code })
  }

  /** Routes a pre-open failure to reject or handshakeFail by its code. */
  failedBeforeOpen(code: string, facts: TunnelFacts, direction: 'inbound' | 'outbound'): void {
    if (isRejection(code)) this.reject(code, facts, direction)
    else this.handshakeFail(code, facts, direction)
  }

  open(facts: TunnelFacts, direction: 'inbound' | 'outbound'): void {
    this.#logger.info({ direction, ...pick(facts) }, 'tunnel open')
    this.#record({ kind: 'conn.open', ...pick(facts) })
  }

  close(facts: CloseFacts, direction: 'inbound' | 'outbound'): void {
    const reason = asErrorCode(facts.reason)
    const fields = { ...pick(facts), bytesIn: facts.bytesIn, bytesOut: facts.bytesOut, durationMs: Math.max(0, Math.round(facts.durationMs)) }
    this.#logger.info({ direction, ...fields, ...(reason ? { code: reason } : {}) }, 'tunnel closed')
    this.#record({ kind: 'conn.close', ...fields, ...(reason ? { reason } : {}) })
  }

  #record(e: Omit<UsageEvent, 'at'>): void {
    try {
      this.#usage.record({ ...e, at: this.#clock.now() } as UsageEvent)
    } catch (err) {
      this.#logger.error({ err: { code: isKeymeshError(err) ? err.code : 'untyped', message: (err as Error)?.message } }, 'usage event not recorded')
    }
  }
}

function tally(counts: Map<string, number>, code: string): void {
  const key = tallyCode(code)
  counts.set(key, (counts.get(key) ?? 0) + 1)
}

/** Only the fields a usage event may carry, and only those that are set. */
function pick(f: TunnelFacts): TunnelFacts {
  const out: { pairId?: string; peerService?: string; peerAgent?: string; keyVersion?: number } = {}
  if (f.pairId !== undefined) out.pairId = f.pairId
  if (f.peerService !== undefined) out.peerService = f.peerService
  if (f.peerAgent !== undefined) out.peerAgent = f.peerAgent
  if (f.keyVersion !== undefined) out.keyVersion = f.keyVersion
  return out
}

