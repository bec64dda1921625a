// One tunnel: a local TCP connection carried by a TunnelSession over one
// WebSocket. The listener (responder) and the dialer (initiator) build it; the
// registry tracks it and ends it when keys change; pipe.ts moves its bytes.
//
//   handshake ──onOpen──▶ open ──both CLOSEs + local side finished──▶ done (clean)
//       └──── timeout, refusal, bad bytes, reset, terminate() ─────▶ done (reason)
//
// Contract:
//   - The responder connects to the local service only in onOpen, after the
//     initiator's confirmation verified: nothing rejected or replayed reaches it.
//   - Half-close maps to CLOSE records: local FIN → session.end(1000); the peer's
//     CLOSE 1000 → FIN towards the local side; a CLOSE with another code → reset.
//   - A WebSocket that closes without an authenticated CLOSE resets the local
//     socket (never a clean FIN: that would turn truncation into a clean end).
//   - Every path ends in #finish exactly once: host.closed(), and a conn.close
//     usage event if the tunnel had opened (else conn.reject / handshake.fail).
//     Both sockets are released; every socket and WebSocket has an 'error' handler.
//   - Nothing thrown from here reaches an event emitter: session errors are typed
//     and fail the tunnel; anything else is contained as AGENT_ERR_INTERNAL.
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { WebSocket } from 'ws'

import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import type { TunnelContext } from '../../../protocol/src/index.js'
import { TunnelSession, type TunnelKeys } from '../../../protocol/src/index.js'
import type { TimerClock, CancelTimer } from '../clock.js'
import type { AgentLimits, HostPort } from '../config.js'
import { AGENT_ERRORS } from '../errors.js'
import { Pipe, type PipeOwner } from './pipe.js'
import { TRUNCATED, asErrorCode, reasonOfWsClose, reasonOfWsError, type TunnelFacts, type TunnelReporter } from './report.js'

export type TunnelRole = 'initiator' | 'responder'

/** What a tunnel needs from its owner; the registry implements it. */
export interface TunnelHost {
  readonly clock: TimerClock
  readonly limits: AgentLimits
  readonly logger: Logger
  readonly reporter: TunnelReporter
  /** The tunnel completed its handshake (the host reports conn.open). */
  opened(t: Tunnel): void
  /** A re-handshake finished (the key set may have moved on meanwhile). */
  rekeyed(t: Tunnel): void
  /**
   * The tunnel is over; called once, whether it opened or not. The host reports
   * conn.close (with `reason` unless clean) or, if it never opened, the refusal.
   */
  closed(t: Tunnel, wasOpen: boolean, reason: string | undefined): void
}

export interface TunnelInit {
  readonly role: TunnelRole
  /** Responder: an open WebSocket; initiator: one still connecting (binaryType 'nodebuffer'). */
  readonly ws: WebSocket
  readonly suite: CryptoSuite
  readonly staticKey: KeyPair
  /** Initiator: the accepted local connection, paused; taken over at connected(), resumed at onOpen. */
  readonly socket?: Socket
  readonly context?: TunnelContext
  readonly keys?: TunnelKeys
  /** Initiator: the peer agent dialed. */
  readonly peerAgent?: string
  /** Responder: keys for a proposed context; throws a KeymeshError to refuse. */
  readonly resolve?: (ctx: TunnelContext) => TunnelKeys
  /** Responder: the exposed service, connected to at onOpen. */
  readonly upstream?: HostPort
  /** Responder: the WebSocket's TCP socket (writes are batched around its reads). */
  readonly transport?: Socket
  /**
   * Initiator: when the responder refuses the proposed key version before the
   * tunnel opened (it has not heard of a rotation yet), the local socket is handed
   * here, untouched, instead of being reset, and nothing is reported.
   */
  readonly retry?: (socket: Socket) => void
}

const CLOSE_NORMAL = 1000
const code = (c: keyof typeof AGENT_ERRORS): { code: string; closeCode: number } => ({ code: c, closeCode: AGENT_ERRORS[c].closeCode })
const HANDSHAKE_TIMEOUT = code('AGENT_ERR_HANDSHAKE_TIMEOUT')
const TEXT_FRAME = code('AGENT_ERR_TEXT_FRAME')
const UPSTREAM = code('AGENT_ERR_UPSTREAM')
const INTERNAL = code('AGENT_ERR_INTERNAL')

export class Tunnel implements PipeOwner {
  readonly role: TunnelRole
  readonly #host: TunnelHost
  readonly #ws: WebSocket
  readonly #pipe: Pipe
  readonly #session: TunnelSession
  readonly #resolve: ((ctx: TunnelContext) => TunnelKeys) | undefined
  readonly #upstream: HostPort | undefined
  #retry: ((socket: Socket) => void) | undefined
  /** Initiator: the local socket, taken over at connected(). */
  #pendingSocket: Socket | undefined
  #phase: 'handshake' | 'open' | 'done' = 'handshake'
  #context: TunnelContext | undefined
  #peerAgent: string | undefined
  #cancelTimer: CancelTimer | undefined
  /** When it opened, last (re-)handshook and started a re-handshake: the clock's monotonic readings. */
  #openedAt = 0
  #lastHandshakeAt = 0
  #rehandshakeStartedAt: number | undefined
  #bytesIn = 0
  #bytesOut = 0

  /**
   * A responder goes live at once (its WebSocket is open). An initiator is built
   * while its WebSocket connects, so message 1 is computed meanwhile, and goes live
   * at connected() (or is abandoned). Throws a KeymeshError, having touched neither
   * `init.ws` nor `init.socket`, when the session cannot be built.
   */
  constructor(host: TunnelHost, init: TunnelInit) {
    this.role = init.role
    this.#host = host
    this.#ws = init.ws
    this.#resolve = init.resolve
    this.#upstream = init.upstream
    this.#retry = init.retry
    this.#context = init.context
    this.#peerAgent = init.peerAgent
    this.#pipe = new Pipe(init.ws, host.limits.highWaterBytes, this)
    this.#session = new TunnelSession({
      suite: init.suite,
      staticKey: init.staticKey,
      role: init.role,
      ...(init.context ? { context: init.context } : {}),
      ...(init.keys ? { keys: init.keys } : {}),
      ...(init.resolve ? { resolve: this.#resolveProposed } : {}),
      send: this.#pipe.send,
      handler: {
        onOpen: (ctx) => this.#onOpen(ctx),
        onData: this.#pipe.deliver,
        onEnd: (c, r) => this.#onEnd(c, r),
        onRekeyed: (ctx) => this.#onRekeyed(ctx),
        onError: (err) => this.#fail(err.code, err.closeCode, false),
      },
    })
    if (init.role === 'initiator') {
      this.#pendingSocket = init.socket
      this.#pipe.queueSends()
      this.#session.start()
    } else {
      this.#goLive(init.transport)
    }
  }

  /** Initiator: the WebSocket is open; the tunnel takes it and the local socket over (the dialer has let go). */
  connected(transport: Socket | undefined): void {
    if (this.#phase !== 'handshake' || this.#pendingSocket === undefined) return
    this.#goLive(transport)
    this.#pipe.flushQueue()
  }

  /** Initiator: the WebSocket never opened. Wipes the session; reports nothing; leaves the socket to the dialer. */
  abandon(): void {
    if (this.#phase !== 'handshake' || this.#pendingSocket === undefined) return
    this.#pendingSocket = undefined
    this.#phase = 'done'
    this.#session.destroy()
  }

  #goLive(transport: Socket | undefined): void {
    const ws = this.#ws
    ws.on('message', this.#onMessage)
    ws.on('close', this.#onWsClose)
    ws.on('error', this.#onWsError)
    this.#pipe.setTransport(transport)
    if (this.#pendingSocket) this.#pipe.attach(this.#pendingSocket)
    this.#pendingSocket = undefined
    const limits = this.#host.limits
    this.#cancelTimer = this.#host.clock.setTimer(limits.handshakeTimeoutMs, () => this.#fail(HANDSHAKE_TIMEOUT.code, HANDSHAKE_TIMEOUT.closeCode, false))
  }

  get phase(): 'handshake' | 'open' | 'done' {
    return this.#phase
  }

  /** The context in use (updated by every re-handshake); the responder's is known after message 1. */
  get context(): TunnelContext | undefined {
    return this.#context
  }

  get peerAgent(): string | undefined {
    return this.#peerAgent
  }

  get lastHandshakeAt(): number {
    return this.#lastHandshakeAt
  }

  /** When a re-handshake still in flight started; undefined when none is. */
  get rehandshakeStartedAt(): number | undefined {
    return this.#session.rehandshaking ? this.#rehandshakeStartedAt : undefined
  }

  get recordsSinceHandshake(): number {
    return this.#session.recordsSinceHandshake
  }

  get bytesIn(): number {
    return this.#phase === 'done' ? this.#bytesIn : this.#session.bytesIn
  }

  get bytesOut(): number {
    return this.#phase === 'done' ? this.#bytesOut : this.#session.bytesOut
  }

  get openedAt(): number {
    return this.#openedAt
  }

  get direction(): 'inbound' | 'outbound' {
    return this.role === 'initiator' ? 'outbound' : 'inbound'
  }

  get bufferedBytes(): number {
    return this.#phase === 'done' ? 0 : this.#pipe.bufferedBytes
  }

  /** Initiator: starts an in-band re-handshake; false when one cannot start now (retry later). */
  rehandshake(ctx: TunnelContext, keys: TunnelKeys): boolean {
    if (this.#phase !== 'open' || this.role !== 'initiator') return false
    let started = false
    this.#guard(() => {
      started = this.#session.rehandshake(ctx, keys)
    })
    if (started) this.#rehandshakeStartedAt = this.#host.clock.monotonicMs()
    return started
  }

  /** Ends the tunnel now with `err`: an authenticated CLOSE carrying its code when possible, then the WebSocket close. */
  terminate(err: KeymeshError): void {
    this.#fail(err.code, err.closeCode, true)
  }

  /** Resets the local socket and nothing else: the process is exiting (service.ts). */
  resetLocal(): void {
    this.#pipe.reset()
  }

  facts(): TunnelFacts {
    const ctx = this.#context
    if (ctx === undefined) return {}
    const initiator = this.role === 'initiator'
    return {
      pairId: ctx.pairId,
      keyVersion: ctx.keyVersion,
      peerService: initiator ? ctx.toService : ctx.fromService,
      peerAgent: initiator ? this.#peerAgent : ctx.fromAgent,
    }
  }

  // --- session callbacks ---

  #resolveProposed = (ctx: TunnelContext): TunnelKeys => {
    // Remembered before resolving, so a refusal is reported with what was asked for.
    if (this.#phase === 'handshake') {
      this.#context = ctx
      this.#peerAgent = ctx.fromAgent
    }
    return (this.#resolve as (ctx: TunnelContext) => TunnelKeys)(ctx)
  }

  #onOpen(ctx: TunnelContext): void {
    if (this.#phase !== 'handshake') return
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    this.#phase = 'open'
    this.#context = ctx
    this.#openedAt = this.#lastHandshakeAt = this.#host.clock.monotonicMs()
    this.#host.opened(this)
    if (this.#phase !== 'open') return // the host ended it at once (the keys changed meanwhile)
    if (this.role === 'responder') {
      try {
        this.#pipe.connectUpstream(this.#upstream as HostPort)
      } catch {
        return this.#fail(UPSTREAM.code, UPSTREAM.closeCode, true)
      }
    }
    this.#pipe.startReading()
  }

  #onEnd(closeCode: number, reason: string): void {
    if (this.#phase !== 'open') return
    if (closeCode !== CLOSE_NORMAL) {
      // The peer ended with an error (its upstream failed, revocation, ...): reset ours.
      return this.#fail(asErrorCode(reason) ?? TRUNCATED, CLOSE_NORMAL, false)
    }
    this.#pipe.endLocal()
    this.#checkDone()
  }

  #onRekeyed(ctx: TunnelContext): void {
    this.#context = ctx
    this.#lastHandshakeAt = this.#host.clock.monotonicMs()
    this.#rehandshakeStartedAt = undefined
    this.#host.logger.info({ direction: this.direction, pairId: ctx.pairId, keyVersion: ctx.keyVersion }, 'tunnel re-keyed')
    this.#host.rekeyed(this)
  }

  // --- the local side (PipeOwner) ---

  /** The hot path out: one local read, sealed into records (its tail kept when `more`). */
  fromLocal(chunk: Buffer, more: boolean): void {
    try {
      this.#session.write(chunk, more)
    } catch (err) {
      this.#internal(err)
    }
  }

  flushLocal(): void {
    if (this.#phase !== 'open') return
    try {
      this.#session.flush()
    } catch (err) {
      this.#internal(err)
    }
  }

  localEnded(): void {
    if (this.#phase !== 'open') return
    this.#guard(() => this.#session.end(CLOSE_NORMAL))
    this.#checkDone()
  }

  localFinished(): void {
    this.#checkDone()
  }

  localFailed(): void {
    this.#fail(UPSTREAM.code, UPSTREAM.closeCode, true)
  }

  // --- WebSocket events ---

  #onMessage = (data: Buffer, isBinary: boolean): void => {
    if (!isBinary) return this.#fail(TEXT_FRAME.code, TEXT_FRAME.closeCode, true)
    // The hot path in: no closure per record (#guard's body, inline).
    try {
      this.#session.receive(data)
    } catch (err) {
      this.#internal(err)
    }
  }

  #onWsError = (err: Error): void => {
    // ws closes the connection itself after an error; act now rather than wait for
    // its closing handshake (which a hostile peer may never answer).
    this.#fail(reasonOfWsError(err), CLOSE_NORMAL, false)
  }

  #onWsClose = (closeCode: number, reason: Buffer): void => {
    if (this.#phase === 'done') return
    if (this.#session.localEnded && this.#session.remoteEnded) {
      // Both directions ended cleanly; the local socket finishes writing on its own.
      return this.#finish(undefined)
    }
    this.#fail(reasonOfWsClose(closeCode, reason), CLOSE_NORMAL, false)
  }

  // --- endings ---

  #checkDone(): void {
    if (this.#phase === 'open' && this.#session.localEnded && this.#session.remoteEnded && this.#pipe.finished) {
      this.#closeWs(CLOSE_NORMAL, '')
      this.#finish(undefined)
    }
  }

  /**
   * Fails the tunnel with `reason`: tells the peer with an authenticated CLOSE when
   * `notify` and our direction is still open, resets the local socket, closes the
   * WebSocket with `closeCode`.
   */
  #fail(reason: string, closeCode: number, notify: boolean): void {
    if (this.#phase === 'done') return
    const retry = this.#retry
    this.#retry = undefined
    const socket = retry !== undefined && this.#phase === 'handshake' && reason === 'AGENT_ERR_KEY_VERSION' ? this.#pipe.detachLocal() : undefined
    if (socket !== undefined) {
      this.#host.logger.info({ ...this.facts(), peerAgent: this.#peerAgent }, 'peer agent refused the key version; retrying with the previous one')
      this.#closeWs(closeCode, reason)
      this.#finish(undefined)
      return (retry as (socket: Socket) => void)(socket)
    }
    if (notify && this.#session.state === 'open' && !this.#session.localEnded) {
      try {
        this.#session.end(closeCode, reason)
      } catch {
        // The session died meanwhile; the WebSocket close below still carries the code.
      }
    }
    this.#pipe.reset()
    this.#closeWs(closeCode, reason)
    this.#finish(reason)
  }

  #finish(reason: string | undefined): void {
    if (this.#phase === 'done') return
    const wasOpen = this.#phase === 'open'
    this.#bytesIn = this.#session.bytesIn
    this.#bytesOut = this.#session.bytesOut
    this.#phase = 'done'
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    this.#session.destroy()
    this.#pipe.release()
    this.#host.closed(this, wasOpen, reason)
  }

  #closeWs(closeCode: number, reason: string): void {
    const ws = this.#ws
    // Released first so the peer's close frame can be read.
    this.#pipe.release()
    if (ws.readyState === ws.OPEN) ws.close(closeCode, reason)
    else if (ws.readyState === ws.CONNECTING) ws.terminate()
  }

  // KeymeshErrors thrown synchronously by the session (its state changed under us)
  // fail the tunnel with their code; anything else is a bug, contained here so that
  // bad input never crashes the agent.
  #guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.#internal(err)
    }
  }

  #internal(err: unknown): void {
    if (isKeymeshError(err)) return this.#fail(err.code, err.closeCode, true)
    this.#host.logger.error({ err: { message: (err as Error)?.message } }, 'tunnel internal error')
    this.#fail(INTERNAL.code, INTERNAL.closeCode, true)
  }

}
