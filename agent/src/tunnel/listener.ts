// Inbound tunnels: an HTTP server on config.tunnelListen whose only endpoint is the
// WebSocket upgrade at /v1/tunnel. Each WebSocket passes the pre-authentication
// layer (admission.ts: per-source slots, a deadline for the first message, the hello
// screened against the key set, a replay cache, a rate limit under load) and then
// becomes one responder Tunnel, authorised by authorize.ts on its first (and every
// later) handshake; the local service (config.expose) is connected only once the
// tunnel is open.
//
// Refusals, each with its code:
//   - another path: HTTP 404 before any WebSocket exists   AGENT_ERR_TUNNEL_PATH
//   - a source over its share, or its rate under load:
//     HTTP 429 before the upgrade                         AGENT_ERR_TUNNEL_SOURCE_LIMIT,
//                                                         AGENT_ERR_TUNNEL_RATE
//   - too many idle or pending handshakes, or open
//     tunnels: HTTP 503, or the WebSocket closed with      AGENT_ERR_TUNNEL_LIMIT
//   - no first message in time, a replayed one: closed    AGENT_ERR_HELLO_TIMEOUT,
//                                                         AGENT_ERR_TUNNEL_REPLAY
//   - a bad or refused hello: closed with its code        (screenHello's codes)
//   - shutting down                                       AGENT_ERR_CLOSED
// A hello refused only because this agent's key set is behind the initiator's (a
// newer pair-key version, an agent not listed yet) is held first while the key set
// catches up (catch-up.ts, up to limits.keySetWaitMs); it goes on as any other hello
// if the set then lets it through, else it is refused as above.
// How each is reported (metric and summary log line, never a usage event): admission.ts.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { WebSocketServer, type WebSocket } from 'ws'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import { PROTO_ERRORS, isKeymeshError } from '../../../protocol/src/index.js'
import { awaitFirstMessage, closeRefused, redeliver, refuseUpgrade, sourceOf, type SourceSlot } from '../../../platform/src/index.js'
import type { AgentConfig, HostPort } from '../config.js'
import { AGENT_ERRORS, agentError, type AgentErrorCode } from '../errors.js'
import type { KeySet } from '../keyset.js'
import { TunnelAdmission, refusalCode, screenHello, type AdmissionStats, type Screened } from './admission.js'
import { authorizeInbound } from './authorize.js'
import { KeySetCatchUp } from './catch-up.js'
import type { TunnelRegistry } from './registry.js'
import { reasonOfWsClose, reasonOfWsError } from './report.js'
import { TUNNEL_PATH, WS_SERVER_OPTIONS, allClosed } from './transport.js'
import { Tunnel, type TunnelHost } from './tunnel.js'

export interface ListenerDeps {
  readonly config: AgentConfig
  readonly keyset: KeySet
  readonly staticKey: KeyPair
  readonly suite: CryptoSuite
  readonly registry: TunnelRegistry
  readonly logger: Logger
  /** Asks the control plane for the key set (ControlClient.requestKeySet); without it a hello is never held. */
  readonly requestKeySet?: (pairId: string) => void
}

/** A message from an initiator whose hello is held: it must wait for message 2. */
const OUT_OF_TURN = { code: 'PROTO_ERR_HANDSHAKE_STATE', closeCode: PROTO_ERRORS.PROTO_ERR_HANDSHAKE_STATE.closeCode }

/** Time given to tunnels to finish their closing handshake at shutdown before their sockets are cut. */
const SHUTDOWN_GRACE_MS = 2_000

export class TunnelListener {
  readonly #d: ListenerDeps
  readonly #server: Server
  readonly #wss: WebSocketServer
  readonly #sockets = new Set<WebSocket>()
  readonly #admission: TunnelAdmission
  readonly #catchUp: KeySetCatchUp
  /** Sockets waiting for their first message (or held for the key set), each with the function that stops the wait. */
  readonly #waiting = new Map<WebSocket, () => void>()
  #address: HostPort | undefined
  #closing = false

  private constructor(d: ListenerDeps) {
    this.#d = d
    this.#admission = new TunnelAdmission({ limits: d.config.limits, clock: d.registry.clock, logger: d.logger })
    const request = d.requestKeySet
    this.#catchUp = new KeySetCatchUp({
      keyset: d.keyset,
      clock: d.registry.clock,
      waitMs: request === undefined ? 0 : d.config.limits.keySetWaitMs,
      request: request ?? (() => {}),
      logger: d.logger,
    })
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

  /** What the pre-authentication layer holds and has refused, and the hellos held for the key set. */
  admissionStats(): AdmissionStats & { readonly heldForKeySet: number } {
    return { ...this.#admission.stats(), heldForKeySet: this.#catchUp.waiting }
  }

  /** Refuses new connections from now on (the registry ends the live tunnels). */
  stopAccepting(): void {
    this.#closing = true
    this.#server.close()
  }

  /** Stops accepting, waits for the tunnels' WebSockets to close (cut after a grace), frees the port. */
  async close(): Promise<void> {
    this.stopAccepting()
    // Sockets with no tunnel yet have nobody else to close them.
    for (const [ws, stop] of this.#waiting) {
      stop()
      ws.on('error', () => {})
      ws.close(AGENT_ERRORS.AGENT_ERR_CLOSED.closeCode, 'AGENT_ERR_CLOSED')
    }
    this.#waiting.clear()
    this.#catchUp.close()
    await allClosed(this.#sockets, SHUTDOWN_GRACE_MS)
    this.#server.closeAllConnections()
    this.#wss.close()
    this.#admission.close()
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
    const source = sourceOf(req.socket.remoteAddress)
    const slot = this.#admission.open(source)
    if (typeof slot === 'string') {
      this.#admission.refused(source, slot)
      return refuseHttp(socket, AGENT_ERRORS[slot].status === 429 ? '429 Too Many Requests' : '503 Service Unavailable', slot)
    }
    // Covers an upgrade that ws aborts (its callback never runs) as well as every later end.
    socket.once('close', () => slot.release())
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, socket as Socket, slot))
  }

  #accept(ws: WebSocket, socket: Socket, slot: SourceSlot): void {
    const { config, registry } = this.#d
    this.#sockets.add(ws)
    ws.once('close', () => this.#sockets.delete(ws))
    if (this.#closing) {
      this.#close(ws, slot, 'AGENT_ERR_CLOSED', AGENT_ERRORS.AGENT_ERR_CLOSED.closeCode)
      registry.reporter.reject('AGENT_ERR_CLOSED', {}, 'inbound')
      return
    }
    if (registry.size >= config.limits.maxTunnels) return this.#refuseByLimit(ws, slot, 'AGENT_ERR_TUNNEL_LIMIT')
    const stop = awaitFirstMessage(ws, registry.clock, config.limits.helloTimeoutMs, {
      message: (data, isBinary) => this.#hello(ws, socket, slot, data, isBinary),
      timeout: () => this.#refuseByLimit(ws, slot, 'AGENT_ERR_HELLO_TIMEOUT'),
      // ws has closed the socket (a frame over 65,535 bytes, a protocol violation).
      error: (err) => this.#refuseByScreen(ws, slot, reasonOfWsError(err), undefined),
      closed: (code, reason) => this.#refuseByScreen(ws, slot, reasonOfWsClose(code, reason), undefined),
    })
    this.#waiting.set(ws, stop)
    ws.once('close', () => this.#waiting.delete(ws))
    slot.onEvict = () => {
      stop()
      this.#refuseByLimit(ws, slot, 'AGENT_ERR_TUNNEL_LIMIT')
    }
  }

  #screen(data: Buffer, isBinary: boolean): Screened {
    const { config, keyset } = this.#d
    return screenHello(data, isBinary, keyset, config.service, config.expose !== undefined)
  }

  #hello(ws: WebSocket, socket: Socket, slot: SourceSlot, data: Buffer, isBinary: boolean): void {
    this.#waiting.delete(ws)
    const screened = this.#screen(data, isBinary)
    if (!screened.ok && screened.behind !== undefined && this.#catchUp.enabled) return this.#holdForKeySet(ws, socket, slot, data, isBinary, screened.behind)
    if (!screened.ok) return this.#refuseByScreen(ws, slot, screened.code, screened.closeCode)
    if (this.#admission.replayed(screened.ephemeral)) return this.#refuseByLimit(ws, slot, 'AGENT_ERR_TUNNEL_REPLAY')
    const refusal = slot.hello()
    if (refusal !== undefined) return this.#refuseByLimit(ws, slot, refusalCode(refusal))
    this.#respond(ws, socket, slot, data, isBinary)
  }

  /**
   * The key set is behind the hello (catch-up.ts): the hello passes the replay cache
   * and takes its pending slot as any other, then waits for the key set to let it
   * through; the screen then decides again. A real initiator says nothing more until
   * it has message 2, so anything else it sends meanwhile ends the wait with a refusal;
   * a socket that closes ends it too.
   */
  #holdForKeySet(ws: WebSocket, socket: Socket, slot: SourceSlot, data: Buffer, isBinary: boolean, behind: { pairId: string; ephemeral: Uint8Array }): void {
    if (this.#admission.replayed(behind.ephemeral)) return this.#refuseByLimit(ws, slot, 'AGENT_ERR_TUNNEL_REPLAY')
    const refusal = slot.hello()
    if (refusal !== undefined) return this.#refuseByLimit(ws, slot, refusalCode(refusal))
    this.#d.logger.debug({ pairId: behind.pairId, source: slot.source }, 'tunnel hello held for the key set')
    const wait = this.#catchUp.wait(behind.pairId, () => this.#screen(data, isBinary).ok)
    let spoke = false
    const onMessage = (): void => {
      spoke = true
      wait.cancel()
    }
    ws.on('message', onMessage)
    ws.on('close', wait.cancel)
    ws.on('error', wait.cancel)
    this.#waiting.set(ws, wait.cancel)
    slot.onEvict = () => {
      wait.cancel()
      this.#refuseByLimit(ws, slot, 'AGENT_ERR_TUNNEL_LIMIT')
    }
    void wait.done.then((caughtUp) => {
      ws.off('message', onMessage)
      ws.off('close', wait.cancel)
      ws.off('error', wait.cancel)
      this.#waiting.delete(ws)
      // Evicted, closed by the peer or by close(): nothing more to say.
      if (slot.phase === 'released' || ws.readyState !== ws.OPEN || this.#closing) return slot.release()
      if (spoke) return this.#refuseByScreen(ws, slot, OUT_OF_TURN.code, OUT_OF_TURN.closeCode)
      const again = this.#screen(data, isBinary)
      if (!again.ok) return this.#refuseByScreen(ws, slot, again.code, again.closeCode)
      this.#d.logger.info({ pairId: behind.pairId, caughtUp }, 'held tunnel hello accepted: the key set caught up')
      this.#respond(ws, socket, slot, data, isBinary)
    })
  }

  /** The hello passed: a responder Tunnel takes the WebSocket, and gets the hello again (redeliver). */
  #respond(ws: WebSocket, socket: Socket, slot: SourceSlot, data: Buffer, isBinary: boolean): void {
    const { config, keyset, registry, staticKey, suite } = this.#d
    const service = config.service
    const expose = config.expose
    let t: Tunnel
    // Evicted from the full pending table for a newer handshake: the limit counts it,
    // and the tunnel's end is not reported again as a failure.
    const evicted = { now: false }
    slot.onEvict = () => {
      evicted.now = true
      this.#refuseByLimit(ws, slot, 'AGENT_ERR_TUNNEL_LIMIT')
    }
    try {
      t = new Tunnel(slotHost(registry, this.#admission, slot, evicted), {
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
      slot.release()
      ws.on('error', () => {})
      ws.terminate()
      registry.reporter.reject(isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL', {}, 'inbound')
      return
    }
    registry.track(t)
    redeliver(ws, data, isBinary)
  }

  /** A refusal by a limit: counted and summarised, never a usage event (admission.ts). */
  #refuseByLimit(ws: WebSocket, slot: SourceSlot, code: AgentErrorCode): void {
    this.#close(ws, slot, code, AGENT_ERRORS[code].closeCode)
    this.#admission.refused(slot.source, code)
  }

  /**
   * A refusal by the screen (or a socket lost before its hello): counted and
   * summarised like a limit's, whatever the load, never a usage event: the peer has
   * not authenticated (admission.ts).
   */
  #refuseByScreen(ws: WebSocket, slot: SourceSlot, code: string, closeCode: number | undefined): void {
    if (closeCode !== undefined) this.#close(ws, slot, code, closeCode)
    else slot.release()
    this.#admission.refused(slot.source, code)
  }

  /** Releases the slot, then closes the socket; a peer that does not answer the close is cut (platform's closeRefused). */
  #close(ws: WebSocket, slot: SourceSlot, code: string, closeCode: number): void {
    slot.release()
    closeRefused(ws, this.#d.registry.clock, closeCode, code)
  }
}

/**
 * The registry as the host of a tunnel that holds `slot`: the slot is released when
 * the handshake ends, and the source's token comes back when it authenticated. A
 * handshake that fails before the peer authenticated is reported once per source,
 * code and window and otherwise counted and summarised (admission.failed): a forged
 * message 1 costs this agent a DH, never a usage event each.
 */
function slotHost(registry: TunnelRegistry, admission: TunnelAdmission, slot: SourceSlot, evicted: { readonly now: boolean }): TunnelHost {
  return {
    clock: registry.clock,
    limits: registry.limits,
    logger: registry.logger,
    reporter: registry.reporter,
    opened: (t) => {
      slot.authenticated()
      slot.release()
      registry.opened(t)
    },
    rekeyed: (t) => registry.rekeyed(t),
    closed: (t, wasOpen, reason) => {
      slot.release()
      if (wasOpen || reason === undefined) return registry.closed(t, wasOpen, reason)
      if (evicted.now || !admission.failed(slot.source, reason, () => registry.closed(t, false, reason))) registry.closed(t, false, undefined)
    },
  }
}

function pathOf(req: IncomingMessage): string {
  try {
    return new URL(req.url ?? '/', 'http://agent.invalid').pathname
  } catch {
    return ''
  }
}

function refuseHttp(socket: Duplex, status: string, code?: string): void {
  refuseUpgrade(socket, status, code)
}
