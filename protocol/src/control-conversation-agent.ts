// The agent's end of the control conversation (the table is in
// control-conversation.ts): each decoded message from the control plane in, one
// effect out for agent/src/control/session.ts to carry out. Pure; the session owns
// the socket, the timers and the key set.
//
// Contract:
//   - The first key set is handed over whole (effect 'keyset', with the pairs'
//     ownership) or not at all: a half-received set is wiped by end() or a violation.
//   - The first message out of order, of a type agents never get, or a welcome for
//     another service is a 'violation' carrying the PROTO_ERR_* (the session then
//     fails); from then on, and after end() or a refusal, every message is dropped
//     ('none'). A dropped or refused message has its secrets wiped.
//   - 'refused' is the control plane's `error` message, which came inside the Noise
//     session: the control plane's own word. It ends the conversation.
//   - mayCarry() holds the agent's own rule: usage batches and KMS requests go out
//     only once the first key set is in; keyset.request only where its feature was
//     agreed (opened() takes the agreed features; control-features.ts). peer.up or
//     pair.peers where it was not agreed is a violation.
import { isKeymeshError, protoError, type KeymeshError } from './errors.js'
import type { KmsBatchResponseMessage, KmsResponseMessage, Message, PairEntry, PairPeer, WelcomeMessage } from './messages/index.js'
import { AGENT_MESSAGE_TYPES, advanceConversation, checkAgreed, ended, hadKeySet, isAgreed, wipeMessage, type AgentMessageType, type ConversationPhase } from './control-conversation.js'
import type { ControlFeature } from './control-features.js'

export type AgentEffect =
  /** Nothing to do: a pair taken into the key set under way, keyset.begin, or a message after the end. */
  | { readonly kind: 'none' }
  | { readonly kind: 'welcome'; readonly welcome: WelcomeMessage }
  /** The first key set, complete; the pairs are the owner's from here on. */
  | { readonly kind: 'keyset'; readonly pairs: PairEntry[] }
  | { readonly kind: 'update'; readonly pair: PairEntry }
  | { readonly kind: 'remove'; readonly pairId: string }
  /** An agent of a peer service connected to the control plane ('peer.up' feature). */
  | { readonly kind: 'peer-up'; readonly pairId: string; readonly agentId: string }
  /** Only the peers of a pair changed ('pair.peers' feature): apply to the pair held. */
  | { readonly kind: 'peers'; readonly pairId: string; readonly add: readonly PairPeer[]; readonly remove: readonly string[] }
  | { readonly kind: 'usage-ack'; readonly seq: number }
  | { readonly kind: 'kms-response'; readonly message: KmsResponseMessage }
  | { readonly kind: 'kms-batch-response'; readonly message: KmsBatchResponseMessage }
  /** The control plane refused this agent (it closes right after). */
  | { readonly kind: 'refused'; readonly code: string; readonly message: string }
  /** The control plane broke the conversation: fail the session. */
  | { readonly kind: 'violation'; readonly error: KeymeshError }

export interface AgentConversationOptions {
  /** The service the agent named in hello; welcome must name it too. */
  readonly service: string
}

const NONE: AgentEffect = Object.freeze({ kind: 'none' })

export class AgentConversation {
  readonly #service: string
  #phase: ConversationPhase = { name: 'handshake' }
  #agreed: ReadonlySet<ControlFeature> = new Set()
  /** The pairs of the key set under way (phase 'keyset'); secret, wiped unless handed over. */
  #pairs: PairEntry[] = []

  constructor(o: AgentConversationOptions) {
    this.#service = o.service
  }

  get phase(): ConversationPhase {
    return this.#phase
  }

  /** The first key set is in and the conversation goes on. */
  get synced(): boolean {
    return this.#phase.name === 'synced'
  }

  /** The first key set came in, whether or not the conversation has ended since. */
  get hadKeySet(): boolean {
    return hadKeySet(this.#phase)
  }

  /** XK message 3, which carried hello, is written: the control plane decides now. `agreed`: the features both ends speak. */
  opened(agreed: readonly ControlFeature[] = []): void {
    if (this.#phase.name !== 'handshake') return
    this.#phase = { name: 'admitting' }
    this.#agreed = new Set(agreed)
  }

  /** The features agreed in the handshake. */
  speaks(feature: ControlFeature): boolean {
    return this.#agreed.has(feature)
  }

  /** May the agent send a message of `type` now? Any of its types, once synced (it has nothing to say before), where agreed. */
  mayCarry(type: AgentMessageType): boolean {
    return this.#phase.name === 'synced' && AGENT_MESSAGE_TYPES.includes(type) && isAgreed(type, this.#agreed)
  }

  receive(m: Message): AgentEffect {
    if (this.#phase.name === 'ended') {
      wipeMessage(m)
      return NONE
    }
    let next: ConversationPhase
    try {
      next = advanceConversation(this.#phase, m)
      checkAgreed(m.type, this.#agreed)
      if (m.type === 'welcome' && m.service !== this.#service) throw protoError('PROTO_ERR_WELCOME_SERVICE', `welcome names service ${m.service}`)
    } catch (err) {
      wipeMessage(m)
      this.end()
      return { kind: 'violation', error: isKeymeshError(err) ? err : protoError('PROTO_ERR_MESSAGE_ORDER') }
    }
    this.#phase = next
    switch (m.type) {
      case 'error':
        this.#wipePairs()
        return { kind: 'refused', code: m.code, message: m.message }
      case 'welcome':
        return { kind: 'welcome', welcome: m }
      case 'keyset.pair':
        this.#pairs.push(m.pair)
        return NONE
      case 'keyset.end': {
        const pairs = this.#pairs
        this.#pairs = []
        return { kind: 'keyset', pairs }
      }
      case 'pair.update':
        return { kind: 'update', pair: m.pair }
      case 'pair.remove':
        return { kind: 'remove', pairId: m.pairId }
      case 'peer.up':
        return { kind: 'peer-up', pairId: m.pairId, agentId: m.agentId }
      case 'pair.peers':
        return { kind: 'peers', pairId: m.pairId, add: m.add, remove: m.remove }
      case 'usage.ack':
        return { kind: 'usage-ack', seq: m.seq }
      case 'kms.response':
        return { kind: 'kms-response', message: m }
      case 'kms.batch.response':
        return { kind: 'kms-batch-response', message: m }
      default:
        // keyset.begin; advanceConversation() refused every other type.
        return NONE
    }
  }

  /** The session is over (closed, failed, refused): wipes a half-received key set. Idempotent. */
  end(): void {
    this.#phase = ended(this.#phase)
    this.#wipePairs()
  }

  #wipePairs(): void {
    for (const p of this.#pairs) for (const v of p.versions) v.key.fill(0)
    this.#pairs = []
  }
}
