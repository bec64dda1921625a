// The control plane's end of the control conversation (the table is in
// control-conversation.ts). Pure: the handshake's payloads, each decoded message
// from the agent and each message about to be sent go in; the hello, what to
// handle now and the violations come out. control-plane/src/agent-endpoint/session.ts
// owns the socket, admission, the store and the audit.
//
// Contract:
//   - offer() is XK message 2's payload: the features this end speaks
//     (control-features.ts). opened() reads hello from XK message 3's payload
//     (message 1's must be empty) and wipes the payloads (hello may hold a join
//     token); the features agreed are those of the offer that hello names too. A
//     missing or wrong message is PROTO_ERR_MESSAGE_ORDER; a hello that does not
//     decode keeps the decoder's PROTO_ERR_MESSAGE_* or PROTO_ERR_VERSION.
//   - receive(): the agent's messages (usage.batch, kms.request, kms.batch,
//     keyset.request where agreed, error) are delivered once the first key set is out; earlier ones are held, at most
//     maxBacklog (default 16, PROTO_ERR_MESSAGE_BACKLOG), and released in order by
//     the send() of keyset.end. Any other type is a violation (hello in a record:
//     PROTO_ERR_MESSAGE_ORDER; a control-plane type: PROTO_ERR_MESSAGE_DIRECTION).
//     After a violation or end(), messages are dropped with their secrets wiped.
//   - send() checks a message against the table before it goes out and throws the
//     PROTO_ERR_* when it is out of order (or needs a feature not agreed): that is the
//     control plane's own bug, never the agent's. `error` (the refusal) may follow a violation, and ends the conversation.
import { isKeymeshError, protoError, type KeymeshError } from './errors.js'
import { decodeMessage, type HelloMessage, type Message } from './messages/index.js'
import { advanceConversation, checkAgreed, ended, hadKeySet, isAgentMessage, isAgreed, wipeMessage, type AgentMessage, type ConversationPhase, type MessageHead } from './control-conversation.js'
import { CONTROL_FEATURES, agreeFeatures, encodeFeatureOffer, type ControlFeature } from './control-features.js'

export type CpEffect =
  /** Held until the first key set is out, or dropped after the end. */
  | { readonly kind: 'none' }
  /** Handle it now (in the order delivered). */
  | { readonly kind: 'deliver'; readonly message: AgentMessage }
  /** The agent broke the conversation: refuse it. */
  | { readonly kind: 'violation'; readonly error: KeymeshError }

export type HelloResult =
  | { readonly kind: 'hello'; readonly hello: HelloMessage }
  | { readonly kind: 'violation'; readonly error: KeymeshError }

export interface CpConversationOptions {
  /** Agent messages held before the first key set is out; default 16. */
  readonly maxBacklog?: number
  /** What this end offers in XK message 2; default every feature it knows (CONTROL_FEATURES). */
  readonly features?: readonly ControlFeature[]
}

export const DEFAULT_MAX_BACKLOG = 16

const NONE: CpEffect = Object.freeze({ kind: 'none' })

export class CpConversation {
  readonly #maxBacklog: number
  readonly #offered: readonly ControlFeature[]
  #agreed: ReadonlySet<ControlFeature> = new Set()
  #phase: ConversationPhase = { name: 'handshake' }
  #backlog: AgentMessage[] = []

  constructor(o: CpConversationOptions = {}) {
    const max = o.maxBacklog ?? DEFAULT_MAX_BACKLOG
    if (!Number.isSafeInteger(max) || max < 0) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'maxBacklog must be a non-negative integer')
    this.#maxBacklog = max
    this.#offered = o.features ?? CONTROL_FEATURES
  }

  /** XK message 2's payload: the `features` message of what this end offers. */
  offer(): Uint8Array {
    return encodeFeatureOffer(this.#offered)
  }

  /** The feature was offered and the agent's hello named it. */
  speaks(feature: ControlFeature): boolean {
    return this.#agreed.has(feature)
  }

  get phase(): ConversationPhase {
    return this.#phase
  }

  /** The first key set was sent, whether or not the conversation has ended since. */
  get hadKeySet(): boolean {
    return hadKeySet(this.#phase)
  }

  /** The handshake is complete: `payloads` are those of the messages this side read (XK: 1 and 3). */
  opened(payloads: readonly Uint8Array[]): HelloResult {
    try {
      if (this.#phase.name !== 'handshake') throw protoError('PROTO_ERR_MESSAGE_ORDER', 'the handshake is over already')
      const [first, hello] = payloads
      if (payloads.length !== 2 || first === undefined || first.length !== 0 || hello === undefined) {
        throw protoError('PROTO_ERR_MESSAGE_ORDER', 'message 3 must carry hello and nothing may precede it')
      }
      const m = decodeMessage(hello)
      if (m.type !== 'hello') {
        wipeMessage(m)
        throw protoError('PROTO_ERR_MESSAGE_ORDER', `expected hello, got ${m.type}`)
      }
      this.#phase = { name: 'admitting' }
      this.#agreed = new Set(agreeFeatures(this.#offered, m.features ?? []))
      return { kind: 'hello', hello: m }
    } catch (err) {
      this.end()
      return { kind: 'violation', error: isKeymeshError(err) ? err : protoError('PROTO_ERR_MESSAGE_MALFORMED') }
    } finally {
      for (const p of payloads) p.fill(0)
    }
  }

  receive(m: Message): CpEffect {
    const phase = this.#phase.name
    if (phase === 'ended') {
      wipeMessage(m)
      return NONE
    }
    let error: KeymeshError | undefined
    if (phase === 'handshake') error = protoError('PROTO_ERR_MESSAGE_ORDER', `${m.type} before the handshake is over`)
    else if (m.type === 'hello') error = protoError('PROTO_ERR_MESSAGE_ORDER', 'hello goes in XK message 3 only')
    else if (!isAgentMessage(m)) error = protoError('PROTO_ERR_MESSAGE_DIRECTION', `${m.type} is not sent by an agent`)
    else if (!isAgreed(m.type, this.#agreed)) error = protoError('PROTO_ERR_MESSAGE_ORDER', `${m.type} without its feature agreed`)
    else if (phase === 'synced') return { kind: 'deliver', message: m }
    else if (this.#backlog.length >= this.#maxBacklog) error = protoError('PROTO_ERR_MESSAGE_BACKLOG', `more than ${this.#maxBacklog}`)
    else {
      this.#backlog.push(m)
      return NONE
    }
    wipeMessage(m)
    this.end()
    return { kind: 'violation', error }
  }

  /**
   * Records that `m` is about to be sent: throws PROTO_ERR_MESSAGE_ORDER (or _DIRECTION,
   * PROTO_ERR_KEYSET) when the table does not allow it now. Returns the agent's held
   * messages that are due now (once keyset.end goes out), in the order they came.
   */
  send(m: MessageHead): AgentMessage[] {
    checkAgreed(m.type, this.#agreed)
    this.#phase = advanceConversation(this.#phase, m)
    if (this.#phase.name === 'ended') this.end()
    if (this.#phase.name !== 'synced') return []
    return this.#backlog.splice(0)
  }

  /** The session is over: nothing more is delivered, held messages are wiped. Idempotent. */
  end(): void {
    this.#phase = ended(this.#phase)
    for (const m of this.#backlog) wipeMessage(m)
    this.#backlog = []
  }
}
