// A minimal agent for tests and benchmarks: connects to ws://host:port/v1/agent,
// runs Noise XK as initiator through protocol/src/channel.ts with a given static
// key and the pinned control-plane key, sends hello in message 3, and collects
// what the control plane sends (welcome, key set, pushes, acks, errors).
import { WebSocket } from 'ws'

import { NoiseChannel } from '../../protocol/src/index.js'
import { nodeSuite } from '../../protocol/src/index.js'
import type { CryptoSuite, KeyPair } from '../../protocol/src/index.js'
import type { KeymeshError } from '../../protocol/src/index.js'
import {
  encodeMessage,
  type KmsBatchItem,
  type KmsItemReply,
  type KmsRequestMessage,
  type Message,
  type MessageOf,
  type MessageType,
  type UsageEvent,
} from '../../protocol/src/index.js'
import { PROTOCOL_VERSION } from '../../protocol/src/index.js'
import { parsePublicKey } from '../../protocol/src/index.js'
import { createXkInitiator } from '../../protocol/src/index.js'
import { agreeFeatures, encodeKmsBatchFrame, readFeatureOffer, type ControlFeature } from '../../protocol/src/index.js'

export interface FakeAgentOptions {
  /** The control plane's base URL (`http://host:port`); the agent path is appended. */
  readonly url: string
  /** The pinned control-plane key: identity.pub text or raw bytes. */
  readonly cpKey: string | Uint8Array
  readonly service: string
  readonly staticKey?: KeyPair
  readonly joinToken?: string
  readonly endpoint?: string
  readonly suite?: CryptoSuite
  /** Path override, to test refusals of other paths. */
  readonly path?: string
  /** Called when the handshake completes, before welcome (to send early messages). */
  readonly onOpen?: (agent: FakeAgent) => void
  /**
   * The features named in hello when the control plane offers some (control-features.ts);
   * default none, as an agent from before features. With 'kms.frame' agreed, batches
   * travel as binary KMS frames both ways; with 'pair.peers', a peer change comes alone.
   */
  readonly features?: readonly string[]
}

export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

type Waiter = { type: MessageType; pred: (m: Message) => boolean; resolve: (m: Message) => void; reject: (e: Error) => void }

export class FakeAgent {
  readonly staticKey: KeyPair
  readonly ws: WebSocket
  readonly channel: NoiseChannel
  /** Every message received, in order. */
  readonly messages: Message[] = []
  /** Received and not yet taken by next(). */
  readonly #inbox: Message[] = []
  /** Resolves when the WebSocket closes, with its code and reason. */
  readonly closed: Promise<CloseInfo>
  channelError: KeymeshError | undefined
  /** Set when welcome arrives. */
  agentId: string | undefined
  /** Bytes of the WebSocket messages received (records, encrypted), for benches. */
  bytesIn = 0
  #waiters: Waiter[] = []
  #closeInfo: CloseInfo | undefined
  #kmsId = 0
  #agreed: ControlFeature[] = []
  /** kms.batch messages sent as binary KMS frames. */
  framesSent = 0

  constructor(o: FakeAgentOptions) {
    const suite = o.suite ?? nodeSuite
    this.staticKey = o.staticKey ?? suite.x25519Generate()
    const cpKey = typeof o.cpKey === 'string' ? parsePublicKey(o.cpKey) : o.cpKey
    this.ws = new WebSocket(o.url.replace(/^http/, 'ws') + (o.path ?? '/v1/agent'), { perMessageDeflate: false })
    this.ws.binaryType = 'nodebuffer'
    const hello = (offer: Uint8Array | undefined): Uint8Array => {
      const offered = o.features === undefined ? undefined : readFeatureOffer(offer)
      this.#agreed = offered === undefined ? [] : agreeFeatures(o.features ?? [], offered)
      return encodeMessage({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        service: o.service,
        agentVersion: '0.0.0-test',
        ...(o.joinToken !== undefined ? { joinToken: o.joinToken } : {}),
        ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
        ...(offered !== undefined ? { features: [...(o.features ?? [])] } : {}),
      })
    }
    this.channel = new NoiseChannel({
      handshake: createXkInitiator({ suite, staticKey: this.staticKey, controlPlaneKey: cpKey }),
      transport: {
        send: (bytes) => this.ws.send(bytes, { binary: true }),
        close: (code, reason) => {
          if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(code >= 4000 || code === 1000 ? code : 1000, reason)
        },
      },
      handler: {
        onHandshake: () => o.onOpen?.(this),
        onMessage: (m) => this.#deliver(m),
        onError: (err) => {
          this.channelError = err
        },
      },
      payload: (index, read) => (index === 2 ? hello(read[0]) : new Uint8Array(0)),
      kmsFrames: () => this.#agreed.includes('kms.frame'),
    })
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.#closeInfo = { code, reason: reason.toString() }
        for (const w of this.#waiters.splice(0)) w.reject(new Error(`closed ${code} ${reason.toString()} while waiting for ${w.type}`))
        resolve(this.#closeInfo)
      })
    })
    this.ws.on('error', () => {})
    this.ws.on('open', () => this.channel.start())
    this.ws.on('message', (data, isBinary) => {
      if (!isBinary || this.channel.state === 'closed' || this.channel.state === 'failed') return
      const buf = data as Buffer
      this.bytesIn += buf.length
      try {
        this.channel.receive(new Uint8Array(buf.buffer, buf.byteOffset, buf.length))
      } catch {
        // The channel has recorded and closed.
      }
    })
  }

  /** Resolves when the socket is open (before the handshake). */
  opened(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve())
      this.ws.once('close', (code) => reject(new Error(`closed ${code} before open`)))
    })
  }

  /** The next message of `type` not yet taken (optionally matching `pred`). */
  next<T extends MessageType>(type: T, pred: (m: MessageOf<T>) => boolean = () => true): Promise<MessageOf<T>> {
    // Typed loosely inside: TypeScript cannot instantiate Promise<MessageOf<T>> for a generic T.
    return this.#take(type, pred as unknown as (m: Message) => boolean) as Promise<any>
  }

  #take(type: MessageType, p: (m: Message) => boolean): Promise<Message> {
    const i = this.#inbox.findIndex((m) => m.type === type && p(m))
    if (i >= 0) return Promise.resolve(this.#inbox.splice(i, 1)[0] as Message)
    if (this.#closeInfo) return Promise.reject(new Error(`closed ${this.#closeInfo.code} while waiting for ${type}`))
    return new Promise((resolve, reject) => this.#waiters.push({ type, pred: p, resolve, reject }))
  }

  welcome(): Promise<MessageOf<'welcome'>> {
    return this.next('welcome')
  }

  /** The whole first key set: begin, its pairs, end. */
  async keyset(): Promise<{ generation: number; pairs: MessageOf<'keyset.pair'>['pair'][] }> {
    const begin = await this.next('keyset.begin')
    const pairs: MessageOf<'keyset.pair'>['pair'][] = []
    for (let i = 0; i < begin.pairCount; i++) pairs.push((await this.next('keyset.pair')).pair)
    const end = await this.next('keyset.end')
    if (end.generation !== begin.generation) throw new Error('keyset generation mismatch')
    return { generation: begin.generation, pairs }
  }

  sendUsage(seq: number, events: UsageEvent[]): void {
    this.channel.send({ type: 'usage.batch', seq, events })
  }

  /**
   * Sends a kms.request and resolves with the kms.response carrying its id (other
   * responses stay queued for their own callers). Without an id, a fresh one is
   * used; a given id must be unique among the requests in flight.
   */
  request(req: Omit<KmsRequestMessage, 'type' | 'id'> & { id?: number }): Promise<MessageOf<'kms.response'>> {
    const id = req.id ?? this.nextKmsId()
    const answer = this.next('kms.response', (m) => m.id === id)
    this.channel.send({ type: 'kms.request', ...req, id })
    return answer
  }

  /**
   * Sends one kms.batch (items without an id get fresh ones) and resolves with
   * the replies of every kms.batch.response part up to the last, in order, and
   * the number of parts.
   */
  async requestBatch(
    items: readonly (Omit<KmsBatchItem, 'id'> & { id?: number })[],
    options: { id?: number } = {},
  ): Promise<{ id: number; items: KmsItemReply[]; parts: number }> {
    const id = options.id ?? this.nextKmsId()
    const withIds = items.map((item) => ({ ...item, id: item.id ?? this.nextKmsId() }))
    const first = this.next('kms.batch.response', (m) => m.id === id)
    const frame = this.#agreed.includes('kms.frame') ? encodeKmsBatchFrame({ type: 'kms.batch', id, items: withIds }) : undefined
    if (frame !== undefined) {
      this.framesSent++
      this.channel.sendEncoded(frame, true)
    } else this.channel.send({ type: 'kms.batch', id, items: withIds })
    const replies: KmsItemReply[] = []
    let parts = 0
    for (let part = await first; ; part = await this.next('kms.batch.response', (m) => m.id === id)) {
      parts++
      replies.push(...part.items)
      if (part.last) return { id, items: replies, parts }
    }
  }

  /** The features agreed in the handshake. */
  get agreed(): readonly ControlFeature[] {
    return this.#agreed
  }

  /** A request id not used before by this agent. */
  nextKmsId(): number {
    return ++this.#kmsId
  }

  /** Closes cleanly (authenticated CLOSE, then the socket) and waits for the close. */
  async close(): Promise<CloseInfo> {
    if (this.channel.state === 'open') this.channel.close(1000, 'bye')
    else if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000)
    return this.closed
  }

  #deliver(m: Message): void {
    this.messages.push(m)
    if (m.type === 'welcome') this.agentId = m.agentId
    const i = this.#waiters.findIndex((w) => w.type === m.type && w.pred(m))
    if (i >= 0) this.#waiters.splice(i, 1)[0]?.resolve(m)
    else this.#inbox.push(m)
  }
}
