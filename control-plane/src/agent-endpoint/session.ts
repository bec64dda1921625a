// One agent's WebSocket session: the Noise XK handshake (control plane as
// responder), admission, the first key set, pushes and usage batches.
//
//   handshake ──msg 3 + hello──▶ admitting ──admitted──▶ ready ──▶ closed
//        └── bad bytes, timeout ─────┴── refused: 'error' + close(code) ──┘
//
// The conversation's order (protocol/src/control-conversation.ts) is kept by a
// CpConversation: every message from the agent goes through it, and so does every
// message this session sends; `ready` spans its phases welcomed, keyset and synced.
//
// Contract:
//   - Handshake failures close with the PROTO_ERR_* close code; refusals send an
//     'error' message and close with the CP_ERR_* close code; both are audited.
//   - The session joins the hub before it reads its first key set, and re-reads
//     the agent row after joining, so neither a push nor a revocation that commits
//     meanwhile is missed.
//   - Messages that arrive before the first key set is out wait in the conversation's
//     bounded backlog (limits.maxEarlyMessages); a message out of place is refused
//     with CP_ERR_AGENT_MESSAGE, the PROTO_ERR_* as its cause and in its detail.
//   - Usage batches are handled one at a time, in order, and acked once recorded.
//   - Liveness (platform/src/liveness.ts): when nothing has arrived from the agent
//     for half of settings.agentIdleTimeoutMs the session pings it; when nothing has
//     arrived for all of it, the socket is terminated and the session ends (an
//     agent whose host vanished sends no TCP reset). Logged, not audited: it is a
//     lost connection, not a refusal.
//   - Optional features (protocol/src/control-features.ts): XK message 2 carries the
//     offer; where the agent's hello agreed to them, keyset.request recomputes and
//     pushes its service's key set (at most KEYSET_REQUESTS_PER_SECOND, burst
//     KEYSET_REQUEST_BURST; more are dropped and logged: the agent asks again), and
//     peerUp() sends peer.up for a pair the agent has been sent. Once the first key
//     set is out, the session publishes 'agent-connected' (hub.ts tells the peers).
//   - KMS requests and batches go to services/kms-session.ts: run concurrently,
//     answered in any order, each after its audit lines are committed; a bad
//     request or batch item is an error reply, never a session failure; the
//     in-flight limit counts calls (a batch counts its items).
import type { WebSocket } from 'ws'

import { NoiseChannel, type HandshakeResult } from '../../../protocol/src/index.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { type AgentMessage, type Message, type MessageHead, type UsageBatchMessage } from '../../../protocol/src/index.js'
import { CONVERSATION_ERROR_CODES, CpConversation } from '../../../protocol/src/index.js'
import { createXkResponder } from '../../../protocol/src/index.js'
import type { CancelTimer } from '../../../platform/src/index.js'
import { Liveness, TokenBucket } from '../../../platform/src/index.js'
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
  /** Messages held while the first key set is not yet out. */
  readonly maxEarlyMessages: number
}

export type SessionState = 'handshake' | 'admitting' | 'ready' | 'closed'

/** Going Away (RFC 6455): the control plane is shutting down. */
export const CLOSE_GOING_AWAY = 1001

/** keyset.request: each recomputes the service's key set (a store read); an agent asks at most once a second per pair. */
export const KEYSET_REQUESTS_PER_SECOND = 2
export const KEYSET_REQUEST_BURST = 10

const CONVERSATION_CODES: ReadonlySet<string> = new Set(CONVERSATION_ERROR_CODES)

export class AgentSession implements HubSession {
  readonly #ctx: CpContext
  readonly #hub: Hub
  readonly #kmsService: KmsService
  readonly #ws: WebSocket
  readonly #remote: string | undefined
  readonly #limits: SessionLimits
  readonly #channel: NoiseChannel
  readonly #conversation: CpConversation
  readonly #keyset: KeySetStream
  readonly #liveness: Liveness
  #closed = false
  #agent: AgentRecord | undefined
  #cancelTimer: CancelTimer | undefined
  #usage: Promise<void> = Promise.resolve()
  #kms: KmsSessionCalls | undefined
  #keysetRequests: TokenBucket | undefined
  /** Called once when the session ends, whatever the reason. */
  onClosed: (() => void) | undefined
  /** Called once when the session stops being a pending handshake. */
  onSettled: (() => void) | undefined
  /** Called at most once, with the code, when the session fails or is refused before admission. */
  onHandshakeFailed: ((code: string) => void) | undefined
  /**
   * Audits a failure before authentication in the endpoint's place (its admission
   * aggregates them per source); without it each such failure is audited alone.
   */
  auditAnonymous: ((error: KeymeshError) => void) | undefined

  constructor(ctx: CpContext, hub: Hub, kms: KmsService, ws: WebSocket, remote: string | undefined, limits: SessionLimits) {
    this.#ctx = ctx
    this.#hub = hub
    this.#kmsService = kms
    this.#ws = ws
    this.#remote = remote
    this.#limits = limits
    this.#conversation = new CpConversation({ maxBacklog: limits.maxEarlyMessages })
    this.#channel = new NoiseChannel({
      handshake: createXkResponder({ suite: ctx.suite, staticKey: ctx.identity }),
      transport: {
        send: (bytes) => this.#write(bytes),
        close: (code, reason) => this.#closeSocket(code, reason),
      },
      handler: {
        onHandshake: (r) => this.#onHandshake(r),
        onMessage: (m) => this.#onMessage(m),
        onPeerClose: () => this.#finish(),
        onError: (err) => this.#onChannelError(err),
      },
      // XK message 2: what this control plane speaks beyond the base conversation.
      payload: (index) => (index === 1 ? this.#conversation.offer() : new Uint8Array(0)),
      kmsFrames: () => this.#conversation.speaks('kms.frame'),
    })
    this.#keyset = new KeySetStream({
      send: (m) => this.#send(m),
      sendEncoded: (head, encoded) => this.#sendEncoded(head, encoded, false),
    })
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
    const phase = this.#conversation.phase.name
    if (this.#closed || phase === 'ended') return 'closed'
    return phase === 'handshake' || phase === 'admitting' ? phase : 'ready'
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

  /**
   * Closed by a pre-authentication limit that took its slot for a newer handshake: the
   * limit counts and summarises the refusal, so no handshake failure is reported and
   * nothing is audited here, and the handshake's timer ends with the session.
   */
  evict(error: KeymeshError): void {
    this.onHandshakeFailed = undefined
    this.#refuse(error, false)
  }

  /** Closes for shutdown (1001). */
  shutdown(): void {
    this.#channel.close(CLOSE_GOING_AWAY, 'control plane shutting down')
    if (this.#channel.state !== 'closed') this.#closeSocket(CLOSE_GOING_AWAY, 'control plane shutting down')
  }

  peerUp(pairId: string, agentId: string): void {
    if (this.state !== 'ready' || !this.#conversation.speaks('peer.up') || !this.#keyset.has(pairId)) return
    try {
      this.#send({ type: 'peer.up', pairId, agentId })
    } catch (err) {
      this.#fail(err)
    }
  }

  applyUpdate(seq: number, set: EncodedKeySet): void {
    if (this.state !== 'ready') return
    try {
      this.#keyset.apply(seq, set, this.#conversation.speaks('pair.peers'))
    } catch (err) {
      this.#fail(err)
    }
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    if (this.#closed) return
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
    const opened = this.#conversation.opened(r.payloads)
    if (opened.kind === 'violation') return this.#refuse(this.#violation(opened.error))
    const staticKey = r.remoteStatic
    if (staticKey === undefined) return this.#refuse(cpError('CP_ERR_AGENT_MESSAGE', 'the handshake named no agent key'))
    admitAgent(this.#ctx, { staticKey, hello: opened.hello, remote: this.#remote }).then(
      (a) => this.#ready(a.agent),
      (err: unknown) => {
        // admitAgent has audited the refusal already.
        this.#refuse(isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL'), false)
      },
    )
  }

  async #ready(agent: AgentRecord): Promise<void> {
    this.#settle()
    if (this.#closed) return
    this.#agent = agent
    this.#kms = new KmsSessionCalls(this.#ctx, this.#kmsService, { agentId: agent.id, service: agent.service }, {
      send: (type, encoded) => this.#sendEncoded({ type }, encoded, true),
      isOpen: () => this.state === 'ready',
      fail: (err) => this.#fail(err),
      frames: this.#conversation.speaks('kms.frame'),
    })
    this.#hub.register(this)
    try {
      this.#send({ type: 'welcome', agentId: agent.id, service: agent.service, serverTime: this.#ctx.clock.now() })
      // keyset.end releases what the agent sent early (see #sendEncoded).
      const sent = await this.#keyset.sendFirst(this.#ctx, this.#hub, agent, () => this.state === 'ready')
      if (sent === 'revoked') this.#refuse(cpError('CP_ERR_AGENT_REVOKED', `agent ${agent.id}`))
      // Its tunnel listener is up by now (an agent binds it before it connects): its peers may dial it.
      else if (sent === 'sent') this.#ctx.bus.publish({ kind: 'agent-connected', agentId: agent.id, service: agent.service })
    } catch (err) {
      this.#fail(err)
    }
  }

  #onMessage(m: Message): void {
    const e = this.#conversation.receive(m)
    if (e.kind === 'violation') return this.#refuse(this.#violation(e.error))
    if (e.kind === 'deliver') this.#handle(e.message)
  }

  // Only messages the conversation delivered: the first key set is out.
  #handle(m: AgentMessage): void {
    switch (m.type) {
      case 'usage.batch':
        this.#usage = this.#usage.then(() => this.#onUsage(m))
        return
      case 'kms.request':
        return this.#kms?.request(m)
      case 'kms.batch':
        return this.#kms?.batch(m)
      case 'keyset.request':
        return this.#onKeySetRequest(m.pairId)
      case 'error':
        this.#ctx.logger.info({ agentId: this.agentId, code: m.code }, 'agent reported an error')
        return
    }
  }

  /** The agent's set looks behind for `pairId`: recompute its service's set; the hub pushes what differs. */
  #onKeySetRequest(pairId: string): void {
    const now = this.#ctx.clock.now()
    this.#keysetRequests ??= new TokenBucket(KEYSET_REQUESTS_PER_SECOND, KEYSET_REQUEST_BURST, now)
    if (!this.#keysetRequests.take(now)) {
      this.#ctx.logger.info({ agentId: this.agentId, pairId }, 'key set request dropped: too many')
      return
    }
    this.#ctx.logger.info({ agentId: this.agentId, pairId }, 'agent asked for its key set')
    this.#hub.refresh(this.service)
  }

  /** The conversation's own violations are CP_ERR_AGENT_MESSAGE; a hello that does not decode keeps its PROTO_ERR_* code. */
  #violation(error: KeymeshError): KeymeshError {
    if (!CONVERSATION_CODES.has(error.code)) return error
    return cpError('CP_ERR_AGENT_MESSAGE', `${error.code}: ${error.detail ?? error.message}`, { cause: error })
  }

  async #onUsage(batch: UsageBatchMessage): Promise<void> {
    const agent = this.#agent
    if (!agent || this.state !== 'ready') return
    try {
      await recordUsageBatch(this.#ctx, agent, batch)
    } catch (err) {
      // Not acked: the agent keeps the batch and sends it again.
      this.#ctx.logger.warn({ err: { code: (err as KeymeshError).code }, agentId: agent.id, seq: batch.seq }, 'usage batch not recorded')
      return
    }
    if (this.state !== 'ready') return
    try {
      this.#send({ type: 'usage.ack', seq: batch.seq })
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
    if (this.#closed) return
    this.#handshakeFailed(error.code)
    if (this.#channel.state === 'open') {
      try {
        this.#send({ type: 'error', code: error.code, message: error.message.slice(0, 512) })
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
    if (agent === undefined && this.auditAnonymous !== undefined) return this.auditAnonymous(error)
    const actor: Actor = agent ? { kind: 'agent', id: agent.id, service: agent.service } : { kind: 'anonymous', remote: this.#remote }
    const action = agent ? 'agent.session' : 'agent.handshake'
    await auditFailure(this.#ctx, actor, action, agent ? `agent:${agent.id}` : `remote:${this.#remote ?? 'unknown'}`, error)
  }

  /** Reports a failure that came before admission (once); later failures are not handshake failures. */
  #handshakeFailed(code: string): void {
    if (this.#agent !== undefined || this.#closed) return
    const report = this.onHandshakeFailed
    this.onHandshakeFailed = undefined
    report?.(code)
  }

  /** Sends `m` where the conversation allows it (else throws its PROTO_ERR_*), then handles what that released. */
  #send(m: Message): void {
    const due = this.#conversation.send(m)
    this.#channel.send(m)
    for (const held of due) this.#handle(held)
  }

  #sendEncoded(head: MessageHead, encoded: Uint8Array, wipe: boolean): void {
    let due: AgentMessage[]
    try {
      due = this.#conversation.send(head)
    } catch (err) {
      if (wipe) encoded.fill(0)
      throw err
    }
    this.#channel.sendEncoded(encoded, wipe)
    for (const held of due) this.#handle(held)
  }

  #write(bytes: Uint8Array): void {
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
    if (this.#closed) return
    this.#closed = true
    this.#settle()
    this.#liveness.stop()
    this.#conversation.end()
    this.#hub.unregister(this)
    this.onClosed?.()
  }
}
