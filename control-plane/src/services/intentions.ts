// Intentions as rules, and the pair keys they call for (inside the caller's transaction;
// the caller's perform() audits and publishes).
//
// A rule is `allow` or `deny` from src to dst, either side possibly `*` (any service).
// A pair of services {a, b} needs a pair key while the rules in force allow a → b or
// b → a (policy.ts: a deny wins over every allow it matches). Which services exist is
// what the control plane knows of: services of non-revoked agents, of join tokens, and
// those named in rules. So `allow web *` creates a pair key for web and every such
// service, now and whenever a join token names a new one (enrollment.ts). The number
// of pairs that wildcard rules may call for is bounded (MAX_WILDCARD_PAIRS); `* *` may
// only be denied.
//
// Every change goes through `reconcilePairs`: it compares what the rules allowed before
// the change with what they allow after it, creates or revives the keys now needed and
// destroys those no longer needed, and describes the difference (affected pairs, their
// services and agents) for the API's answer, the audit entry and --dry-run.
import { isServiceName } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { ANY_SERVICE, activeIntentions, mayConnect, type Intention } from '../policy.js'
import type { StoreReader, StoreTx } from '../store/store.js'
import { ensurePairKey, isLive, pairOf, retirePairKey } from './pairs.js'

/** Pairs that wildcard rules may call for, in all; more is refused with CP_ERR_POLICY_TOO_BROAD. */
export const MAX_WILDCARD_PAIRS = 1000

/** A rule side: a service name or `*`. */
export function checkRuleSide(name: unknown, what: 'src' | 'dst'): string {
  if (name === ANY_SERVICE) return ANY_SERVICE
  if (!isServiceName(name)) throw cpError('CP_ERR_SERVICE_NAME', `${what} name is not valid (a service name, or * for any service)`)
  return name
}

/** Directions allowed within one pair: `lo->hi` and `hi->lo`. */
export interface PairPolicy {
  readonly pairId: string
  readonly services: readonly [string, string]
  readonly allows: Readonly<Record<string, boolean>>
}

/** Every pair the rules in force allow in at least one direction, by pair id. */
export async function allowedPairs(r: StoreReader, now: number): Promise<Map<string, PairPolicy>> {
  const rules = activeIntentions(await r.listIntentions(), now)
  const services = await knownServices(r, rules)
  const candidates = new Map<string, [string, string]>()
  let wildcardPairs = 0
  const add = (a: string, b: string, wildcard: boolean): void => {
    if (a === b) return
    const { pairId, lo, hi } = pairOf(a, b)
    if (candidates.has(pairId)) return
    if (wildcard && ++wildcardPairs > MAX_WILDCARD_PAIRS) {
      throw cpError('CP_ERR_POLICY_TOO_BROAD', `wildcard intentions would need more than ${MAX_WILDCARD_PAIRS} pair keys; name services instead`)
    }
    candidates.set(pairId, [lo, hi])
  }
  for (const rule of rules) {
    if (rule.effect === 'deny') continue
    if (rule.src !== ANY_SERVICE && rule.dst !== ANY_SERVICE) add(rule.src, rule.dst, false)
    else if (rule.src !== ANY_SERVICE) for (const s of services) add(rule.src, s, true)
    else if (rule.dst !== ANY_SERVICE) for (const s of services) add(s, rule.dst, true)
  }
  const out = new Map<string, PairPolicy>()
  for (const [pairId, [lo, hi]] of [...candidates].sort(([x], [y]) => (x < y ? -1 : 1))) {
    const up = mayConnect(rules, lo, hi).allow
    const down = mayConnect(rules, hi, lo).allow
    if (up || down) out.set(pairId, { pairId, services: [lo, hi], allows: { [`${lo}->${hi}`]: up, [`${hi}->${lo}`]: down } })
  }
  return out
}

/** Services the control plane knows of: non-revoked agents, join tokens and names in rules. */
async function knownServices(r: StoreReader, rules: readonly Intention[]): Promise<string[]> {
  const names = new Set<string>()
  for (const a of await r.listAgents()) names.add(a.service)
  for (const t of await r.listJoinTokens()) if (t.revokedAt === null) names.add(t.service)
  for (const i of rules) for (const s of [i.src, i.dst]) if (s !== ANY_SERVICE) names.add(s)
  return [...names].sort()
}

export type PairKeyChange = 'created' | 'revived' | 'destroyed' | 'kept'

export interface PairEffect {
  readonly pairId: string
  readonly services: readonly [string, string]
  /** Directions allowed before and after; null: none. */
  readonly before: Readonly<Record<string, boolean>> | null
  readonly after: Readonly<Record<string, boolean>> | null
  /** What happened to the pair key. */
  readonly change: PairKeyChange
}

/** What a change of rules does: the pairs it touches, their services and how many agents those have. */
export interface PolicyEffect {
  readonly pairs: readonly PairEffect[]
  readonly services: readonly string[]
  /** Non-revoked agents of the affected services, whose key sets change. */
  readonly agents: number
}

/**
 * Brings the pair keys in line with the rules in force now, given what they allowed
 * before the caller's change (`allowedPairs` read earlier in the same transaction).
 */
export async function reconcilePairs(ctx: CpContext, tx: StoreTx, before: Map<string, PairPolicy>, now: number): Promise<PolicyEffect> {
  const after = await allowedPairs(tx, now)
  const keyChanges = new Map<string, PairKeyChange>()
  for (const p of after.values()) {
    const { outcome } = await ensurePairKey(ctx, tx, p.services[0], p.services[1], now)
    if (outcome !== 'existing') keyChanges.set(p.pairId, outcome)
  }
  for (const key of await tx.listKeys({ type: 'pair' })) {
    if (after.has(key.name) || !(await isLive(tx, key))) continue
    await retirePairKey(ctx, tx, key, now)
    keyChanges.set(key.name, 'destroyed')
  }
  const pairs: PairEffect[] = []
  for (const pairId of [...new Set([...before.keys(), ...after.keys(), ...keyChanges.keys()])].sort()) {
    const b = before.get(pairId) ?? null
    const a = after.get(pairId) ?? null
    const key = keyChanges.get(pairId) ?? 'kept'
    if (key === 'kept' && JSON.stringify(b?.allows ?? null) === JSON.stringify(a?.allows ?? null)) continue
    const { lo, hi } = pairOf(...(pairId.split(':') as [string, string]))
    pairs.push({ pairId, services: [lo, hi], before: b?.allows ?? null, after: a?.allows ?? null, change: key })
  }
  const services = [...new Set(pairs.flatMap((p) => p.services))].sort()
  let agents = 0
  for (const s of services) agents += (await tx.listAgents({ service: s })).length
  return { pairs, services, agents }
}

/** A one-line summary of an effect, for the audit reason. */
export function describeEffect(e: PolicyEffect): string {
  const count = (k: PairKeyChange): number => e.pairs.filter((p) => p.change === k).length
  const parts = [`${e.pairs.length} pair(s) affected`]
  for (const k of ['created', 'revived', 'destroyed'] as const) if (count(k) > 0) parts.push(`${count(k)} pair key(s) ${k}`)
  return parts.join(', ')
}
