// One agent's WebSocket session: the Noise XK handshake (control plane as
// responder), admission, the first key set, pushes and usage batches.
//
//   handshake ──msg 3 + hello──▶ admitting ──admitted──▶ ready ──▶ closed
//        └── bad bytes, timeout ─────┴── refused: 'error' + close(code) ──┘
//
// Contract:
//   - Handshake failures close with the PROTO_ERR_* close code; refusals send an
//     'error' message and close with the CP_ERR_* close code; both are audited.
//   - The session joins the hub before it reads its first key set, and re-reads
//     the agent row after joining, so neither a push nor a revocation that commits
//     meanwhile is missed.
//   - Messages that arrive before the session is ready wait in a bounded queue.
//   - Usage batches are handled one at a time, in order, and acked once recorded.
//   - Liveness (platform/src/liveness.ts): when nothing has arrived from the agent
//     for half of settings.agentIdleTimeoutMs the session pings it; when nothing has
//     arrived for all of it, the socket is terminated and the session ends (an
//     agent whose host vanished sends no TCP reset). Logged, not audited: it is a
//     lost connection, not a refusal.
//   - KMS requests and batches go to services/kms-session.ts: run concurrently,
//     answered in any order, each after its audit lines are committed; a bad
//     request or batch item is an error reply, never a session failure; the
//     in-flight limit counts calls (a batch counts its items).
import type { WebSocket } from 'ws'

import { NoiseChannel, type HandshakeResult } from '../../../protocol/src/index.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { decodeMessage, type Message, type UsageBatchMessage } from '../../../protocol/src/index.js'
import { createXkResponder } from '../../../protocol/src/index.js'
import type { CancelTimer } from '../../../platform/src/index.js'
import { Liveness } from '../../../platform/src/index.js'
import type { Actor, CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { auditFailure } from '../operation.js'
import { admitAgent } from '../services/enrollment.js'
import { KmsSessionCalls } from '../services/kms-session.js'
import type { KmsService } from '../services/kms.js'
import type { AgentRecord } from '../store/records.js'
import type { EncodedKeySet, Hub, HubSession } from './hub.js'
import { KeySetStream } from './keyset-stream.js'
import { recordUsageBatch } from './usage.js'

export interface SessionLimits {
  readonly handshakeTimeoutMs: number
  /** Bytes queued on the socket beyond which the agent counts as not reading. */
  readonly maxBufferedBytes: number
  /** Messages held while the session is not yet ready. */
  readonly maxEarlyMessages: number
}

export type SessionState = 'handshake' | 'admitting' | 'ready' | 'closed'

/** Going Away (RFC 6455): the control plane is shutting down. */
export const CLOSE_GOING_AWAY = 1001

export class AgentSession implements HubSession {
  readonly #ctx: CpContext
  readonly #hub: Hub
  readonly #kmsService: KmsService
  readonly #ws: WebSocket
  readonly #remote: string | undefined
  readonly #limits: SessionLimits
  readonly #channel: NoiseChannel
  readonly #early: Message[] = []
  readonly #keyset: KeySetStream
  readonly #liveness: Liveness
  #state: SessionState = 'handshake'
  #agent: AgentRecord | undefined
  #cancelTimer: CancelTimer | undefined
  #usage: Promise<void> = Promise.resolve()
  #kms: KmsSessionCalls | undefined
  /** Called once when the session ends, whatever the reason. */
  onClosed: (() => void) | undefined
  /** Called once when the session stops being a pending handshake. */
  onSettled: (() => void) | undefined
  /** Called at most once, with the code, when the session fails or is refused before admission. */
  onHandshakeFailed: ((code: string) => void) | undefined

  constructor(ctx: CpContext, hub: Hub, kms: KmsService, ws: WebSocket, remote: string | undefined, limits: SessionLimits) {
    this.#ctx = ctx
    this.#hub = hub
    this.#kmsService = kms
    this.#ws = ws
    this.#remote = remote
    this.#limits = limits
    this.#channel = new NoiseChannel({
      handshake: createXkResponder({ suite: ctx.suite, staticKey: ctx.identity }),
      transport: {
        send: (bytes) => this.#send(bytes),
        close: (code, reason) => this.#closeSocket(code, reason),
      },
      handler: {
        onHandshake: (r) => this.#onHandshake(r),
        onMessage: (m) => this.#onMessage(m),
        onPeerClose: () => this.#finish(),
        onError: (err) => this.#onChannelError(err),
      },
    })
    this.#keyset = new KeySetStream(this.#channel)
    const idleMs = ctx.settings.agentIdleTimeoutMs
    this.#liveness = new Liveness({
      clock: ctx.clock,
      pingMs: Math.ceil(idleMs / 2),
      deadMs: idleMs,
      ping: () => {
        if (ws.readyState !== ws.OPEN) return false
        ws.ping()
        return true
      },
      dead: (silentMs) => this.#onIdle(silentMs),
    })
    const seen = (): void => this.#liveness.seen()
    ws.on('message', (data, isBinary) => {
      seen()
      this.#onFrame(data as Buffer, isBinary)
    })
    ws.on('ping', seen)
    ws.on('pong', seen)
    ws.on('close', () => this.#finish())
    ws.on('error', (err) => {
      // ws has already closed the socket (e.g. 1009 for a frame over maxPayload).
      this.#ctx.logger.info({ err: { message: err.message }, remote: this.#remote }, 'agent socket error')
      this.#handshakeFailed('CP_ERR_BAD_REQUEST')
      void this.#audit(cpError('CP_ERR_BAD_REQUEST', `WebSocket error: ${(err as { code?: string }).code ?? 'unknown'}`))
    })
    this.#cancelTimer = ctx.clock.setTimer(limits.handshakeTimeoutMs, () => this.#refuse(cpError('CP_ERR_HANDSHAKE_TIMEOUT', `${limits.handshakeTimeoutMs} ms`)))
    this.#channel.start()
  }

  get state(): SessionState {
    return this.#state
  }

  get agentId(): string {
    return this.#agent?.id ?? ''
  }

  get service(): string {
    return this.#agent?.service ?? ''
  }

  /** Closes the session with a typed error: an 'error' message when the channel is open, then the close code. */
  terminate(error: KeymeshError): void {
    this.#refuse(error)
  }

  /** Closes for shutdown (1001). */
  shutdown(): void {
    this.#channel.close(CLOSE_GOING_AWAY, 'control plane shutting down')
    if (this.#channel.state !== 'closed') this.#closeSocket(CLOSE_GOING_AWAY, 'control plane shutting down')
  }

  applyUpdate(seq: number, set: EncodedKeySet): void {
    if (this.#state !== 'ready') return
    try {
      this.#keyset.apply(seq, set)
    } catch (err) {
      this.#fail(err)
    }
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    if (this.#state === 'closed') return
    if (!isBinary) return this.#refuse(cpError('CP_ERR_AGENT_FRAME'))
    try {
      this.#channel.receive(new Uint8Array(data.buffer, data.byteOffset, data.length))
    } catch (err) {
      this.#fail(err)
    }
  }

  // Liveness is stopped when the session finishes, so this runs on a live session only.
  #onIdle(silentMs: number): void {
    this.#ctx.logger.info({ agentId: this.#agent?.id, remote: this.#remote, silentMs }, 'agent silent; session cut')
    // Terminated, not closed: a close frame would wait for an answer that will not come.
    this.#ws.terminate()
    this.#finish()
  }

  #onHandshake(r: HandshakeResult): void {
    this.#state = 'admitting'
    const [first, hello] = r.payloads
    let message: Message
    try {
      if (first === undefined || first.length !== 0 || hello === undefined || r.remoteStatic === undefined) {
        throw cpError('CP_ERR_AGENT_MESSAGE', 'message 3 must carry hello and nothing may precede it')
      }
      message = decodeMessage(hello)
      hello.fill(0) // it may hold a join token
      if (message.type !== 'hello') throw cpError('CP_ERR_AGENT_MESSAGE', `expected hello, got ${message.type}`)
    } catch (err) {
      return this.#refuse(isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL'))
    }
    const staticKey = r.remoteStatic
    admitAgent(this.#ctx, { staticKey, hello: message, remote: this.#remote }).then(
      (a) => this.#ready(a.agent),
      (err: unknown) => {
        // admitAgent has audited the refusal already.
        this.#refuse(isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL'), false)
      },
    )
  }

  async #ready(agent: AgentRecord): Promise<void> {
    this.#settle()
    if (this.#state === 'closed') return
    this.#agent = agent
    this.#state = 'ready'
    this.#kms = new KmsSessionCalls(this.#ctx, this.#kmsService, { agentId: agent.id, service: agent.service }, {
      send: (encoded) => this.#channel.sendEncoded(encoded, true),
      isOpen: () => this.#state === 'ready',
      fail: (err) => this.#fail(err),
    })
    this.#hub.register(this)
    try {
      this.#channel.send({ type: 'welcome', agentId: agent.id, service: agent.service, serverTime: this.#ctx.clock.now() })
      for (const m of this.#early.splice(0)) this.#onMessage(m)
      const sent = await this.#keyset.sendFirst(this.#ctx, this.#hub, agent, () => this.#state === 'ready')
      if (sent === 'revoked') this.#refuse(cpError('CP_ERR_AGENT_REVOKED', `agent ${agent.id}`))
    } catch (err) {
      this.#fail(err)
    }
  }

  #onMessage(m: Message): void {
    if (this.#state !== 'ready') {
      if (this.#early.length >= this.#limits.maxEarlyMessages) return this.#refuse(cpError('CP_ERR_AGENT_MESSAGE', 'too many messages before welcome'))
      this.#early.push(m)
      return
    }
    switch (m.type) {
      case 'usage.batch':
        this.#usage = this.#usage.then(() => this.#onUsage(m))
        return
      case 'kms.request':
        return this.#kms?.request(m)
      case 'kms.batch':
        return this.#kms?.batch(m)
      case 'error':
        this.#ctx.logger.info({ agentId: this.agentId, code: m.code }, 'agent reported an error')
        return
      default:
        return this.#refuse(cpError('CP_ERR_AGENT_MESSAGE', `${m.type} is not accepted from an agent`))
    }
  }

  async #onUsage(batch: UsageBatchMessage): Promise<void> {
    const agent = this.#agent
    if (!agent || this.#state !== 'ready') return
    try {
      await recordUsageBatch(this.#ctx, agent, batch)
    } catch (err) {
      // Not acked: the agent keeps the batch and sends it again.
      this.#ctx.logger.warn({ err: { code: (err as KeymeshError).code }, agentId: agent.id, seq: batch.seq }, 'usage batch not recorded')
      return
    }
    if (this.#state !== 'ready') return
    try {
      this.#channel.send({ type: 'usage.ack', seq: batch.seq })
    } catch (err) {
      this.#fail(err)
    }
  }

  #onChannelError(err: KeymeshError): void {
    // The channel has closed the socket with the error's close code.
    this.#ctx.logger.info({ code: err.code, remote: this.#remote, agentId: this.#agent?.id }, 'agent channel failed')
    this.#handshakeFailed(err.code)
    void this.#audit(err)
    this.#finish()
  }

  /** Typed refusal: tell the agent why when the channel is open, close with the code, audit unless already done. */
  #refuse(error: KeymeshError, audit = true): void {
    if (this.#state === 'closed') return
    this.#handshakeFailed(error.code)
    if (this.#channel.state === 'open') {
      try {
        this.#channel.send({ type: 'error', code: error.code, message: error.message.slice(0, 512) })
      } catch {
        // Still close below.
      }
    }
    this.#channel.close(error.closeCode, error.code)
    if (this.#channel.state !== 'closed') this.#closeSocket(error.closeCode, error.code)
    if (audit) void this.#audit(error)
    this.#finish()
  }

  #fail(err: unknown): void {
    if (isKeymeshError(err)) return this.#refuse(err)
    this.#ctx.logger.error({ err, agentId: this.#agent?.id }, 'agent session failed')
    this.#refuse(cpError('CP_ERR_INTERNAL'))
  }

  async #audit(error: KeymeshError): Promise<void> {
    const agent = this.#agent
    const actor: Actor = agent ? { kind: 'agent', id: agent.id, service: agent.service } : { kind: 'anonymous', remote: this.#remote }
    const action = agent ? 'agent.session' : 'agent.handshake'
    await auditFailure(this.#ctx, actor, action, agent ? `agent:${agent.id}` : `remote:${this.#remote ?? 'unknown'}`, error)
  }

  /** Reports a failure that came before admission (once); later failures are not handshake failures. */
  #handshakeFailed(code: string): void {
    if (this.#agent !== undefined || this.#state === 'closed') return
    const report = this.onHandshakeFailed
    this.onHandshakeFailed = undefined
    report?.(code)
  }

  #send(bytes: Uint8Array): void {
    if (this.#ws.readyState !== this.#ws.OPEN) return
    if (this.#ws.bufferedAmount > this.#limits.maxBufferedBytes) throw cpError('CP_ERR_AGENT_BACKPRESSURE', `${this.#ws.bufferedAmount} bytes waiting`)
    this.#ws.send(bytes, { binary: true })
  }

  #closeSocket(code: number, reason: string): void {
    if (this.#ws.readyState === this.#ws.OPEN || this.#ws.readyState === this.#ws.CONNECTING) this.#ws.close(code, reason)
  }

  #settle(): void {
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    const settled = this.onSettled
    this.onSettled = undefined
    settled?.()
  }

  #finish(): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#settle()
    this.#liveness.stop()
    this.#early.length = 0
    this.#hub.unregister(this)
    this.onClosed?.()
  }
}
