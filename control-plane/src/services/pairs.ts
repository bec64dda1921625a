// Pair keys: one `pair` key per unordered pair of services that has at least one
// intention between them, named by its pair id `lo:hi` (pairServices = [lo, hi]).
//
// Contracts (every function here runs inside the caller's transaction and never
// audits or publishes itself — the caller's perform() does both, after commit):
// - a live pair key has an `enabled` primary with sealed material; older versions
//   are `decrypt-only` (accept, never initiate) until their notAfter, then destroyed;
// - a dead pair key (no intention in force allows its services any more) keeps only
//   metadata: every version destroyed, no scheduled rotation. Allowing an intention
//   again rotates it to a fresh version rather than reusing a number.
import { isServiceName } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { createKey, dueForRotation, expirePairVersion, rotate } from '../key-lifecycle.js'
import { sealNewMaterial } from './material.js'
import { saveVersion } from './version-save.js'
import { activeIntentions, mayConnect } from '../policy.js'
import type { KeyRecord, KeyVersionRecord, VersionState } from '../store/records.js'
import type { StoreReader, StoreTx } from '../store/store.js'

/** A pair key as operators see it: metadata only, never material. */
export interface PairView {
  readonly pairId: string
  readonly services: readonly [string, string]
  readonly primaryVersion: number
  /** `destroyed`: no intention calls for it any more and its material is gone (metadata only). */
  readonly state: 'live' | 'destroyed'
  /** `lo->hi` and `hi->lo`: whether the intentions in force allow that direction. */
  readonly allows: Readonly<Record<string, boolean>>
  readonly versions: readonly { readonly version: number; readonly state: VersionState; readonly notAfter: number | null }[]
}

/** Validates a service name with the control plane's own error code (the API's 400). */
export function checkService(name: unknown, what = 'service'): string {
  if (!isServiceName(name)) throw cpError('CP_ERR_SERVICE_NAME', `${what} name is not valid`)
  return name
}

/** Sorted services and the pair id of two distinct, valid service names. */
export function pairOf(a: unknown, b: unknown): { pairId: string; lo: string; hi: string } {
  const x = checkService(a)
  const y = checkService(b)
  if (x === y) throw cpError('CP_ERR_SAME_SERVICE', `${x} and ${x}`)
  const [lo, hi] = x < y ? [x, y] : [y, x]
  return { pairId: `${lo}:${hi}`, lo, hi }
}

/** A pair key is live while its primary still has material. */
export async function isLive(r: StoreReader, key: KeyRecord): Promise<boolean> {
  const primary = await r.getKeyVersion(key.name, key.primaryVersion)
  return primary !== null && primary.state !== 'destroyed'
}

export type EnsureOutcome = 'created' | 'revived' | 'existing'

/**
 * Makes sure the pair of `a` and `b` has a live key: creates v1, revives a dead key with a
 * new version, or leaves a live one alone. Returns the primary version afterwards.
 */
export async function ensurePairKey(ctx: CpContext, tx: StoreTx, a: string, b: string, now: number): Promise<{ pairId: string; version: number; outcome: EnsureOutcome }> {
  const { pairId, lo, hi } = pairOf(a, b)
  const key = await tx.findPairKey(lo, hi)
  if (key === null) {
    const made = createKey({ name: pairId, type: 'pair' }, now, ctx.settings.lifecycle)
    await tx.insertKey({ ...made.key, pairServices: [lo, hi] })
    await tx.insertKeyVersion({ ...made.version, sealedMaterial: sealed(ctx, pairId, 1) })
    return { pairId, version: 1, outcome: 'created' }
  }
  if (await isLive(tx, key)) return { pairId, version: key.primaryVersion, outcome: 'existing' }
  const version = await rotateKey(ctx, tx, key, now, 0)
  return { pairId, version: version.version, outcome: 'revived' }
}

export interface PairRotation {
  readonly pairId: string
  readonly services: readonly [string, string]
  readonly version: number
  readonly previousVersion: number
  readonly previousNotAfter: number | null
}

/**
 * Rotates one live pair key: v(N+1) becomes the enabled primary, vN becomes decrypt-only
 * until now + graceMs. Older versions still in their grace are cut to the same end, so a
 * rotation with grace 0 (an agent was revoked) leaves no version the revoked agent held;
 * versions whose grace has already ended, by the wall clock and by elapsed time
 * (../elapsed-ledger.ts), are destroyed in the same transaction; the scheduler destroys
 * one whose wall time came first once its elapsed time has too.
 */
export async function rotatePairKey(ctx: CpContext, tx: StoreTx, key: KeyRecord, now: number, graceMs: number): Promise<PairRotation> {
  if (key.type !== 'pair' || key.pairServices === null) throw cpError('CP_ERR_INTERNAL', `${key.name} is not a pair key`)
  if (!(await isLive(tx, key))) throw cpError('CP_ERR_PAIR_NOT_FOUND', `${key.name} has no live version`)
  const created = await rotateKey(ctx, tx, key, now, graceMs)
  const previous = await tx.getKeyVersion(key.name, key.primaryVersion)
  return {
    pairId: key.name,
    services: key.pairServices,
    version: created.version,
    previousVersion: key.primaryVersion,
    previousNotAfter: previous?.notAfter ?? null,
  }
}

/** Shared by rotation and revival: new primary with fresh sealed material, old versions capped. */
async function rotateKey(ctx: CpContext, tx: StoreTx, key: KeyRecord, now: number, graceMs: number): Promise<KeyVersionRecord> {
  const primary = await tx.getKeyVersion(key.name, key.primaryVersion)
  if (primary === null) throw cpError('CP_ERR_INTERNAL', `${key.name} v${key.primaryVersion} is missing`)
  const r = rotate(key, primary, now, { graceMs, policy: ctx.settings.lifecycle })
  const version: KeyVersionRecord = { ...r.created, sealedMaterial: sealed(ctx, key.name, r.created.version) }
  await tx.updateKey(key.name, { primaryVersion: r.key.primaryVersion, nextRotationAt: r.key.nextRotationAt })
  await tx.insertKeyVersion(version)
  const end = now + graceMs
  for (const v of await tx.listKeyVersions({ keyName: key.name })) {
    if (v.version === version.version || v.state === 'destroyed') continue
    // The former primary takes its demotion from rotate(); the others keep theirs, capped.
    const base = v.version === primary.version ? r.previous : v
    const capped: KeyVersionRecord = base.notAfter === null || base.notAfter > end ? { ...base, notAfter: end } : base
    // Ended now by this rotation (grace 0), or earlier by its own grace: then only once observed.
    const ended = capped.notAfter !== null && capped.notAfter <= now && (graceMs === 0 || (await ctx.elapsed.covers(tx, v.notAfterObserved)))
    await saveVersion(ctx, tx, v, ended ? expirePairVersion(capped, now) : capped)
  }
  return version
}

/**
 * Rotates every live pair key that has `service` on either side, inside the caller's
 * transaction (the caller audits, and publishes a 'services' event for both sides of
 * each pair after commit). Returns the pair ids rotated, in name order.
 */
export async function rotatePairsOfService(ctx: CpContext, tx: StoreTx, service: string, now: number, opts: { graceMs: number; reason: string }): Promise<string[]> {
  checkService(service)
  const rotated: string[] = []
  for (const key of await tx.listKeys({ type: 'pair', service })) {
    if (!(await isLive(tx, key))) continue
    await rotatePairKey(ctx, tx, key, now, opts.graceMs)
    rotated.push(key.name)
  }
  return rotated
}

/** Rotates a pair key whose scheduled rotation is due; null when it no longer is (another pass did it). */
export async function rotateIfDue(ctx: CpContext, tx: StoreTx, keyName: string, now: number): Promise<PairRotation | null> {
  const key = await tx.getKey(keyName)
  if (key === null || key.type !== 'pair' || !dueForRotation(key, now) || !(await isLive(tx, key))) return null
  return rotatePairKey(ctx, tx, key, now, ctx.settings.lifecycle.pairGraceMs)
}

/** Destroys one pair version past its grace, by the wall clock and by elapsed time; null when it is already gone or not due. */
export async function expireIfDue(ctx: CpContext, tx: StoreTx, keyName: string, version: number, now: number): Promise<{ pairId: string; services: readonly [string, string]; version: number } | null> {
  const key = await tx.getKey(keyName)
  const v = await tx.getKeyVersion(keyName, version)
  if (key === null || key.type !== 'pair' || key.pairServices === null || v === null) return null
  if (v.state === 'destroyed' || v.notAfter === null || v.notAfter > now || !(await ctx.elapsed.covers(tx, v.notAfterObserved))) return null
  await saveVersion(ctx, tx, v, expirePairVersion(v, now))
  return { pairId: key.name, services: key.pairServices, version }
}

/**
 * The last intention between two services is gone: every remaining version is destroyed
 * at once (material erased, metadata kept) and scheduled rotation stops. Returns the
 * versions destroyed.
 */
export async function retirePairKey(ctx: CpContext, tx: StoreTx, key: KeyRecord, now: number): Promise<number[]> {
  const destroyed: number[] = []
  for (const v of await tx.listKeyVersions({ keyName: key.name })) {
    if (v.state === 'destroyed') continue
    const gone: KeyVersionRecord = { ...v, state: 'destroyed', sealedMaterial: null, stateChangedAt: now, destroyAt: now, previousState: null, notAfter: v.notAfter === null || v.notAfter > now ? now : v.notAfter }
    await saveVersion(ctx, tx, v, gone)
    destroyed.push(v.version)
  }
  await tx.updateKey(key.name, { nextRotationAt: null })
  return destroyed
}

/** Fresh material, sealed under the version's identity; the clear bytes are wiped inside material.ts. */
function sealed(ctx: CpContext, keyName: string, version: number): Uint8Array {
  return sealNewMaterial(ctx, keyName, version, 'pair')
}

/** Every pair key with its state, directions and versions, for `GET /v1/pairs`. */
export async function listPairs(r: StoreReader, now: number, service?: string): Promise<PairView[]> {
  const keys = await r.listKeys({ type: 'pair', ...(service !== undefined ? { service } : {}) })
  const rules = activeIntentions(await r.listIntentions(), now)
  const out: PairView[] = []
  for (const key of keys) {
    if (key.pairServices === null) continue
    const [lo, hi] = key.pairServices
    const versions = await r.listKeyVersions({ keyName: key.name })
    out.push({
      pairId: key.name,
      services: [lo, hi],
      primaryVersion: key.primaryVersion,
      state: versions.some((v) => v.state !== 'destroyed') ? 'live' : 'destroyed',
      allows: {
        [`${lo}->${hi}`]: mayConnect(rules, lo, hi).allow,
        [`${hi}->${lo}`]: mayConnect(rules, hi, lo).allow,
      },
      versions: versions.map((v) => ({ version: v.version, state: v.state, notAfter: v.notAfter })),
    })
  }
  return out
}
