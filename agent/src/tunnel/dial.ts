// One accepted local connection looking for a reachable peer agent (the dialer's
// steps 3 and 4, see dialer.ts): candidates are dialed in turn, each attempt with
// limits.dialTimeoutMs (injected clock); an unreachable one is marked and the next
// tried. Each attempt builds its Tunnel as it starts dialing, so the handshake's
// first message is computed while the WebSocket connects; a failed attempt
// abandons that Tunnel, and the one whose WebSocket opens takes over the socket.
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { WebSocket } from 'ws'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import type { CancelTimer, TimerClock } from '../clock.js'
import type { AgentConfig } from '../config.js'
import type { KeySet, PairVersion, PeerAgent } from '../keyset.js'
import { outboundKeys, planOutbound } from './authorize.js'
import type { TunnelRegistry } from './registry.js'
import type { TunnelFacts } from './report.js'
import { dialWebSocket, tunnelUrl } from './transport.js'
import { Tunnel } from './tunnel.js'

/** What the dialer is built with (TunnelDialer.start), and what each Dial reads through it. */
export interface DialerDeps {
  readonly config: AgentConfig
  readonly keyset: KeySet
  readonly staticKey: KeyPair
  readonly suite: CryptoSuite
  readonly agentId: () => string | undefined
  readonly clock: TimerClock
  readonly random: () => number
  readonly registry: TunnelRegistry
  readonly logger: Logger
}

/** What a Dial needs from the dialer. */
export interface DialHost {
  readonly deps: DialerDeps
  readonly closing: boolean
  /** Keeps the WebSocket for shutdown until it closes. */
  trackSocket(ws: WebSocket): void
  markUnreachable(peer: PeerAgent, why: string): void
  /** A WebSocket to `peer` opened: it is reachable (again). */
  reachable(peer: PeerAgent): void
  /** The dial is over: a tunnel took the connection, or the client left. */
  settled(): void
  /** The dial is over: the connection is reset and the refusal reported. */
  reject(socket: Socket, code: string, facts: TunnelFacts): void
  /** `peer` refused the proposed version before the tunnel opened: one more dial, to it, with version `fallback`. */
  redial(socket: Socket, pairId: string, peerService: string, peer: PeerAgent, fallback: number): void
}

/** The newest usable version of `pairId` older than `version` (a previous one still in grace). */
export function olderUsable(keyset: KeySet, pairId: string, version: number): PairVersion | undefined {
  let best: PairVersion | undefined
  for (const v of keyset.get(pairId)?.versions ?? []) {
    if (v.version < version && keyset.usable(v) && (best === undefined || v.version > best.version)) best = v
  }
  return best
}

export class Dial {
  readonly #dialer: DialHost
  readonly #socket: Socket
  readonly #pairId: string
  readonly #peerService: string
  readonly #candidates: PeerAgent[]
  #ws: WebSocket | undefined
  #tunnel: Tunnel | undefined
  /** The WebSocket's TCP socket, from its upgrade response. */
  #transport: Socket | undefined
  #peer: PeerAgent | undefined
  #cancelTimer: CancelTimer | undefined
  #done = false

  /** A retry's version (redial); undefined: the registry's choice, and one retry allowed. */
  readonly #version: number | undefined

  constructor(dialer: DialHost, socket: Socket, pairId: string, peerService: string, candidates: PeerAgent[], version?: number) {
    this.#dialer = dialer
    this.#version = version
    this.#socket = socket
    this.#pairId = pairId
    this.#peerService = peerService
    this.#candidates = candidates
    socket.on('close', this.#onSocketClose)
  }

  next(): void {
    if (this.#done) return
    if (this.#dialer.closing) return this.#reject('AGENT_ERR_CLOSED')
    const peer = this.#candidates.shift()
    if (peer === undefined) return this.#reject('AGENT_ERR_NO_PEER')
    const d = this.#dialer.deps
    // Policy and keys are read per attempt: a rotation meanwhile has wiped the
    // buffers of the entry seen at accept time (the session copies what it gets).
    let plan
    try {
      const fixed = this.#version
      plan = planOutbound(d.keyset, d.config.service, d.agentId(), this.#peerService, (id) =>
        fixed === undefined ? d.registry.outboundVersion(id) : d.keyset.version(id, fixed),
      )
    } catch (err) {
      return this.#reject(isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL')
    }
    const current = d.keyset.peer(this.#pairId, peer.agentId)
    if (plan.pair.pairId !== this.#pairId || current === undefined) return this.next()
    let ws: WebSocket
    try {
      ws = dialWebSocket(tunnelUrl(peer.endpoint as string))
    } catch {
      this.#dialer.markUnreachable(peer, 'bad endpoint')
      return this.next()
    }
    ws.on('error', ignoreError)
    const fallback = this.#version === undefined ? olderUsable(d.keyset, this.#pairId, plan.version.version)?.version : undefined
    let tunnel: Tunnel
    try {
      tunnel = new Tunnel(d.registry, {
        role: 'initiator',
        ws,
        socket: this.#socket,
        suite: d.suite,
        staticKey: d.staticKey,
        context: plan.context,
        keys: outboundKeys(plan.version, current),
        peerAgent: current.agentId,
        ...(fallback === undefined ? {} : { retry: (s: Socket) => this.#retry(s, plan.version.version, peer, fallback) }),
      })
    } catch (err) {
      ws.terminate()
      return this.#reject(isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL')
    }
    this.#peer = peer
    this.#ws = ws
    this.#tunnel = tunnel
    this.#transport = undefined
    this.#dialer.trackSocket(ws)
    ws.once('upgrade', this.#onUpgrade)
    ws.on('open', this.#onOpen)
    ws.on('error', this.#onError)
    ws.on('close', this.#onError)
    this.#cancelTimer = d.clock.setTimer(d.config.limits.dialTimeoutMs, () => this.#failAttempt('timeout'))
  }

  /** The responder refused `refused` (it missed the rotation): settle on `fallback` and dial it again. */
  #retry(socket: Socket, refused: number, peer: PeerAgent, fallback: number): void {
    this.#dialer.deps.registry.versionRefused(this.#pairId, refused)
    this.#dialer.redial(socket, this.#pairId, this.#peerService, peer, fallback)
  }

  #onUpgrade = (res: IncomingMessage): void => {
    this.#transport = res.socket as Socket
  }

  #onOpen = (): void => {
    const tunnel = this.#tunnel as Tunnel
    const transport = this.#transport
    this.#detach()
    this.#done = true
    this.#socket.off('error', ignoreError) // the tunnel has its own handlers now
    this.#socket.off('close', this.#onSocketClose)
    this.#dialer.settled()
    this.#dialer.reachable(this.#peer as PeerAgent)
    const d = this.#dialer.deps
    d.registry.track(tunnel)
    tunnel.connected(transport)
  }

  #onError = (): void => {
    this.#failAttempt('connection failed')
  }

  #failAttempt(why: string): void {
    if (this.#done) return
    const ws = this.#ws
    this.#tunnel?.abandon()
    this.#detach()
    ws?.terminate()
    if (this.#peer) this.#dialer.markUnreachable(this.#peer, why)
    this.next()
  }

  #onSocketClose = (): void => {
    // The local client gave up before a tunnel opened.
    if (this.#done) return
    const ws = this.#ws
    this.#tunnel?.abandon()
    this.#detach()
    this.#done = true
    ws?.terminate()
    this.#dialer.settled()
  }

  /** Removes this attempt's listeners (the 'error' sink stays: ws may still report the terminate). */
  #detach(): void {
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    const ws = this.#ws
    if (ws) {
      ws.off('upgrade', this.#onUpgrade)
      ws.off('open', this.#onOpen)
      ws.off('error', this.#onError)
      ws.off('close', this.#onError)
    }
    this.#ws = undefined
    this.#tunnel = undefined
  }

  #reject(code: string): void {
    this.#detach()
    this.#done = true
    this.#socket.off('close', this.#onSocketClose)
    this.#dialer.reject(this.#socket, code, { peerService: this.#peerService, pairId: this.#pairId })
  }
}

/** An 'error' sink for sockets whose errors another path reports (or that are being dropped). */
export function ignoreError(): void {}
