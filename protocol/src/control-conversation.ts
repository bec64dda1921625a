// The agent ↔ control-plane conversation after the Noise XK handshake, as one
// table both ends keep. Pure: phases and decoded messages in, the next phase out,
// or a typed PROTO_ERR_* thrown. The two ends drive it through their own machines,
// control-conversation-agent.ts and control-conversation-cp.ts; the sockets, timers,
// store and audit stay with their owners (agent/src/control/session.ts,
// control-plane/src/agent-endpoint/session.ts).
//
// The phase is a function of the control plane's messages alone, so both ends track
// the same one: the agent from what it receives, the control plane from what it is
// about to send. A control plane that keeps this table never sends what an agent refuses.
//
//   phase \ CP sends  welcome   keyset.begin  keyset.pair  keyset.end  pair.update  usage.ack           error
//                                                                      pair.remove  kms.response
//                                                                      peer.up⁴     kms.batch.response
//                                                                      pair.peers⁴
//   handshake            -           -             -            -           -            -                -
//   admitting         welcomed       -             -            -           -            -              ended
//   welcomed             -         keyset          -            -           -            -              ended
//   keyset               -           -          keyset¹      synced²        -            -              ended
//   synced               -           -             -            -         synced       synced           ended
//   ended                -           -             -            -           -            -              ended³
//
//   handshake → admitting once XK message 3, carrying hello, is through (opened());
//   any phase → ended on a violation or when the owner ends the session (end()).
//   '-' is PROTO_ERR_MESSAGE_ORDER; a type the control plane never sends (hello,
//   usage.batch, kms.request, kms.batch) is PROTO_ERR_MESSAGE_DIRECTION.
//   ¹ at most pairCount pairs; ² with keyset.begin's generation, after exactly
//   pairCount pairs; otherwise PROTO_ERR_KEYSET. ³ the refusal that follows a
//   violation, saying why. ⁴ only when both ends agreed to the feature of that name
//   (control-features.ts), as keyset.request from the agent: otherwise
//   PROTO_ERR_MESSAGE_ORDER, so an older peer never meets a type it does not know.
//
// The agent's messages (usage.batch, kms.request, kms.batch, keyset.request, error) move no phase.
// The agent sends them only once synced. The control plane takes them from admitting
// on but holds those that come earlier until its first key set is out (a bounded
// backlog), so it answers nothing before keyset.end. hello travels only in message 3.
import type { ControlFeature } from './control-features.js'
import { protoError, type ProtoErrorCode } from './errors.js'
import type { Message, MessageType } from './messages/index.js'

export type ConversationPhase =
  | { readonly name: 'handshake' }
  /** hello is through; the control plane decides (the agent waits for welcome or error). */
  | { readonly name: 'admitting' }
  | { readonly name: 'welcomed' }
  /** The first key set is under way: `pairs` of `pairCount` so far. */
  | { readonly name: 'keyset'; readonly generation: number; readonly pairCount: number; readonly pairs: number }
  | { readonly name: 'synced' }
  /** Nothing more is said; `synced` keeps whether the first key set had been completed. */
  | { readonly name: 'ended'; readonly synced: boolean }

export type PhaseName = ConversationPhase['name']

/** What the control plane sends, in record payloads. */
export const CP_MESSAGE_TYPES = [
  'welcome', 'keyset.begin', 'keyset.pair', 'keyset.end', 'pair.update', 'pair.remove', 'peer.up', 'pair.peers',
  'usage.ack', 'kms.response', 'kms.batch.response', 'error',
] as const satisfies readonly MessageType[]
/** What the agent sends in record payloads (hello goes in XK message 3 only). */
export const AGENT_MESSAGE_TYPES = ['usage.batch', 'kms.request', 'kms.batch', 'keyset.request', 'error'] as const satisfies readonly MessageType[]

/** The feature a message type needs (control-features.ts), for the types that need one. */
export const FEATURE_OF: Readonly<Partial<Record<MessageType, ControlFeature>>> = Object.freeze({
  'keyset.request': 'keyset.request',
  'peer.up': 'peer.up',
  'pair.peers': 'pair.peers',
})

/** `type` needs no feature, or one the two ends agreed to. */
export function isAgreed(type: MessageType, agreed: ReadonlySet<string>): boolean {
  const feature = FEATURE_OF[type]
  return feature === undefined || agreed.has(feature)
}

/** PROTO_ERR_MESSAGE_ORDER when `type` needs a feature the two ends did not agree to. */
export function checkAgreed(type: MessageType, agreed: ReadonlySet<string>): void {
  if (!isAgreed(type, agreed)) throw protoError('PROTO_ERR_MESSAGE_ORDER', `${type} without the ${FEATURE_OF[type]} feature agreed`)
}

export type CpMessageType = (typeof CP_MESSAGE_TYPES)[number]
export type AgentMessageType = (typeof AGENT_MESSAGE_TYPES)[number]
export type AgentMessage = Extract<Message, { type: AgentMessageType }>

/** The table above: the phase each control-plane message leads to, where it is allowed. */
export const CONVERSATION_TRANSITIONS = Object.freeze({
  handshake: {},
  admitting: { welcome: 'welcomed', error: 'ended' },
  welcomed: { 'keyset.begin': 'keyset', error: 'ended' },
  keyset: { 'keyset.pair': 'keyset', 'keyset.end': 'synced', error: 'ended' },
  synced: {
    'pair.update': 'synced', 'pair.remove': 'synced', 'peer.up': 'synced', 'pair.peers': 'synced', 'usage.ack': 'synced',
    'kms.response': 'synced', 'kms.batch.response': 'synced', error: 'ended',
  },
  ended: { error: 'ended' },
} as const satisfies Record<PhaseName, Partial<Record<CpMessageType, PhaseName>>>)

/**
 * What the order rules read of a message: its type and, for keyset.begin and
 * keyset.end, their numbers. Every Message fits, so does `{ type }` for a message
 * sent already encoded.
 */
export interface MessageHead {
  readonly type: MessageType
  readonly generation?: number
  readonly pairCount?: number
}

/** The conversation's own violations: a message that decodes but is out of place. */
export const CONVERSATION_ERROR_CODES = [
  'PROTO_ERR_MESSAGE_ORDER', 'PROTO_ERR_MESSAGE_DIRECTION', 'PROTO_ERR_KEYSET', 'PROTO_ERR_WELCOME_SERVICE', 'PROTO_ERR_MESSAGE_BACKLOG',
] as const satisfies readonly ProtoErrorCode[]

const CP_TYPES: ReadonlySet<string> = new Set(CP_MESSAGE_TYPES)
const AGENT_TYPES: ReadonlySet<string> = new Set(AGENT_MESSAGE_TYPES)

export function isAgentMessage(m: Message): m is AgentMessage {
  return AGENT_TYPES.has(m.type)
}

/** The phase after the control plane sends `m` in `phase`; throws PROTO_ERR_MESSAGE_DIRECTION, _ORDER or PROTO_ERR_KEYSET. */
export function advanceConversation(phase: ConversationPhase, m: MessageHead): ConversationPhase {
  if (!CP_TYPES.has(m.type)) throw protoError('PROTO_ERR_MESSAGE_DIRECTION', `${m.type} is not sent by the control plane`)
  const row: Partial<Record<string, PhaseName>> = CONVERSATION_TRANSITIONS[phase.name]
  const to = row[m.type]
  if (to === undefined) throw protoError('PROTO_ERR_MESSAGE_ORDER', `${m.type} in phase ${phase.name}`)
  if (phase.name === 'keyset') {
    if (m.type === 'keyset.pair') {
      if (phase.pairs >= phase.pairCount) throw protoError('PROTO_ERR_KEYSET', `more than the ${phase.pairCount} pairs announced`)
      return { ...phase, pairs: phase.pairs + 1 }
    }
    if (m.type === 'keyset.end' && (m.generation !== phase.generation || phase.pairs !== phase.pairCount)) {
      throw protoError('PROTO_ERR_KEYSET', `keyset.end after ${phase.pairs} of ${phase.pairCount} pairs`)
    }
  }
  if (to === 'keyset') return { name: 'keyset', generation: count(m.generation), pairCount: count(m.pairCount), pairs: 0 }
  if (to === 'ended') return { name: 'ended', synced: hadKeySet(phase) }
  return to === phase.name ? phase : { name: to }
}

/** The phase once the conversation stops (a violation, a close). */
export function ended(phase: ConversationPhase): ConversationPhase {
  return phase.name === 'ended' ? phase : { name: 'ended', synced: hadKeySet(phase) }
}

/** The first key set was completed (and the conversation may have ended since). */
export function hadKeySet(phase: ConversationPhase): boolean {
  return phase.name === 'synced' || (phase.name === 'ended' && phase.synced)
}

/** Zeroes the secrets a message carries (pair keys, KMS plaintext), for one that is dropped or done with. */
export function wipeMessage(m: Message): void {
  switch (m.type) {
    case 'keyset.pair':
    case 'pair.update':
      for (const v of m.pair.versions) v.key.fill(0)
      return
    case 'kms.request':
      m.plaintext?.fill(0)
      return
    case 'kms.batch':
      for (const item of m.items) item.plaintext?.fill(0)
      return
    case 'kms.response':
      m.result?.plaintext?.fill(0)
      return
    case 'kms.batch.response':
      for (const item of m.items) item.result?.plaintext?.fill(0)
      return
    default:
      return
  }
}

// A keyset.begin whose numbers are missing is the caller's bug (a decoded one has them).
function count(n: number | undefined): number {
  if (n === undefined || !Number.isSafeInteger(n) || n < 0) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'keyset.begin needs its generation and pairCount')
  return n
}
