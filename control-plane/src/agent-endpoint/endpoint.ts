// The agent WebSocket endpoint: `/v1/agent` on the control plane's port, binary
// messages only, each at most 65,535 bytes (one record). Every other upgrade path
// is answered 404 before any WebSocket exists. Each connection passes the
// pre-authentication layer (admission.ts) and then becomes an AgentSession
// (session.ts); live sessions are tracked by the hub (hub.ts).
//
// Pre-authentication limits (options, with defaults; admission.ts and platform's
// SourceLimiter; a source is the peer's IP address, an IPv6 /64):
//   - idle connections (first message not yet sent): 1,024 in all
//     (CP_ERR_HANDSHAKE_LIMIT) and 64 per source (CP_ERR_HANDSHAKE_SOURCE_LIMIT),
//     refused with that HTTP status before the upgrade; when the table is full the
//     oldest idle connection is closed with CP_ERR_HANDSHAKE_LIMIT to make room;
//   - the first message within helloTimeoutMs (2 s, CP_ERR_HELLO_TIMEOUT);
//   - a first message seen before is refused (replay cache of 8,192, CP_ERR_HANDSHAKE_REPLAY);
//   - handshakes past their first message: 256 in all, and when that table is full
//     the oldest pending handshake is closed with CP_ERR_HANDSHAKE_LIMIT to make
//     room; 64 per source and 128 per IPv4 /24 or IPv6 /48
//     (CP_ERR_HANDSHAKE_SOURCE_LIMIT), closed with that code so the agent learns why;
//   - under load (over 200 connections/s in all), 20 connections/s per source with a
//     burst of 40 (CP_ERR_HANDSHAKE_RATE, HTTP 429); an admitted agent's token comes back.
// These refusals, and every failure before the peer authenticates (a bad or oversized
// frame, a failed handshake), are audited at most once per source and code per
// refusalAuditWindowMs (a minute), with the count, whatever the load; the refusals
// are counted in onPreauthRefusal, the failures in onHandshakeFailure.
// Limits of the session: handshake timeout (10 s from the first message, CP_ERR_HANDSHAKE_TIMEOUT), bytes
// buffered for a slow reader (8 MiB, CP_ERR_AGENT_BACKPRESSURE), messages before
// welcome (16, CP_ERR_AGENT_MESSAGE). A frame over 65,535 bytes is closed by ws
// itself with 1009 (Message Too Big, RFC 6455): ws sends that close before any
// handler runs, so no CP_ERR code can replace it; the session still audits it.
// A session from which nothing arrives for settings.agentIdleTimeoutMs (15 s) is
// cut (session.ts); ws answers the agents' pings by itself.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'

import { MAX_RECORD_BYTES } from '../../../protocol/src/index.js'
import { DEFAULT_PREAUTH_LIMITS, awaitFirstMessage, closeRefused, redeliver, refuseUpgrade, sourceOf, type SourceSlot } from '../../../platform/src/index.js'
import type { CpContext } from '../context.js'
import { CP_ERRORS, cpError, type CpErrorCode } from '../errors.js'
import { KmsService } from '../services/kms.js'
import { AgentAdmission, refusalCode } from './admission.js'
import { Hub } from './hub.js'
import { AgentSession } from './session.js'

export const AGENT_PATH = '/v1/agent'

export interface AgentEndpointOptions {
  readonly handshakeTimeoutMs?: number
  readonly maxPendingHandshakes?: number
  readonly helloTimeoutMs?: number
  readonly maxIdleConnections?: number
  readonly maxIdlePerSource?: number
  readonly maxPendingPerSource?: number
  readonly maxPendingPerPrefix?: number
  readonly loadConnectionsPerSecond?: number
  readonly sourceConnectionsPerSecond?: number
  readonly sourceConnectionBurst?: number
  readonly replayCacheEntries?: number
  readonly refusalAuditWindowMs?: number
  readonly maxBufferedBytes?: number
  readonly maxEarlyMessages?: number
  /** Time given to sessions to finish their close handshake at shutdown before their sockets are cut. */
  readonly shutdownGraceMs?: number
  /** Called with the error code of each session that fails or is refused before admission (metrics). */
  readonly onHandshakeFailure?: (code: string) => void
  /** The control plane's KMS service, shared by every session (one group commit); a new one with default options when absent. */
  readonly kms?: KmsService
  /** Called with the error code of each connection refused by a pre-authentication limit (metrics). */
  readonly onPreauthRefusal?: (code: string) => void
}

export const DEFAULT_AGENT_ENDPOINT_OPTIONS = Object.freeze({
  handshakeTimeoutMs: 10_000,
  ...DEFAULT_PREAUTH_LIMITS,
  helloTimeoutMs: 2_000,
  refusalAuditWindowMs: 60_000,
  maxBufferedBytes: 8 * 1024 * 1024,
  maxEarlyMessages: 16,
  shutdownGraceMs: 2_000,
})

export interface AgentEndpoint {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Agents with a live, authenticated session. */
  connectedCount(): number
  /** Closes every agent session (close code 1001) and stops accepting. */
  close(): Promise<void>
}

/** The endpoint with its hub exposed, for tests and benchmarks. */
export interface AgentEndpointInternals extends AgentEndpoint {
  readonly hub: Hub
  /** Handshakes past their first message, not yet admitted or refused. */
  pendingCount(): number
  /** Connections that have not sent their first message. */
  idleCount(): number
  /** Resolves once the pre-authentication refusals' summary audit entries so far are written. */
  auditsWritten(): Promise<void>
}

export function createAgentEndpoint(ctx: CpContext, options: AgentEndpointOptions = {}): AgentEndpointInternals {
  const { onHandshakeFailure, onPreauthRefusal, kms = new KmsService(ctx), ...limits } = options
  const o = { ...DEFAULT_AGENT_ENDPOINT_OPTIONS, ...limits }
  for (const [name, value] of Object.entries(o)) {
    if (!Number.isSafeInteger(value) || value < 1) throw cpError('CP_ERR_INTERNAL', `agent endpoint option ${name} must be a positive integer`)
  }
  const idleMs = ctx.settings.agentIdleTimeoutMs
  if (!Number.isSafeInteger(idleMs) || idleMs < 2) throw cpError('CP_ERR_INTERNAL', 'setting agentIdleTimeoutMs must be an integer of at least 2 (ms)')
  const hub = new Hub(ctx)
  const admission = new AgentAdmission(ctx, o, onPreauthRefusal)
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_RECORD_BYTES, perMessageDeflate: false, clientTracking: false })
  const sessions = new Map<AgentSession, WebSocket>()
  /** Sockets waiting for their first message, each with the function that stops the wait. */
  const waiting = new Map<WebSocket, () => void>()
  let closing = false

  function refuseHttp(socket: Duplex, status: string, code?: CpErrorCode): void {
    refuseUpgrade(socket, status, code)
  }

  function refuseByLimit(ws: WebSocket, slot: SourceSlot, code: CpErrorCode): void {
    slot.release()
    closeRefused(ws, ctx.clock, CP_ERRORS[code].closeCode, code)
    admission.refused(slot.source, code)
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closing) return refuseHttp(socket, '503 Service Unavailable')
    let path: string
    try {
      path = new URL(req.url ?? '/', 'http://agent.invalid').pathname
    } catch {
      path = ''
    }
    if (path !== AGENT_PATH) {
      ctx.logger.info({ path: path.slice(0, 100) }, 'upgrade refused: not the agent endpoint')
      return refuseHttp(socket, '404 Not Found')
    }
    const remote = req.socket.remoteAddress
    const source = sourceOf(remote)
    const slot = admission.open(source)
    if (typeof slot === 'string') {
      admission.refused(source, slot)
      return refuseHttp(socket, CP_ERRORS[slot].status === 429 ? '429 Too Many Requests' : '503 Service Unavailable', slot)
    }
    // Covers an upgrade that ws aborts (its callback never runs) as well as every later end.
    socket.once('close', () => slot.release())
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing) {
        slot.release()
        return ws.close(1001, 'control plane shutting down')
      }
      const stop = awaitFirstMessage(ws, ctx.clock, o.helloTimeoutMs, {
        message: (data, isBinary) => {
          waiting.delete(ws)
          hello(ws, slot, remote, data, isBinary)
        },
        timeout: () => {
          waiting.delete(ws)
          refuseByLimit(ws, slot, 'CP_ERR_HELLO_TIMEOUT')
        },
        error: (err) => {
          // ws has closed the socket (e.g. 1009 for a frame over maxPayload). Not yet
          // authenticated: audited as a per-source summary, whatever the load (admission.ts).
          waiting.delete(ws)
          slot.release()
          ws.on('error', () => {})
          onHandshakeFailure?.('CP_ERR_BAD_REQUEST')
          admission.failed(source, cpError('CP_ERR_BAD_REQUEST', `WebSocket error: ${(err as { code?: string }).code ?? 'unknown'}`))
        },
        closed: () => {
          waiting.delete(ws)
          slot.release()
        },
      })
      waiting.set(ws, stop)
      slot.onEvict = () => {
        waiting.delete(ws)
        stop()
        refuseByLimit(ws, slot, 'CP_ERR_HANDSHAKE_LIMIT')
      }
    })
  }

  function hello(ws: WebSocket, slot: SourceSlot, remote: string | undefined, data: Buffer, isBinary: boolean): void {
    if (closing) {
      slot.release()
      return ws.close(1001, 'control plane shutting down')
    }
    if (isBinary && admission.replayed(data)) return refuseByLimit(ws, slot, 'CP_ERR_HANDSHAKE_REPLAY')
    const refusal = slot.hello()
    if (refusal !== undefined) return refuseByLimit(ws, slot, refusalCode(refusal))
    const session = new AgentSession(ctx, hub, kms, ws, remote, o)
    session.onSettled = () => {
      // Settled while not closed: admitted. The source's token comes back.
      if (session.state !== 'closed') slot.authenticated()
      slot.release()
    }
    session.onClosed = () => {
      sessions.delete(session)
      // The agent was last seen as its session ended: one write per session, not per message.
      const agentId = session.agentId
      if (agentId === '' || closing) return
      ctx.store.transaction((tx) => tx.updateAgent(agentId, { lastSeenAt: ctx.clock.now() })).catch((err: unknown) => {
        ctx.logger.warn({ agentId, err: (err as Error).message }, 'could not record when the agent was last seen')
      })
    }
    session.onHandshakeFailed = onHandshakeFailure
    session.auditAnonymous = (error) => admission.failed(slot.source, error)
    // Evicted from the full pending table for a newer handshake: the session ends now.
    slot.onEvict = () => {
      admission.refused(slot.source, 'CP_ERR_HANDSHAKE_LIMIT')
      session.evict(cpError('CP_ERR_HANDSHAKE_LIMIT', 'evicted from the full table of pending handshakes'))
    }
    if (session.state === 'closed') return slot.release()
    sessions.set(session, ws)
    redeliver(ws, data, isBinary)
  }

  async function close(): Promise<void> {
    if (closing) return
    closing = true
    hub.close()
    const idle = [...waiting.entries()]
    waiting.clear()
    const open = [...sessions.entries()]
    const sockets = [...open.map(([, ws]) => ws), ...idle.map(([ws]) => ws)]
    const done = sockets.map((ws) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once('close', () => resolve()))))
    for (const [session] of open) session.shutdown()
    for (const [ws, stop] of idle) {
      stop()
      ws.on('error', () => {})
      ws.close(1001, 'control plane shutting down')
    }
    // A peer that never answers the close frame must not hold shutdown up. This is
    // a wall-clock safety valve, not protocol timing, so it does not use ctx.clock.
    const timer = setTimeout(() => {
      for (const ws of sockets) ws.terminate()
    }, o.shutdownGraceMs)
    timer.unref()
    await Promise.all(done)
    clearTimeout(timer)
    await hub.idle()
    // After the sockets: the refusals of shutdown are counted, and close reports what is not yet summarised.
    admission.close()
    await admission.idle()
    wss.close()
  }

  return {
    hub,
    handleUpgrade,
    connectedCount: () => hub.size,
    pendingCount: () => admission.limiter.stats().pending,
    idleCount: () => admission.limiter.stats().idle,
    auditsWritten: () => admission.idle(),
    close,
  }
}
