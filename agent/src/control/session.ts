// One control session: a WebSocket to the control plane's agent endpoint, Noise XK
// as initiator through protocol/src/channel.ts (the control plane's feature offer in
// message 2's payload, hello in message 3's), the conversation that follows it
// (welcome, the first key set, then pushes, peer.up, usage acks and KMS answers)
// kept by protocol's AgentConversation. Reconnecting is the client's business (client.ts).
//
//   connecting ──ws open──▶ handshake ──msg 3 + hello──▶ open ──welcome──▶ welcomed ──keyset.end──▶ synced
//        └──────── failure, timeout, refusal, close: ended (once) ─────────────────────────────┘
//
// Contract:
//   - handler.ended is called exactly once, at the first of: the socket closing, a
//     local failure, the peer's CLOSE record, close(); nothing else is called after it.
//   - The first key set is handed over whole (handler.keyset) or not at all; a
//     half-received set is wiped.
//   - The order of the conversation is checked by AgentConversation
//     (protocol/src/control-conversation-agent.ts); this session carries out its
//     effects. A message out of order (a push before the first set, a second
//     welcome, a type the control plane never sends) fails the session with
//     AGENT_ERR_CP_PROTOCOL, a welcome for another service with
//     AGENT_ERR_SERVICE_MISMATCH; the PROTO_ERR_* is the cause and leads the detail.
//   - Connecting, the handshake, admission and the first key set must all finish
//     within handshakeTimeoutMs (measured on the injected clock).
//   - Liveness (platform/src/liveness.ts), from the first connection attempt on:
//     when nothing (a frame, a pong, a ping) has arrived for pingMs the session
//     pings; when nothing has arrived for deadMs the control plane is taken for
//     dead: the socket is terminated (no close handshake with a peer that is not
//     listening) and the session ends with AGENT_ERR_CP_UNREACHABLE, `unresponsive`.
//     This catches a replica whose host vanished or whose process is frozen, which
//     sends no TCP reset, both while connected and while connecting (a stopped
//     process's kernel still accepts the connection and never answers the upgrade).
//   - A refusal counts as the control plane's (`authenticated`) only when it came
//     inside the Noise session: an `error` message or a CLOSE record's reason. The
//     WebSocket close frame is not authenticated: its reason is reported, not trusted.
//   - hello is built once message 2 is read: with `features` (what this agent speaks)
//     only when the control plane offered some (protocol/src/control-features.ts;
//     an older control plane offers none and would refuse the field). The hello
//     bytes (they may carry the join token) are wiped once message 3 is written.
//     Nothing from a message body is logged.
//   - requestKeySet() sends keyset.request where that feature was agreed (else false).
//   - KMS requests go out only once the first key set is in (sendKms); their
//     answers (kms.response, kms.batch.response; before that a violation) go to
//     the handler, which matches them to requests (kms/multiplexer.ts).
import type { createConnection } from 'node:net'
import { WebSocket } from 'ws'
import type { Logger } from 'pino'

import { AgentConversation, CONTROL_FEATURES, NoiseChannel, agreeFeatures, readFeatureOffer, type ControlFeature } from '../../../protocol/src/index.js'
import type { CryptoSuite, KeyPair } from '../../../protocol/src/index.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import type { KmsBatchMessage, KmsBatchResponseMessage, KmsRequestMessage, KmsResponseMessage, Message, PairEntry, PairPeer, UsageBatch, WelcomeMessage } from '../../../protocol/src/index.js'
import { encodeKmsBatchFrame, encodeKmsRequestMessage } from '../../../protocol/src/index.js'
import { createXkInitiator } from '../../../protocol/src/index.js'
import { MAX_RECORD_BYTES } from '../../../protocol/src/index.js'
import { Liveness, TlsRefusal, tlsConnector, type TlsTrust } from '../../../platform/src/index.js'
import type { CancelTimer, TimerClock } from '../clock.js'
import { agentError } from '../errors.js'

/** An error code from one of the three tables, as a close reason or error message carries it. */
const ERROR_CODE_RE = /^(?:PROTO|CP|AGENT)_ERR_[A-Z0-9_]{1,50}$/

/** Usage batches are refused (kept spooled) while this much is still queued on the socket. */
const MAX_BUFFERED_BYTES = 1024 * 1024

export interface SessionEnd {
  /** Why: the control plane's refusal code, a PROTO_ERR_* or AGENT_ERR_* of our own, or AGENT_ERR_CP_UNREACHABLE. */
  readonly code: string
  /** Operator-facing text: the control plane's error message, or what failed locally. */
  readonly message: string | undefined
  /** The code came inside the Noise session, from the control plane itself. */
  readonly authenticated: boolean
  /** The first key set had arrived. */
  readonly synced: boolean
  /** The control plane stopped answering (nothing arrived for deadMs): try another one. */
  readonly unresponsive: boolean
}

export interface SessionHandler {
  welcome(w: WelcomeMessage): void
  /** The first full key set; ownership of the entries passes to the handler. */
  keyset(pairs: PairEntry[]): void
  update(pair: PairEntry): void
  remove(pairId: string): void
  /** An agent of a peer service connected to the control plane ('peer.up' feature). */
  peerUp(pairId: string, agentId: string): void
  /** Only the peers of a pair changed ('pair.peers' feature). */
  peers(pairId: string, add: readonly PairPeer[], remove: readonly string[]): void
  usageAck(seq: number): void
  /** An answer to a KMS request (only after the first key set). */
  kmsResponse(m: KmsResponseMessage): void
  /** A part of the answers to a kms.batch (only after the first key set). */
  kmsBatchResponse(m: KmsBatchResponseMessage): void
  /** The control plane sent an `error` message (it usually closes right after). */
  error(code: string, message: string): void
  ended(end: SessionEnd): void
}

export interface ControlSessionOptions {
  /** The full ws:// or wss:// URL of the agent endpoint. */
  readonly url: string
  /** How a wss:// endpoint's certificate is checked (platform's connectTls); the default trust store when absent. */
  readonly trust?: TlsTrust
  readonly cpKey: Uint8Array
  readonly staticKey: KeyPair
  readonly service: string
  /**
   * The encoded hello, with `features` when given (the control plane offered some);
   * the session wipes the bytes once sent.
   */
  readonly hello: (features: readonly ControlFeature[] | undefined) => Uint8Array
  /** The features this agent speaks (default: every one it knows, CONTROL_FEATURES). */
  readonly features?: readonly ControlFeature[]
  readonly suite: CryptoSuite
  readonly clock: TimerClock
  readonly logger: Logger
  readonly handshakeTimeoutMs: number
  /** Ping the control plane when nothing arrived from it for this long. */
  readonly pingMs: number
  /** Take it for dead when nothing arrived from it for this long (> pingMs). */
  readonly deadMs: number
  readonly handler: SessionHandler
}

export class ControlSession {
  readonly #o: ControlSessionOptions
  readonly #ws: WebSocket
  readonly #channel: NoiseChannel
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>
  readonly #liveness: Liveness
  readonly #conversation: AgentConversation
  #timer: CancelTimer | undefined
  #ended = false
  #refusal: { code: string; message: string } | undefined
  #peerClose: { code: number; reason: string } | undefined
  #localError: KeymeshError | undefined
  #netError: string | undefined
  #unresponsive = false
  /** hello as sent (wiped at the end); empty until message 3 is written. */
  #hello: Uint8Array = new Uint8Array(0)
  /** The features agreed with the control plane (none before message 2, or from one that offers none). */
  #agreed: ControlFeature[] = []

  constructor(o: ControlSessionOptions) {
    this.#o = o
    this.#conversation = new AgentConversation({ service: o.service })
    // Over TLS the socket is handed to ws only once the certificate has passed (connectTls).
    const tls = o.url.startsWith('wss:') ? { createConnection: tlsConnector(o.trust ?? {}) as unknown as typeof createConnection } : {}
    this.#ws = new WebSocket(o.url, { perMessageDeflate: false, maxPayload: MAX_RECORD_BYTES, ...tls })
    this.#ws.binaryType = 'nodebuffer'
    this.#channel = new NoiseChannel({
      handshake: createXkInitiator({ suite: o.suite, staticKey: o.staticKey, controlPlaneKey: o.cpKey }),
      transport: {
        send: (bytes) => {
          if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(bytes, { binary: true })
        },
        close: (code, reason) => this.#closeSocket(code, reason),
      },
      handler: {
        // Message 3, which carried hello, is written by now.
        onHandshake: () => {
          this.#hello.fill(0)
          this.#conversation.opened(this.#agreed)
        },
        onMessage: (m) => this.#onMessage(m),
        onPeerClose: (code, reason) => {
          this.#peerClose = { code, reason }
          this.#end()
        },
        onError: (err) => {
          this.#localError ??= err
          this.#end()
        },
      },
      payload: (index, read) => (index === 2 ? this.#helloAfter(read[0]) : new Uint8Array(0)),
      kmsFrames: () => this.#conversation.speaks('kms.frame'),
    })
    this.closed = new Promise((resolve) => {
      this.#ws.on('close', (code, reason) => {
        this.#onSocketClose(code, reason.toString())
        resolve()
      })
    })
    this.#ws.on('error', (err) => {
      // A certificate that was not accepted is its own cause: retrying will not change it.
      if (err instanceof TlsRefusal) this.#localError ??= agentError('AGENT_ERR_TLS', err.message, { cause: err })
      // ECONNREFUSED, an unexpected HTTP response, a frame over maxPayload: ws closes the socket itself.
      this.#netError ??= (err as NodeJS.ErrnoException).code ?? err.message.slice(0, 120)
    })
    this.#liveness = new Liveness({
      clock: o.clock,
      pingMs: o.pingMs,
      deadMs: o.deadMs,
      ping: () => {
        if (this.#ws.readyState !== WebSocket.OPEN) return false
        this.#ws.ping()
        return true
      },
      dead: (silentMs) => this.#onSilent(silentMs),
    })
    const seen = (): void => this.#liveness.seen()
    this.#ws.on('open', () => {
      seen()
      this.#guard(() => this.#channel.start())
    })
    this.#ws.on('message', (data, isBinary) => {
      seen()
      this.#onFrame(data as Buffer, isBinary)
    })
    this.#ws.on('pong', seen)
    this.#ws.on('ping', seen)
    this.#timer = o.clock.setTimer(o.handshakeTimeoutMs, () => {
      this.#timer = undefined
      this.fail(agentError('AGENT_ERR_CP_UNREACHABLE', `no key set within ${o.handshakeTimeoutMs} ms of connecting`))
    })
  }

  /** The first key set is in. */
  get synced(): boolean {
    return this.#conversation.synced
  }

  /** Message 2 is read: hello answers its offer (features only when one came; see the header). */
  #helloAfter(offerPayload: Uint8Array | undefined): Uint8Array {
    const offered = readFeatureOffer(offerPayload)
    const mine = this.#o.features ?? CONTROL_FEATURES
    this.#agreed = offered === undefined ? [] : agreeFeatures(mine, offered)
    this.#hello = this.#o.hello(offered === undefined ? undefined : mine)
    return this.#hello
  }

  /** Asks the control plane to push what changed of this agent's key set; false where keyset.request was not agreed or the session cannot carry it now. */
  requestKeySet(pairId: string): boolean {
    if (this.#ended || !this.#conversation.mayCarry('keyset.request') || this.#ws.readyState !== WebSocket.OPEN) return false
    try {
      this.#channel.send({ type: 'keyset.request', pairId })
      return true
    } catch (err) {
      this.#o.logger.warn({ code: isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL' }, 'key set request not sent')
      return false
    }
  }

  /** Sends a usage batch; false when the session cannot take it now. */
  sendUsage(batch: UsageBatch): boolean {
    if (this.#ended || !this.#conversation.mayCarry('usage.batch') || this.#ws.readyState !== WebSocket.OPEN || this.#ws.bufferedAmount > MAX_BUFFERED_BYTES) return false
    try {
      this.#channel.send({ type: 'usage.batch', seq: batch.seq, events: batch.events, ...(batch.loss ? { loss: batch.loss } : {}) })
      return true
    } catch (err) {
      this.#o.logger.warn({ code: isKeymeshError(err) ? err.code : 'AGENT_ERR_INTERNAL' }, 'usage batch not sent')
      return false
    }
  }

  /**
   * Sends a KMS request. Throws AGENT_ERR_CP_UNREACHABLE when the session cannot
   * carry it (not synced, ended, socket not open), or the encoder's PROTO_ERR_MESSAGE_*
   * for a request that does not fit a message; neither fails the session.
   */
  sendKms(req: KmsRequestMessage | KmsBatchMessage): void {
    if (this.#ended || !this.#conversation.mayCarry(req.type) || this.#ws.readyState !== WebSocket.OPEN) throw agentError('AGENT_ERR_CP_UNREACHABLE', 'the control session is not open')
    // A kms.batch goes as a binary frame where both ends agreed to it; the frame
    // leaves the unusual ones (a context, the datakey and drop fields) to JSON.
    const frame = req.type === 'kms.batch' && this.#conversation.speaks('kms.frame') ? encodeKmsBatchFrame(req) : undefined
    this.#channel.sendEncoded(frame ?? encodeKmsRequestMessage(req), true)
  }

  /** Ends the session with an authenticated CLOSE (when open); resolves once the socket is closed. */
  close(): Promise<void> {
    this.#localError ??= agentError('AGENT_ERR_CLOSED')
    const wasOpen = this.#channel.state === 'open' && this.#ws.readyState === WebSocket.OPEN
    // An authenticated CLOSE when the session is open; otherwise the handshake is wiped.
    this.#channel.close(1000, 'agent shutting down')
    if (!wasOpen) {
      // Connecting, failed or already closing: nothing more to say, so no waiting either.
      this.#ws.terminate()
    } else {
      // A control plane that never answers the close frame does not hold shutdown up.
      const cancel = this.#o.clock.setTimer(this.#o.handshakeTimeoutMs, () => this.#ws.terminate())
      void this.closed.then(cancel)
    }
    this.#end()
    return this.closed
  }

  /** Fails the session with `error` (closing the socket with its code). */
  fail(error: KeymeshError): void {
    if (this.#ended) return
    this.#localError ??= error
    this.#channel.fail(error)
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#closeSocket(error.closeCode, error.code)
    this.#end()
  }

  // Liveness is stopped when the session ends, so this runs on a live session only.
  #onSilent(silentMs: number): void {
    this.#unresponsive = true
    // Terminated, not closed: a close frame would wait for an answer that will not come.
    this.#ws.terminate()
    this.fail(agentError('AGENT_ERR_CP_UNREACHABLE', `nothing from the control plane for ${silentMs} ms`))
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    if (this.#ended) return
    if (!isBinary) return this.fail(agentError('AGENT_ERR_CP_PROTOCOL', 'text frame'))
    this.#guard(() => this.#channel.receive(new Uint8Array(data.buffer, data.byteOffset, data.length)))
  }

  // The order rules live in protocol/src/control-conversation.ts; this carries out their effects.
  #onMessage(m: Message): void {
    if (this.#ended) return
    const e = this.#conversation.receive(m)
    switch (e.kind) {
      case 'none':
        return
      case 'refused':
        // The control plane closes right after; the code decides what the client does next.
        this.#refusal = { code: e.code, message: e.message }
        return this.#o.handler.error(e.code, e.message)
      case 'welcome':
        return this.#o.handler.welcome(e.welcome)
      case 'keyset':
        this.#timer?.()
        this.#timer = undefined
        return this.#o.handler.keyset(e.pairs)
      case 'update':
        return this.#o.handler.update(e.pair)
      case 'remove':
        return this.#o.handler.remove(e.pairId)
      case 'peer-up':
        return this.#o.handler.peerUp(e.pairId, e.agentId)
      case 'peers':
        return this.#o.handler.peers(e.pairId, e.add, e.remove)
      case 'usage-ack':
        return this.#o.handler.usageAck(e.seq)
      case 'kms-response':
        return this.#o.handler.kmsResponse(e.message)
      case 'kms-batch-response':
        return this.#o.handler.kmsBatchResponse(e.message)
      case 'violation': {
        const code = e.error.code === 'PROTO_ERR_WELCOME_SERVICE' ? 'AGENT_ERR_SERVICE_MISMATCH' : 'AGENT_ERR_CP_PROTOCOL'
        return this.fail(agentError(code, `${e.error.code}: ${e.error.detail ?? e.error.message}`, { cause: e.error }))
      }
    }
  }

  // Runs a channel call; a handler that throws fails the session instead of escaping
  // into ws's event loop (the client then reconnects).
  #guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      if (this.#ended) return
      if (isKeymeshError(err)) return this.fail(err)
      this.#o.logger.error({ err: { message: err instanceof Error ? err.message : String(err) } }, 'control session handler failed')
      this.fail(agentError('AGENT_ERR_INTERNAL', 'control session handler failed'))
    }
  }

  #closeSocket(code: number, reason: string): void {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.close(code, reason)
    else if (this.#ws.readyState === WebSocket.CONNECTING) this.#ws.terminate()
  }

  #onSocketClose(code: number, reason: string): void {
    if (!this.#ended && ERROR_CODE_RE.test(reason)) this.#netError = reason
    else if (!this.#ended && this.#netError === undefined && code !== 1000 && code !== 1001) this.#netError = `close ${code}`
    this.#end()
  }

  #end(): void {
    if (this.#ended) return
    this.#ended = true
    this.#timer?.()
    this.#timer = undefined
    this.#liveness.stop()
    this.#hello.fill(0)
    this.#conversation.end()
    const end = this.#summary()
    try {
      this.#o.handler.ended(end)
    } catch (err) {
      this.#o.logger.error({ err: { message: err instanceof Error ? err.message : String(err) } }, 'control session end handler failed')
    }
  }

  #summary(): SessionEnd {
    const base = { synced: this.#conversation.hadKeySet, unresponsive: this.#unresponsive }
    if (this.#refusal !== undefined) return { code: this.#refusal.code, message: this.#refusal.message, authenticated: true, ...base }
    const peer = this.#peerClose
    if (peer !== undefined && ERROR_CODE_RE.test(peer.reason)) return { code: peer.reason, message: undefined, authenticated: true, ...base }
    const local = this.#localError
    if (local !== undefined) return { code: local.code, message: local.message, authenticated: false, ...base }
    const net = this.#netError
    if (net !== undefined && ERROR_CODE_RE.test(net)) return { code: net, message: undefined, authenticated: false, ...base }
    const message = peer !== undefined ? `the control plane closed the session (${peer.code})` : net
    return { code: 'AGENT_ERR_CP_UNREACHABLE', message, authenticated: false, ...base }
  }
}
