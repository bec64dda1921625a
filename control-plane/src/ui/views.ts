// What the console's pages show, assembled from the store in one read each: the
// overview, the service graph, a page of agents and a page of keys. Reads only:
// every change the pages offer goes through the admin API's own routes (/v1/…),
// with their policy, dry runs and audit. Nothing here carries key material (pair
// keys appear as versions, ages and states, as `keymesh pair list` shows them).
//
// Pages are bounded: agents and keys come `limit` (default 50, at most 200) at a
// time, so a control plane with thousands of them answers as fast as with fifty.
import { DAY } from '../../../platform/src/index.js'
import type { CpContext } from '../context.js'
import { ANY_SERVICE } from '../policy.js'
import { listAgentViews, type AgentView } from '../services/enrollment.js'
import { keyView, type KeyView } from '../services/keys.js'
import type { AgentRecord, AgentTunnelRecord, AuditOutcome, IntentionEffect, KeyRecord, KeyType, KeyVersionRecord, VersionState } from '../store/records.js'
import type { StoreReader } from '../store/store.js'
import { toAuditEntry, type AuditEntry } from '../audit.js'

export const DEFAULT_PAGE = 50
export const MAX_PAGE = 200
const RECENT_REFUSALS = 10

/** Where the live agent sessions are: this replica's hub and the other replicas' word (replicas.ts). */
export type Connected = ReadonlySet<string>

// ---- overview ---------------------------------------------------------------

export interface RefusalView {
  readonly seq: number
  readonly at: number
  readonly actor: string
  readonly action: string
  readonly target: string
  readonly reason: string
}

export interface OverviewData {
  readonly agents: { readonly enrolled: number; readonly connected: number }
  readonly tunnels: { readonly open: number }
  readonly counts: { readonly services: number; readonly intentions: number; readonly pairs: number; readonly keys: number }
  readonly audit: {
    readonly head: { readonly seq: number; readonly hash: string }
    readonly lastVerified: { readonly at: number; readonly actor: string; readonly ok: boolean; readonly reason: string } | null
    readonly checkpoint: { readonly seq: number; readonly at: number } | null
  }
  readonly refusals: readonly RefusalView[]
}

export function overview(ctx: CpContext, connected: Connected): Promise<OverviewData> {
  return ctx.store.read(async (r) => {
    const head = await r.getAuditHead()
    const [verified] = await r.listAuditEntries({ action: 'audit.verify', order: 'desc', limit: 1 })
    const [checkpoint] = await r.listAuditCheckpoints({ order: 'desc', limit: 1 })
    const refusals = await r.listAuditEntries({ outcome: 'deny', order: 'desc', limit: RECENT_REFUSALS })
    const agents = await r.listAgents()
    const keys = await r.listKeys()
    const intentions = await r.listIntentions()
    const live = new Set(agents.map((a) => a.id))
    const tunnels = (await r.listAgentTunnels()).filter((t) => live.has(t.agentId))
    return {
      agents: { enrolled: agents.length, connected: agents.filter((a) => connected.has(a.id)).length },
      tunnels: { open: pairTunnels(tunnels, agents).total },
      counts: {
        services: (await knownServices(r, agents, intentions, keys)).size,
        intentions: intentions.length,
        pairs: keys.filter((k) => k.type === 'pair').length,
        keys: keys.filter((k) => k.type !== 'pair').length,
      },
      audit: {
        head: { seq: head.seq, hash: Buffer.from(head.hash).toString('hex') },
        lastVerified: verified ? { at: verified.at, actor: verified.actor, ok: verified.outcome === 'ok' && !/broken/.test(verified.reason), reason: verified.reason } : null,
        checkpoint: checkpoint ? { seq: checkpoint.seq, at: checkpoint.at } : null,
      },
      refusals: refusals.map((e) => ({ seq: e.seq, at: e.at, actor: e.actor, action: e.action, target: e.target, reason: e.reason })),
    }
  })
}

// ---- service graph ------------------------------------------------------------

export interface GraphNode {
  readonly name: string
  readonly agents: number
  readonly connected: number
}

export interface PairFacts {
  readonly pairId: string
  readonly state: 'live' | 'destroyed'
  readonly version: number
  /** When the current version was made: its age is now minus this. */
  readonly versionCreatedAt: number
  readonly nextRotationAt: number | null
  /** Older versions still accepted (decrypt-only, until their notAfter). */
  readonly previous: readonly { readonly version: number; readonly notAfter: number | null }[]
  /** Tunnels open between the two services, as their agents report them. */
  readonly tunnels: number
}

export interface GraphEdge {
  readonly src: string
  readonly dst: string
  readonly effect: IntentionEffect
  readonly createdAt: number
  /** A removed allow keeps working until then. */
  readonly removesAt: number | null
  /** The pair key of the two services (one per unordered pair, so `a → b` and `b → a` share it). */
  readonly pair: PairFacts | null
}

export interface GraphData {
  readonly now: number
  readonly nodes: readonly GraphNode[]
  /** Rules that name both services. */
  readonly edges: readonly GraphEdge[]
  /** Rules with `*` on a side: they apply to every service the control plane knows. */
  readonly wildcards: readonly { readonly src: string; readonly dst: string; readonly effect: IntentionEffect; readonly removesAt: number | null }[]
  /** Live pair keys no named rule accounts for (a wildcard made them). */
  readonly implied: readonly { readonly services: readonly [string, string]; readonly pair: PairFacts }[]
}

export function graph(ctx: CpContext, connected: Connected): Promise<GraphData> {
  return ctx.store.read(async (r) => {
    const now = ctx.clock.now()
    const agents = await r.listAgents()
    const intentions = await r.listIntentions()
    const keys = await r.listKeys()
    const pairKeys = keys.filter((k) => k.type === 'pair')
    const versions = byKey(await r.listKeyVersions())
    const tunnels = pairTunnels(await r.listAgentTunnels(), agents).byPair
    const facts = new Map(pairKeys.map((k) => [k.name, pairFacts(k, versions.get(k.name) ?? [], tunnels.get(k.name) ?? 0)]))
    const pairOfServices = (a: string, b: string): PairFacts | null => facts.get(a < b ? `${a}:${b}` : `${b}:${a}`) ?? null

    const perService = new Map<string, { agents: number; connected: number }>()
    for (const name of await knownServices(r, agents, intentions, keys)) perService.set(name, { agents: 0, connected: 0 })
    for (const a of agents) {
      const s = perService.get(a.service)
      if (s === undefined) continue
      s.agents++
      if (connected.has(a.id)) s.connected++
    }
    const named = intentions.filter((i) => i.src !== ANY_SERVICE && i.dst !== ANY_SERVICE)
    const covered = new Set(named.map((i) => pairOfServices(i.src, i.dst)?.pairId))
    return {
      now,
      nodes: [...perService].map(([name, s]) => ({ name, ...s })).sort((a, b) => a.name.localeCompare(b.name)),
      edges: named.map((i) => ({ src: i.src, dst: i.dst, effect: i.effect, createdAt: i.createdAt, removesAt: i.expiresAt, pair: pairOfServices(i.src, i.dst) })),
      wildcards: intentions.filter((i) => i.src === ANY_SERVICE || i.dst === ANY_SERVICE).map((i) => ({ src: i.src, dst: i.dst, effect: i.effect, removesAt: i.expiresAt })),
      implied: pairKeys
        .filter((k) => k.pairServices !== null && !covered.has(k.name) && facts.get(k.name)?.state === 'live')
        .map((k) => ({ services: k.pairServices as [string, string], pair: facts.get(k.name) as PairFacts })),
    }
  })
}

function pairFacts(key: KeyRecord, versions: readonly KeyVersionRecord[], tunnels: number): PairFacts {
  const primary = versions.find((v) => v.version === key.primaryVersion)
  return {
    pairId: key.name,
    state: versions.some((v) => v.state !== 'destroyed') ? 'live' : 'destroyed',
    version: key.primaryVersion,
    versionCreatedAt: primary?.createdAt ?? key.createdAt,
    nextRotationAt: key.nextRotationAt,
    previous: versions.filter((v) => v.version !== key.primaryVersion && v.state === 'decrypt-only').map((v) => ({ version: v.version, notAfter: v.notAfter })),
    tunnels,
  }
}

/**
 * Tunnels per pair: each tunnel is reported by an agent at both ends, so a pair's
 * count is the larger of its two sides' sums (one side's report may lag).
 * Revoked agents' reports are left out: their tunnels are cut.
 */
function pairTunnels(rows: readonly AgentTunnelRecord[], agents: readonly AgentRecord[]): { byPair: Map<string, number>; total: number } {
  const serviceOf = new Map(agents.map((a) => [a.id, a.service]))
  const sides = new Map<string, Map<string, number>>()
  for (const t of rows) {
    const service = serviceOf.get(t.agentId)
    if (service === undefined) continue
    let side = sides.get(t.pairId)
    if (side === undefined) sides.set(t.pairId, (side = new Map()))
    side.set(service, (side.get(service) ?? 0) + t.open)
  }
  const byPair = new Map<string, number>()
  let total = 0
  for (const [pairId, side] of sides) {
    const n = Math.max(...side.values())
    byPair.set(pairId, n)
    total += n
  }
  return { byPair, total }
}

/** Services the control plane knows: of agents, join tokens, named rules and pair keys. */
async function knownServices(r: StoreReader, agents: readonly AgentRecord[], intentions: readonly { src: string; dst: string }[], keys: readonly KeyRecord[]): Promise<Set<string>> {
  const names = new Set<string>()
  for (const a of agents) names.add(a.service)
  for (const t of await r.listJoinTokens()) names.add(t.service)
  for (const i of intentions) for (const s of [i.src, i.dst]) if (s !== ANY_SERVICE) names.add(s)
  for (const k of keys) for (const s of k.pairServices ?? []) names.add(s)
  return names
}

function byKey(versions: readonly KeyVersionRecord[]): Map<string, KeyVersionRecord[]> {
  const out = new Map<string, KeyVersionRecord[]>()
  for (const v of versions) {
    let list = out.get(v.keyName)
    if (list === undefined) out.set(v.keyName, (list = []))
    list.push(v)
  }
  return out
}

// ---- agents --------------------------------------------------------------------

/** An agent as the admin API lists it, with what the console adds. */
export type AgentRow = AgentView & {
  readonly tunnels: number
  /** The pair keys its service holds now, with their current versions: the key set the control plane gives it. */
  readonly keySet: readonly { readonly pairId: string; readonly version: number }[]
  /** The last usage batch it reported (its own counter), null before the first. */
  readonly lastUsageBatch: number | null
}

export interface Page<T> {
  readonly total: number
  readonly offset: number
  readonly items: readonly T[]
}

export interface AgentQuery {
  readonly service?: string | undefined
  /** A substring of the id, service or endpoint. */
  readonly q?: string | undefined
  readonly includeRevoked?: boolean | undefined
  readonly offset?: number | undefined
  readonly limit?: number | undefined
}

/** The admin API's agent list (services/enrollment.ts), searched, a page of it with the console's additions. */
export async function agentsPage(ctx: CpContext, connected: Connected, q: AgentQuery): Promise<Page<AgentRow>> {
  const all = await listAgentViews(ctx, { service: q.service, includeRevoked: q.includeRevoked }, (id) => connected.has(id))
  const text = q.q?.toLowerCase()
  const matching = text === undefined ? all : all.filter((a) => a.id.includes(text) || a.service.includes(text) || (a.endpoint ?? '').toLowerCase().includes(text))
  const offset = q.offset ?? 0
  const page = matching.slice(offset, offset + (q.limit ?? DEFAULT_PAGE))
  return ctx.store.read(async (r) => {
    const tunnels = new Map<string, number>()
    for (const t of await r.listAgentTunnels()) tunnels.set(t.agentId, (tunnels.get(t.agentId) ?? 0) + t.open)
    const pairs = (await r.listKeys({ type: 'pair' })).filter((k) => k.pairServices !== null)
    const livePairs = new Set((await r.listKeyVersions({ states: ['enabled'] })).map((v) => v.keyName))
    const items: AgentRow[] = []
    for (const a of page) {
      const live = a.revokedAt === null
      items.push({
        ...a,
        tunnels: live ? tunnels.get(a.id) ?? 0 : 0,
        keySet: live ? pairs.filter((k) => (k.pairServices as readonly string[]).includes(a.service) && livePairs.has(k.name)).map((k) => ({ pairId: k.name, version: k.primaryVersion })) : [],
        lastUsageBatch: await r.lastUsageBatchSeq(a.id),
      })
    }
    return { total: matching.length, offset, items }
  })
}

// ---- keys ------------------------------------------------------------------------

export interface KeyQuery {
  readonly type?: KeyType | undefined
  /** A substring of the name. */
  readonly q?: string | undefined
  readonly offset?: number | undefined
  readonly limit?: number | undefined
}

export type KeyRow = KeyView & { readonly states: Readonly<Partial<Record<VersionState, number>>>; readonly lastUsedAt: number | null }

/** A page of keys (pair keys only when asked for by type: the graph shows them), with each key's last use. */
export function keysPage(ctx: CpContext, q: KeyQuery): Promise<Page<KeyRow>> {
  return ctx.store.read(async (r) => {
    const now = ctx.clock.now()
    const keys = (await r.listKeys(q.type !== undefined ? { type: q.type } : {}))
      .filter((k) => (q.type === 'pair' || k.type !== 'pair') && (q.q === undefined || k.name.includes(q.q)))
    const offset = q.offset ?? 0
    const page = keys.slice(offset, offset + (q.limit ?? DEFAULT_PAGE))
    const items: KeyRow[] = []
    for (const k of page) {
      const view = keyView(k, await r.listKeyVersions({ keyName: k.name }))
      const states: Partial<Record<VersionState, number>> = {}
      for (const v of view.versions) states[v.state] = (states[v.state] ?? 0) + 1
      const usage = await r.listKeyUsage(k.name, Math.floor((now - 30 * DAY) / DAY))
      items.push({ ...view, states, lastUsedAt: usage.length === 0 ? null : Math.max(...usage.map((u) => u.lastUsedAt)) })
    }
    return { total: keys.length, offset, items }
  })
}

// ---- audit -------------------------------------------------------------------------

export interface AuditPageQuery {
  readonly beforeSeq?: number | undefined
  readonly limit?: number | undefined
  readonly from?: number | undefined
  readonly to?: number | undefined
  readonly actor?: string | undefined
  readonly action?: string | undefined
  readonly target?: string | undefined
  readonly outcome?: AuditOutcome | undefined
}

/** A page of the audit log, newest first; `next` is the `beforeSeq` of the page after it, null at the start of the log. */
export function auditPage(ctx: CpContext, q: AuditPageQuery): Promise<{ entries: AuditEntry[]; next: number | null }> {
  const limit = q.limit ?? DEFAULT_PAGE
  return ctx.store.read(async (r) => {
    const rows = await r.listAuditEntries({
      ...(q.from !== undefined ? { from: q.from } : {}),
      ...(q.to !== undefined ? { to: q.to } : {}),
      ...(q.actor !== undefined ? { actor: q.actor } : {}),
      ...(q.action !== undefined ? { action: q.action } : {}),
      ...(q.target !== undefined ? { target: q.target } : {}),
      ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
      ...(q.beforeSeq !== undefined ? { beforeSeq: q.beforeSeq } : {}),
      order: 'desc',
      limit: limit + 1,
    })
    const entries = rows.slice(0, limit).map(toAuditEntry)
    return { entries, next: rows.length > limit ? (entries[entries.length - 1]?.seq ?? null) : null }
  })
}
