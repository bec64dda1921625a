// An agent's key set: every pair of its service that it may use, with the pair key
// versions in clear and the peer agents to talk to. This is the only place pair
// key material leaves its seal, and it goes only into the Noise session of an
// agent of one of the pair's two services (DESIGN.md, "Key model"). Callers encode
// the entries into records and then wipe them with `wipeKeySet`.
import { formatPublicKey, pairId, peerOf } from '../../../protocol/src/index.js'
import { MAX_PAIR_PEERS, MAX_PAIR_VERSIONS, type PairEntry, type PairPeer, type PairVersion } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { permits } from '../key-lifecycle.js'
import { activeIntentions, mayConnect, type Intention } from '../policy.js'
import type { AgentRecord, KeyRecord, KeyVersionRecord } from '../store/records.js'
import type { StoreReader } from '../store/store.js'
import { openMaterial } from './material.js'

/**
 * The pairs of `service`, ordered by pair id. A pair is included when the intentions
 * in force (a deny wins, `*` matches any service) let this service initiate or accept, and its primary version may initiate
 * (enabled, within its grace); previous versions that may still accept follow,
 * newest first, up to the message limit. Peers are the peer service's non-revoked
 * agents, the most recently enrolled first when there are more than the limit.
 */
export async function buildKeySet(ctx: CpContext, reader: StoreReader, service: string): Promise<PairEntry[]> {
  const now = ctx.clock.now()
  const keys = await reader.listKeys({ type: 'pair', service })
  const intentions = activeIntentions(await reader.listIntentions({ service }), now)
  const entries: PairEntry[] = []
  try {
    for (const key of keys) {
      const entry = await pairEntry(ctx, reader, key, service, intentions, now)
      if (entry) entries.push(entry)
    }
  } catch (err) {
    wipeKeySet(entries)
    throw err
  }
  return entries.sort((a, b) => (a.pairId < b.pairId ? -1 : a.pairId > b.pairId ? 1 : 0))
}

/** Zeroes every key in the entries (after they were encoded). */
export function wipeKeySet(entries: readonly PairEntry[]): void {
  for (const e of entries) for (const v of e.versions) v.key.fill(0)
}

/** The peer services of `service`: the other side of each of its pair keys. */
export async function peerServices(reader: StoreReader, service: string): Promise<string[]> {
  const keys = await reader.listKeys({ type: 'pair', service })
  return [...new Set(keys.flatMap((k) => (k.pairServices ? [k.pairServices[0] === service ? k.pairServices[1] : k.pairServices[0]] : [])))]
}

async function pairEntry(
  ctx: CpContext,
  reader: StoreReader,
  key: KeyRecord,
  service: string,
  intentions: readonly Intention[],
  now: number,
): Promise<PairEntry | null> {
  if (!key.pairServices) return null
  const [a, b] = key.pairServices
  const id = pairId(a, b)
  const peer = peerOf(id, service)
  const mayInitiate = mayConnect(intentions, service, peer).allow
  const mayAccept = mayConnect(intentions, peer, service).allow
  if (!mayInitiate && !mayAccept) return null
  const all = await reader.listKeyVersions({ keyName: key.name })
  const primary = all.find((v) => v.version === key.primaryVersion)
  if (!primary || !permits(key, primary, now).encrypt) return null
  const previous = all
    .filter((v) => v.version !== key.primaryVersion && permits(key, v, now).decrypt)
    .sort((x, y) => y.version - x.version)
    .slice(0, MAX_PAIR_VERSIONS - 1)
  const versions: PairVersion[] = []
  try {
    versions.push(version(ctx, primary, 'current'))
    for (const v of previous) versions.push(version(ctx, v, 'previous'))
  } catch (err) {
    for (const v of versions) v.key.fill(0)
    throw err
  }
  const agents = await reader.listAgents({ service: peer })
  return { pairId: id, peerService: peer, mayInitiate, mayAccept, versions, peers: peers(agents) }
}

function version(ctx: CpContext, v: KeyVersionRecord, state: 'current' | 'previous'): PairVersion {
  return { version: v.version, key: openMaterial(ctx, v), state, notAfter: v.notAfter }
}

function peers(agents: readonly AgentRecord[]): PairPeer[] {
  // listAgents is ordered by enrolment; past the limit, the newest agents are the likeliest alive.
  return agents
    .filter((a) => a.revokedAt === null)
    .slice(-MAX_PAIR_PEERS)
    .map((a) => ({ agentId: a.id, staticKey: formatPublicKey(a.staticKey), endpoint: a.endpoint }))
}
