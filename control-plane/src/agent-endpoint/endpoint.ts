// The agent WebSocket endpoint: `/v1/agent` on the control plane's port, binary
// messages only, each at most 65,535 bytes (one record). Every other upgrade path
// is answered 404 before any WebSocket exists. Each connection becomes an
// AgentSession (session.ts); live sessions are tracked by the hub (hub.ts).
//
// Limits (options, with defaults): handshake timeout (10 s, CP_ERR_HANDSHAKE_TIMEOUT),
// concurrent pending handshakes (256, CP_ERR_HANDSHAKE_LIMIT: the WebSocket is
// accepted and closed at once with that code, so the agent learns why), bytes
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
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { auditFailure } from '../operation.js'
import { KmsService } from '../services/kms.js'
import { Hub } from './hub.js'
import { AgentSession } from './session.js'

export const AGENT_PATH = '/v1/agent'

export interface AgentEndpointOptions {
  readonly handshakeTimeoutMs?: number
  readonly maxPendingHandshakes?: number
  readonly maxBufferedBytes?: number
  readonly maxEarlyMessages?: number
  /** Time given to sessions to finish their close handshake at shutdown before their sockets are cut. */
  readonly shutdownGraceMs?: number
  /** Called with the error code of each session that fails or is refused before admission (metrics). */
  readonly onHandshakeFailure?: (code: string) => void
  /** The control plane's KMS service, shared by every session (one group commit); a new one with default options when absent. */
  readonly kms?: KmsService
}

export const DEFAULT_AGENT_ENDPOINT_OPTIONS = Object.freeze({
  handshakeTimeoutMs: 10_000,
  maxPendingHandshakes: 256,
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
  /** Handshakes accepted and not yet admitted or refused. */
  pendingCount(): number
}

export function createAgentEndpoint(ctx: CpContext, options: AgentEndpointOptions = {}): AgentEndpointInternals {
  const { onHandshakeFailure, kms = new KmsService(ctx), ...limits } = options
  const o = { ...DEFAULT_AGENT_ENDPOINT_OPTIONS, ...limits }
  for (const [name, value] of Object.entries(o)) {
    if (!Number.isSafeInteger(value) || value < 1) throw cpError('CP_ERR_INTERNAL', `agent endpoint option ${name} must be a positive integer`)
  }
  const idleMs = ctx.settings.agentIdleTimeoutMs
  if (!Number.isSafeInteger(idleMs) || idleMs < 2) throw cpError('CP_ERR_INTERNAL', 'setting agentIdleTimeoutMs must be an integer of at least 2 (ms)')
  const hub = new Hub(ctx)
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_RECORD_BYTES, perMessageDeflate: false, clientTracking: false })
  const sessions = new Map<AgentSession, WebSocket>()
  let pending = 0
  let closing = false

  function refuseHttp(socket: Duplex, status: string): void {
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
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
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing) return ws.close(1001, 'control plane shutting down')
      if (pending >= o.maxPendingHandshakes) {
        const err = cpError('CP_ERR_HANDSHAKE_LIMIT', `${o.maxPendingHandshakes} in progress`)
        ws.close(err.closeCode, err.code)
        onHandshakeFailure?.(err.code)
        void auditFailure(ctx, { kind: 'anonymous', remote }, 'agent.handshake', `remote:${remote ?? 'unknown'}`, err)
        return
      }
      pending++
      const session = new AgentSession(ctx, hub, kms, ws, remote, o)
      session.onSettled = () => pending--
      session.onClosed = () => sessions.delete(session)
      session.onHandshakeFailed = onHandshakeFailure
      if (session.state !== 'closed') sessions.set(session, ws)
    })
  }

  async function close(): Promise<void> {
    if (closing) return
    closing = true
    hub.close()
    const open = [...sessions.entries()]
    const done = open.map(([, ws]) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once('close', () => resolve()))))
    for (const [session] of open) session.shutdown()
    // A peer that never answers the close frame must not hold shutdown up. This is
    // a wall-clock safety valve, not protocol timing, so it does not use ctx.clock.
    const timer = setTimeout(() => {
      for (const [, ws] of open) ws.terminate()
    }, o.shutdownGraceMs)
    timer.unref()
    await Promise.all(done)
    clearTimeout(timer)
    await hub.idle()
    wss.close()
  }

  return {
    hub,
    handleUpgrade,
    connectedCount: () => hub.size,
    pendingCount: () => pending,
    close,
  }
}
