// Inbound tunnels: an HTTP server on config.tunnelListen whose only endpoint is the
// WebSocket upgrade at /v1/tunnel. Each WebSocket becomes one responder Tunnel,
// authorised by authorize.ts on its first (and every later) handshake; the local
// service (config.expose) is connected only once the tunnel is open.
//
// Refusals, each logged and reported (conn.reject) with its code:
//   - another path: HTTP 404 before any WebSocket exists   AGENT_ERR_TUNNEL_PATH
//   - too many pending handshakes or open tunnels: the
//     WebSocket is accepted and closed at once with        AGENT_ERR_TUNNEL_LIMIT
//   - shutting down                                       AGENT_ERR_CLOSED
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { WebSocketServer, type WebSocket } from 'ws'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import type { AgentConfig, HostPort } from '../config.js'
import { AGENT_ERRORS, agentError } from '../errors.js'
import type { KeySet } from '../keyset.js'
import { authorizeInbound } from './authorize.js'
import type { TunnelRegistry } from './registry.js'
import { TUNNEL_PATH, WS_SERVER_OPTIONS, allClosed } from './transport.js'
import { Tunnel } from './tunnel.js'

export interface ListenerDeps {
  readonly config: AgentConfig
  readonly keyset: KeySet
  readonly staticKey: KeyPair
  readonly suite: CryptoSuite
  readonly registry: TunnelRegistry
  readonly logger: Logger
}

/** Time given to tunnels to finish their closing handshake at shutdown before their sockets are cut. */
const SHUTDOWN_GRACE_MS = 2_000

export class TunnelListener {
  readonly #d: ListenerDeps
  readonly #server: Server
  readonly #wss: WebSocketServer
  readonly #sockets = new Set<WebSocket>()
  #address: HostPort | undefined
  #closing = false

  private constructor(d: ListenerDeps) {
    this.#d = d
    this.#wss = new WebSocketServer(WS_SERVER_OPTIONS)
    this.#server = createServer((req, res) => {
      // Plain HTTP: nothing is served here but the upgrade.
      const upgradeOnly = pathOf(req) === TUNNEL_PATH
      const code = upgradeOnly ? 'AGENT_ERR_BAD_REQUEST' : 'AGENT_ERR_TUNNEL_PATH'
      res.writeHead(upgradeOnly ? 426 : 404, { 'content-type': 'application/json', connection: 'close' })
      res.end(JSON.stringify({ code }))
    })
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head))
    this.#server.on('clientError', (_err, socket: Duplex) => socket.destroy())
  }

  /** Binds config.tunnelListen (port 0 allowed); AGENT_ERR_LISTEN when it cannot. */
  static async start(d: ListenerDeps): Promise<TunnelListener> {
    const l = new TunnelListener(d)
    const { host, port } = d.config.tunnelListen
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(agentError('AGENT_ERR_LISTEN', `tunnel listener ${host}:${port}: ${(err as { code?: string }).code ?? 'error'}`, { cause: err }))
      l.#server.once('error', onError)
      l.#server.listen(port, host, () => {
        l.#server.off('error', onError)
        resolve()
      })
    })
    const a = l.#server.address()
    l.#address = typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : { host, port }
    l.#server.on('error', (err) => d.logger.error({ err: { message: err.message } }, 'tunnel listener error'))
    return l
  }

  get address(): HostPort {
    return this.#address as HostPort
  }

  /** Refuses new connections from now on (the registry ends the live tunnels). */
  stopAccepting(): void {
    this.#closing = true
    this.#server.close()
  }

  /** Stops accepting, waits for the tunnels' WebSockets to close (cut after a grace), frees the port. */
  async close(): Promise<void> {
    this.stopAccepting()
    await allClosed(this.#sockets, SHUTDOWN_GRACE_MS)
    this.#server.closeAllConnections()
    this.#wss.close()
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy())
    const { reporter } = this.#d.registry
    if (this.#closing) {
      reporter.reject('AGENT_ERR_CLOSED', {}, 'inbound')
      return refuseHttp(socket, '503 Service Unavailable')
    }
    if (pathOf(req) !== TUNNEL_PATH) {
      reporter.reject('AGENT_ERR_TUNNEL_PATH', {}, 'inbound')
      return refuseHttp(socket, '404 Not Found')
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, socket as Socket))
  }

  #accept(ws: WebSocket, socket: Socket): void {
    const { config, registry } = this.#d
    this.#sockets.add(ws)
    ws.once('close', () => this.#sockets.delete(ws))
    const limits = config.limits
    const refusal = this.#closing
      ? 'AGENT_ERR_CLOSED'
      : registry.pendingInbound >= limits.maxPendingHandshakes || registry.size >= limits.maxTunnels
        ? 'AGENT_ERR_TUNNEL_LIMIT'
        : undefined
    if (refusal !== undefined) {
      ws.on('error', () => {})
      ws.close(AGENT_ERRORS[refusal].closeCode, refusal)
      registry.reporter.reject(refusal, {}, 'inbound')
      return
    }
    const { keyset, staticKey, suite } = this.#d
    const service = config.service
    const expose = config.expose
    let t: Tunnel
    try {
      t = new Tunnel(registry, {
        role: 'responder',
        ws,
        suite,
        staticKey,
        resolve: (ctx) => authorizeInbound(keyset, service, expose !== undefined, ctx),
        ...(expose ? { upstream: expose } : {}),
        transport: socket,
      })
    } catch (err) {
      // Cannot happen with a valid configuration (a responder needs no keys up front); never crash on it.
      ws.on('error', () => {})
      ws.terminate()
      registry.reporter.reject(isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL', {}, 'inbound')
      return
    }
    registry.track(t)
  }
}

function pathOf(req: IncomingMessage): string {
  try {
    return new URL(req.url ?? '/', 'http://agent.invalid').pathname
  } catch {
    return ''
  }
}

function refuseHttp(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}
