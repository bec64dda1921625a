// Who may open a tunnel, decided from the key set alone (pure: no I/O).
//
// Inbound, for every handshake and every in-band re-handshake the initiator
// proposes, the checks run in this order and the first that fails is the answer:
//   1. the tunnel is addressed to this agent's service     AGENT_ERR_WRONG_SERVICE
//   2. a pair with the initiating service exists, and an
//      intention lets that service connect to us           AGENT_ERR_NO_INTENTION
//   3. the initiating agent is one of that pair's peers
//      (the control plane removes revoked agents)          AGENT_ERR_UNKNOWN_PEER
//   4. the proposed key version is held and still usable   AGENT_ERR_KEY_VERSION
//   5. a local service is exposed to forward to           AGENT_ERR_NO_EXPOSE
// The last comes after the others so an unauthorised caller learns nothing about
// this agent's configuration. The keys returned are the key set's own buffers:
// TunnelSession copies them, so a later rotation may wipe these.
import type { TunnelKeys } from '../../../protocol/src/index.js'
import type { TunnelContext } from '../../../protocol/src/index.js'
import { agentError } from '../errors.js'
import type { KeySet, PairEntry, PairVersion, PeerAgent } from '../keyset.js'

export function authorizeInbound(keyset: KeySet, service: string, exposes: boolean, ctx: TunnelContext): TunnelKeys {
  if (ctx.toService !== service) throw agentError('AGENT_ERR_WRONG_SERVICE', `this agent serves ${service}`)
  const pair = keyset.get(ctx.pairId)
  if (pair === undefined || pair.peerService !== ctx.fromService || !pair.mayAccept) {
    throw agentError('AGENT_ERR_NO_INTENTION', `${ctx.fromService} -> ${service}`)
  }
  const peer = keyset.peer(ctx.pairId, ctx.fromAgent)
  if (peer === undefined) throw agentError('AGENT_ERR_UNKNOWN_PEER', `agent ${ctx.fromAgent} of ${ctx.fromService}`)
  const version = keyset.version(ctx.pairId, ctx.keyVersion)
  if (version === undefined) throw agentError('AGENT_ERR_KEY_VERSION', `version ${ctx.keyVersion} of ${ctx.pairId}`)
  if (!exposes) throw agentError('AGENT_ERR_NO_EXPOSE')
  return { psk: version.key, remoteStatic: peer.staticKey }
}

/** What an outbound connection to `peerService` will use, before a peer is chosen. */
export interface OutboundPlan {
  readonly pair: PairEntry
  readonly version: PairVersion
  /** The context every candidate peer is offered (fromAgent = this agent). */
  readonly context: TunnelContext
}

/**
 * Outbound policy: this agent must be enrolled (AGENT_ERR_NOT_READY), an intention
 * must let this service connect to `peerService` (AGENT_ERR_NO_INTENTION), and
 * `versionOf` (the current version, or the registry's choice just after a
 * rotation) must give a usable version (AGENT_ERR_KEY_VERSION).
 */
export function planOutbound(
  keyset: KeySet,
  service: string,
  agentId: string | undefined,
  peerService: string,
  versionOf: (pairId: string) => PairVersion | undefined = (id) => keyset.current(id),
): OutboundPlan {
  if (agentId === undefined || !keyset.ready) throw agentError('AGENT_ERR_NOT_READY')
  const pair = keyset.byPeerService(peerService)
  if (pair === undefined || !pair.mayInitiate) throw agentError('AGENT_ERR_NO_INTENTION', `${service} -> ${peerService}`)
  const version = versionOf(pair.pairId)
  if (version === undefined) throw agentError('AGENT_ERR_KEY_VERSION', `no usable current version of ${pair.pairId}`)
  const context: TunnelContext = { pairId: pair.pairId, keyVersion: version.version, fromService: service, toService: peerService, fromAgent: agentId }
  return { pair, version, context }
}

/** Keys for an initiator's (re-)handshake with `peer` under `version`. */
export function outboundKeys(version: PairVersion, peer: PeerAgent): TunnelKeys {
  return { psk: version.key, remoteStatic: peer.staticKey }
}

/**
 * Candidates in random order (Fisher–Yates with the injected random), leaving out
 * those for which `skip` is true (recently unreachable).
 */
export function shuffledPeers(peers: readonly PeerAgent[], random: () => number, skip: (p: PeerAgent) => boolean): PeerAgent[] {
  const out = peers.filter((p) => !skip(p))
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)))
    const a = out[i] as PeerAgent
    out[i] = out[j] as PeerAgent
    out[j] = a
  }
  return out
}
