// Outbound tunnels: for each config.connect target a local TCP listener; each
// connection accepted there is carried to an agent of the target's service.
//
// Per connection (accepted paused, so no byte is read before the tunnel opens):
//   1. policy (authorize.ts planOutbound): enrolled, an intention this way, a
//      usable current version — else the socket is reset and conn.reject reported;
//   2. candidates: the pair's peers with an endpoint, in random order (injected
//      random), leaving out those that failed within limits.unreachableBackoffMs;
//      a peer so marked is still probed, last, by one connection every
//      PROBE_INTERVAL_MS: a restarted peer is back within that, not the backoff.
//      A WebSocket that opens to a peer clears its mark, and so does the control
//      plane's word that the peer has connected to it (peerUp: a restarted agent
//      listens before it connects), so the next connection dials it at once;
//   3. dial each in turn (limits.dialTimeoutMs, via the injected clock); a peer that
//      cannot be reached is marked and the next one tried; none left → reset,
//      conn.reject AGENT_ERR_NO_PEER;
//   4. once a WebSocket opens, the Tunnel (initiator) takes the socket and
//      WebSocket over. A handshake that then fails (wrong key, refusal) is not
//      retried with another peer: a cryptographic failure is reported, not routed
//      around. One exception: a responder that refuses the proposed key version
//      (AGENT_ERR_KEY_VERSION, it missed a rotation) is dialed once more with the
//      previous version still in grace (nothing was read from the client yet).
//      Steps 3 and 4 are dial.ts.
import { createServer, type Server, type Socket } from 'node:net'
import type { WebSocket } from 'ws'

import { isKeymeshError } from '../../../protocol/src/index.js'
import type { ConnectTarget, HostPort } from '../config.js'
import { agentError } from '../errors.js'
import type { PeerAgent } from '../keyset.js'
import { planOutbound, shuffledPeers } from './authorize.js'
import type { TunnelFacts } from './report.js'
import { Dial, ignoreError, type DialerDeps, type DialHost } from './dial.js'
import { allClosed } from './transport.js'

const SHUTDOWN_GRACE_MS = 2_000
/** How often a peer marked unreachable is dialed again anyway (at most; see the header). */
export const PROBE_INTERVAL_MS = 500

interface Unreachable {
  /** Until when it is left out of the candidates (monotonic, as probeAt). */
  until: number
  /** When a connection may next probe it (dial it after the others). */
  probeAt: number
}

export class TunnelDialer implements DialHost {
  readonly #d: DialerDeps
  readonly #servers = new Map<string, { server: Server; address: HostPort }>()
  readonly #sockets = new Set<WebSocket>()
  /** Peer agent id → its mark. */
  readonly #unreachable = new Map<string, Unreachable>()
  #dialing = 0
  #closing = false

  private constructor(d: DialerDeps) {
    this.#d = d
  }

  /** Binds every connect target (port 0 allowed); AGENT_ERR_LISTEN when one cannot be bound. */
  static async start(d: DialerDeps): Promise<TunnelDialer> {
    const dialer = new TunnelDialer(d)
    try {
      for (const target of d.config.connect) await dialer.#listen(target)
    } catch (err) {
      await dialer.close()
      throw err
    }
    return dialer
  }

  address(peerService: string): HostPort | undefined {
    return this.#servers.get(peerService)?.address
  }

  stopAccepting(): void {
    this.#closing = true
    for (const { server } of this.#servers.values()) server.close()
  }

  async close(): Promise<void> {
    this.stopAccepting()
    await allClosed(this.#sockets, SHUTDOWN_GRACE_MS)
  }

  async #listen(target: ConnectTarget): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.#accept(target, socket))
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(agentError('AGENT_ERR_LISTEN', `connect listener ${target.peerService}=${target.host}:${target.port}: ${(err as { code?: string }).code ?? 'error'}`, { cause: err }))
      server.once('error', onError)
      server.listen(target.port, target.host, () => {
        server.off('error', onError)
        resolve()
      })
    })
    server.on('error', (err) => this.#d.logger.error({ err: { message: err.message }, peerService: target.peerService }, 'connect listener error'))
    const a = server.address()
    const address = typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : { host: target.host, port: target.port }
    this.#servers.set(target.peerService, { server, address })
  }

  #accept(target: ConnectTarget, socket: Socket): void {
    const d = this.#d
    const peerService = target.peerService
    socket.on('error', ignoreError) // until the tunnel takes the socket over
    if (this.#closing) return this.#reject(socket, 'AGENT_ERR_CLOSED', { peerService })
    let plan
    try {
      plan = planOutbound(d.keyset, d.config.service, d.agentId(), peerService, (id) => d.registry.outboundVersion(id))
    } catch (err) {
      const pairId = d.keyset.byPeerService(peerService)?.pairId
      return this.#reject(socket, isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL', { peerService, pairId })
    }
    const pairId = plan.pair.pairId
    if (d.registry.size + this.#dialing >= d.config.limits.maxTunnels) {
      return this.#reject(socket, 'AGENT_ERR_TUNNEL_LIMIT', { peerService, pairId })
    }
    const now = d.clock.monotonicMs()
    const probes: PeerAgent[] = []
    const candidates = shuffledPeers(d.keyset.reachablePeers(pairId), d.random, (p) => {
      const mark = this.#unreachable.get(p.agentId)
      if (mark === undefined) return false
      if (mark.until <= now) {
        this.#unreachable.delete(p.agentId)
        return false
      }
      if (mark.probeAt <= now) {
        mark.probeAt = now + this.#probeInterval
        probes.push(p)
      }
      return true
    })
    this.#dialing++
    new Dial(this, socket, pairId, peerService, [...candidates, ...probes]).next()
  }

  // --- DialHost ---

  get deps(): DialerDeps {
    return this.#d
  }

  get closing(): boolean {
    return this.#closing
  }

  trackSocket(ws: WebSocket): void {
    this.#sockets.add(ws)
    ws.once('close', () => this.#sockets.delete(ws))
  }

  markUnreachable(peer: PeerAgent, why: string): void {
    const d = this.#d
    const now = d.clock.monotonicMs()
    this.#unreachable.set(peer.agentId, { until: now + d.config.limits.unreachableBackoffMs, probeAt: now + this.#probeInterval })
    d.logger.info({ peerAgent: peer.agentId, why }, 'peer agent unreachable; trying the next')
  }

  reachable(peer: PeerAgent): void {
    if (this.#unreachable.delete(peer.agentId)) this.#d.logger.info({ peerAgent: peer.agentId }, 'peer agent reachable again')
  }

  /** The control plane says `agentId` has connected to it (peer.up): its mark goes. */
  peerUp(agentId: string): void {
    if (this.#unreachable.delete(agentId)) this.#d.logger.info({ peerAgent: agentId }, 'peer agent connected to the control plane; dialing it again')
  }

  get #probeInterval(): number {
    return Math.min(PROBE_INTERVAL_MS, this.#d.config.limits.unreachableBackoffMs)
  }

  /** The dial is over (tunnel built, connection refused or abandoned). */
  settled(): void {
    this.#dialing--
  }

  #reject(socket: Socket, code: string, facts: TunnelFacts): void {
    this.#d.registry.reporter.reject(code, facts, 'outbound')
    // A reset, not a FIN: the client must not mistake a refusal for an empty answer.
    if (!socket.destroyed) socket.resetAndDestroy()
  }

  redial(socket: Socket, pairId: string, peerService: string, peer: PeerAgent, fallback: number): void {
    socket.on('error', ignoreError) // until the retry's tunnel takes the socket over
    this.#dialing++
    new Dial(this, socket, pairId, peerService, [peer], fallback).next()
  }

  reject(socket: Socket, code: string, facts: TunnelFacts): void {
    this.settled()
    this.#reject(socket, code, facts)
  }
}
