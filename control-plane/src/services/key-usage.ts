// Who used which key version, and when: per (key, version, service) daily buckets of
// uses with the last use time, so "uses in the last 30 days" is a sum over at most
// ~30 rows and the table stays bounded (the scheduler prunes old buckets).
//
// Sources, each folded into a transaction that is written anyway (no extra commit):
//   - KMS calls, in the audit group commit (kms-audit.ts): every call that succeeded,
//     and every call refused only because its version is disabled or scheduled for
//     destruction (CP_ERR_VERSION_DISABLED, checked after the caller's grant): a
//     service entitled to the version still needs it, e.g. data sealed under it is
//     still read — which is what the destroy guard must notice, as a scheduled
//     version can serve no call. A rewrap uses both the version it opens and the
//     one it seals under.
//   - Agents' usage reports (agent-endpoint/usage.ts): a tunnel's conn.open counts as a
//     use of its pair-key version; its conn.close moves the version's last use to the
//     close time without counting another use (the tunnel was live until then).
//
// Times from agents are their clocks: a time ahead of ours is taken as now, so an
// agent cannot push a version's last use into the future.
import type { UsageEvent } from '../../../protocol/src/index.js'
import { DAY } from '../../../platform/src/index.js'
import type { KeyUsageRecord } from '../store/records.js'
import type { Store, StoreReader } from '../store/store.js'
import type { KmsCallRecord } from './kms-audit.js'

/** Buckets kept: the 30-day sum plus margin; older ones are pruned. */
export const USAGE_RETENTION_DAYS = 35

export const dayOf = (ms: number): number => Math.floor(ms / DAY)

/** A version's use as `key show` prints it. */
export interface VersionUsage {
  readonly lastUsedAt: number | null
  readonly uses30d: number
  /** Services that used it in the last 30 days, sorted. */
  readonly services: readonly string[]
}

const NEVER: VersionUsage = { lastUsedAt: null, uses30d: 0, services: [] }

/** Sums rows that share (key, version, service, day), so one group writes each bucket once. */
function merge(rows: readonly KeyUsageRecord[]): KeyUsageRecord[] {
  const out = new Map<string, KeyUsageRecord>()
  for (const r of rows) {
    const id = `${r.keyName}\0${r.version}\0${r.service}\0${r.day}`
    const had = out.get(id)
    out.set(id, had === undefined ? r : { ...had, uses: had.uses + r.uses, lastUsedAt: Math.max(had.lastUsedAt, r.lastUsedAt) })
  }
  return [...out.values()]
}

const NEEDED_BUT_REFUSED = 'CP_ERR_VERSION_DISABLED'

/** The usage buckets of a group of KMS calls made at `now`. */
export function usageOfCalls(calls: readonly KmsCallRecord[], now: number): KeyUsageRecord[] {
  const rows: KeyUsageRecord[] = []
  const day = dayOf(now)
  for (const c of calls) {
    const needed = c.outcome === 'ok' || c.code === NEEDED_BUT_REFUSED
    if (!needed || c.keyVersion === null || !c.target.startsWith('key:')) continue
    const keyName = c.target.slice(4)
    for (const version of c.toVersion !== undefined && c.toVersion !== c.keyVersion ? [c.keyVersion, c.toVersion] : [c.keyVersion]) {
      rows.push({ keyName, version, service: c.service, day, uses: 1, lastUsedAt: now })
    }
  }
  return merge(rows)
}

/** The usage buckets of one agent's usage batch, received at `now`; only pairs of the agent's own service count. */
export function usageOfEvents(service: string, events: readonly UsageEvent[], now: number): KeyUsageRecord[] {
  const rows: KeyUsageRecord[] = []
  for (const e of events) {
    if ((e.kind !== 'conn.open' && e.kind !== 'conn.close') || e.pairId === undefined || e.keyVersion === undefined) continue
    if (!e.pairId.split(':').includes(service)) continue
    const at = Math.min(e.at, now)
    rows.push({ keyName: e.pairId, version: e.keyVersion, service, day: dayOf(at), uses: e.kind === 'conn.open' ? 1 : 0, lastUsedAt: at })
  }
  return merge(rows)
}

/** Per version of `keyName`: last use, uses and services over the 30 days before `now`. */
export async function usageOfKey(r: StoreReader, keyName: string, now: number): Promise<Map<number, VersionUsage>> {
  const from = dayOf(now - 30 * DAY)
  const byVersion = new Map<number, { lastUsedAt: number; uses30d: number; services: Set<string> }>()
  for (const u of await r.listKeyUsage(keyName, from)) {
    let v = byVersion.get(u.version)
    if (v === undefined) byVersion.set(u.version, (v = { lastUsedAt: 0, uses30d: 0, services: new Set() }))
    v.lastUsedAt = Math.max(v.lastUsedAt, u.lastUsedAt)
    v.uses30d += u.uses
    v.services.add(u.service)
  }
  return new Map([...byVersion].map(([version, v]) => [version, { lastUsedAt: v.lastUsedAt, uses30d: v.uses30d, services: [...v.services].sort() }]))
}

export function usageOfVersion(usage: ReadonlyMap<number, VersionUsage>, version: number): VersionUsage {
  return usage.get(version) ?? NEVER
}

/** The latest use of a version at or after `since`, with who used it then; null when none. */
export async function lastUseSince(r: StoreReader, keyName: string, version: number, since: number): Promise<{ at: number; services: string[] } | null> {
  const rows = (await r.listKeyUsage(keyName, dayOf(since))).filter((u) => u.version === version && u.lastUsedAt >= since)
  if (rows.length === 0) return null
  const at = Math.max(...rows.map((u) => u.lastUsedAt))
  return { at, services: [...new Set(rows.map((u) => u.service))].sort() }
}

/**
 * Housekeeping, not a decision (so not audited): removes buckets older than the
 * retention or the guard window, whichever is longer. Returns how many.
 */
export function pruneKeyUsage(store: Store, now: number, guardMs: number): Promise<number> {
  const keepDays = Math.max(USAGE_RETENTION_DAYS, Math.ceil(guardMs / DAY) + 1)
  return store.transaction((tx) => tx.deleteKeyUsageBefore(dayOf(now) - keepDays))
}
