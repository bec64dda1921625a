// The key set: after welcome the control plane streams every pair of the agent's
// service, one message per pair (keyset.begin, keyset.pair × pairCount,
// keyset.end with the same generation), then pushes pair.update / pair.remove.
// Where both ends agreed to (control-features.ts): an agent that suspects its set
// is behind (a peer offered a newer pair key version, or an agent it does not
// list) sends keyset.request, and the control plane pushes what changed; the
// control plane sends peer.up when an agent of a pair's peer service connects, and
// pair.peers (the peers added, changed and removed) instead of a whole pair.update
// when only a pair's peers changed: an enrolment then costs each agent of the peer
// service one small message, not its pair with every peer again.
// An agent replaces its whole set only when keyset.end arrives with the generation
// of the keyset.begin it follows and exactly pairCount pairs came in between.
//
// Limits are chosen so the largest legal pair entry (4 versions, 200 peers with
// 160-character endpoints) fits in one record; test/protocol/messages/index.test.ts checks it.
import { AEAD_KEY_BYTES } from '../crypto/suite.js'
import { agentId, count, endpointUrl, keyVersion, pairIdField, publicKeyText, serviceName, timeMs } from './fields.js'
import { array, bool, bytes, int, nullable, object, oneOf, type Infer } from './schema.js'

export const MAX_PAIR_VERSIONS = 4
export const MAX_PAIR_PEERS = 200
export const MAX_PAIR_COUNT = 100_000

export const pairVersionSchema = object({
  version: keyVersion,
  /** The pair key (Noise KKpsk0 PSK). Secret. */
  key: bytes(AEAD_KEY_BYTES, AEAD_KEY_BYTES, { secret: true }),
  /** 'current' initiates new sessions; 'previous' is still accepted until notAfter. */
  state: oneOf('current', 'previous'),
  /** No session may use this version after this time (ms); null means no end set yet. */
  notAfter: nullable(timeMs),
})

export const pairPeerSchema = object({
  agentId,
  staticKey: publicKeyText,
  /** The peer agent's advertised tunnel endpoint, or null when it accepts no tunnels. */
  endpoint: nullable(endpointUrl),
})

export const pairEntrySchema = object(
  {
    pairId: pairIdField,
    peerService: serviceName,
    /** An intention local -> peer exists: this agent may open tunnels to the peer. */
    mayInitiate: bool(),
    /** An intention peer -> local exists: this agent may accept tunnels from the peer. */
    mayAccept: bool(),
    versions: array(pairVersionSchema, MAX_PAIR_VERSIONS, 1),
    peers: array(pairPeerSchema, MAX_PAIR_PEERS),
  },
  (p) => {
    const versions = p['versions'] as { version: number; state: string }[]
    const seen = new Set(versions.map((v) => v.version))
    if (seen.size !== versions.length) return 'versions'
    if (versions.filter((v) => v.state === 'current').length !== 1) return 'versions'
    const [lo, hi] = (p['pairId'] as string).split(':')
    if (p['peerService'] !== lo && p['peerService'] !== hi) return 'peerService'
    return undefined
  },
)

export type PairVersion = Infer<typeof pairVersionSchema>
export type PairPeer = Infer<typeof pairPeerSchema>
export type PairEntry = Infer<typeof pairEntrySchema>

export const keysetBeginSchema = object({ generation: count, pairCount: int(0, MAX_PAIR_COUNT) })
export const keysetPairSchema = object({ pair: pairEntrySchema })
export const keysetEndSchema = object({ generation: count })
export const pairUpdateSchema = object({ pair: pairEntrySchema })
export const pairRemoveSchema = object({ pairId: pairIdField })


/** Agent -> CP ('keyset.request' feature): "my set looks behind for this pair"; answered by pushes. */
export const keysetRequestSchema = object({ pairId: pairIdField })
/** CP -> agent ('peer.up' feature): `agentId`, a peer of `pairId`, has just connected to the control plane. */
export const peerUpSchema = object({ pairId: pairIdField, agentId })
/**
 * CP -> agent ('pair.peers' feature): the peers of `pairId` changed and nothing else of
 * it did. `add` are new peers or new entries of listed ones (same agentId: replaced in
 * place), appended in this order; `remove` are agentIds no longer listed. Sent only to
 * an agent whose copy of the pair is the one the change is from.
 */
export const pairPeersSchema = object(
  { pairId: pairIdField, add: array(pairPeerSchema, MAX_PAIR_PEERS), remove: array(agentId, MAX_PAIR_PEERS) },
  (p) => {
    const ids = [...(p['add'] as { agentId: string }[]).map((a) => a.agentId), ...(p['remove'] as string[])]
    return new Set(ids).size === ids.length ? undefined : 'add'
  },
)
