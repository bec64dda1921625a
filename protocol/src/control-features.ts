// Optional parts of the agent ↔ control-plane conversation, agreed during the XK
// handshake so that either end may be older than the other. Pure.
//
//   XK message 2 (CP → agent)  the control plane's offer: a `features` message, or
//                              nothing from a control plane that predates features
//   XK message 3 (agent → CP)  hello, with `features` (what the agent speaks) only
//                              when an offer came: an older control plane refuses a
//                              hello that carries a field it does not know
//
// Each end then uses a feature only when both named it: the agreed set is the
// offer ∩ hello.features ∩ what the end itself speaks. Names an end does not know
// are ignored, so a newer end may list more. An older agent ignores message 2's
// payload, so it never sends `features` and gets none of these messages.
//
//   keyset.request  agent → CP: keyset.request { pairId }; the CP recomputes and
//                   pushes what changed (an agent whose set looks behind)
//   peer.up         CP → agent: peer.up { pairId, agentId } when an agent of the
//                   pair's peer service connects (the agent may dial it again)
//   pair.peers      CP → agent: pair.peers { pairId, add, remove } when only a
//                   pair's peers changed, instead of the whole pair.update
//   kms.frame       both ways: kms.batch and kms.batch.response may travel as
//                   binary KMS frames (messages/kms-frame.ts) instead of JSON; each
//                   end reads frames only where agreed, and either end may still
//                   send JSON for any message (the frame's unusual cases)
import { wipeMessage } from './control-conversation.js'
import { protoError } from './errors.js'
import { decodeMessage, encodeMessage } from './messages/index.js'

export const CONTROL_FEATURES = ['keyset.request', 'peer.up', 'pair.peers', 'kms.frame'] as const
export type ControlFeature = (typeof CONTROL_FEATURES)[number]

const KNOWN: ReadonlySet<string> = new Set(CONTROL_FEATURES)

/** The known names in `names`, each once, in CONTROL_FEATURES order. */
export function knownFeatures(names: readonly string[]): ControlFeature[] {
  const given = new Set(names.filter((n) => KNOWN.has(n)))
  return CONTROL_FEATURES.filter((f) => given.has(f))
}

/** The features in both lists. */
export function agreeFeatures(mine: readonly string[], theirs: readonly string[]): ControlFeature[] {
  const other = new Set(theirs)
  return knownFeatures(mine).filter((f) => other.has(f))
}

/** The control plane's offer, XK message 2's payload. */
export function encodeFeatureOffer(features: readonly ControlFeature[]): Uint8Array {
  return encodeMessage({ type: 'features', features: [...features] })
}

/**
 * The agent's reading of XK message 2's payload: empty (a control plane before
 * features) is no offer (undefined); otherwise it must be a `features` message
 * (PROTO_ERR_MESSAGE_* or, for another type, PROTO_ERR_MESSAGE_ORDER), whose known
 * names are returned.
 */
export function readFeatureOffer(payload: Uint8Array | undefined): ControlFeature[] | undefined {
  if (payload === undefined || payload.length === 0) return undefined
  const m = decodeMessage(payload)
  if (m.type !== 'features') {
    wipeMessage(m)
    throw protoError('PROTO_ERR_MESSAGE_ORDER', `expected features in XK message 2, got ${m.type}`)
  }
  return knownFeatures(m.features)
}
