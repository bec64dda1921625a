// The key service: create, list, rotate, reconfigure and move versions of keys through
// their lifecycle, and manage per-key service grants. Every change runs in perform(),
// so the change and its audit entry commit together; the decisions themselves are the
// pure functions of key-lifecycle.ts. Views carry metadata only: material is sealed
// when made (services/material.ts) and never leaves this module except as a public key.
//
// Pair keys (type `pair`, named by their pair id `a:b`) belong to intentions: they are
// listed and shown here, and their versions may be disabled in an emergency, but they
// are neither created, rotated, reconfigured nor granted through this service.
import { isKeyName, isKeyVersion, isPairId, isServiceName, formatPublicKey } from '../../../protocol/src/index.js'
import type { Actor, CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { ChangeEvent } from '../events.js'
import * as lifecycle from '../key-lifecycle.js'
import { perform } from '../operation.js'
import { RIGHTS, type Right } from '../policy.js'
import type { KeyRecord, KeyType, KeyVersionRecord, VersionState } from '../store/records.js'
import type { StoreReader, StoreTx } from '../store/store.js'
import { lastUseSince, usageOfKey, usageOfVersion, type VersionUsage } from './key-usage.js'
import { PUBLIC_KEY_TYPES, sealNewMaterial, signingPublicPem, x25519Public } from './material.js'
import { saveVersion } from './version-save.js'

/** What a view shows of a version: everything but the sealed material and the undo state; `key show` adds its usage. */
export type VersionView = Pick<KeyVersionRecord, 'version' | 'state' | 'createdAt' | 'stateChangedAt' | 'destroyAt' | 'notAfter' | 'origin'> & Partial<VersionUsage>
export type KeyView = Omit<KeyRecord, 'pairServices'> & { readonly pairServices?: readonly [string, string]; readonly versions: VersionView[] }

export interface RotationView { readonly name: string; readonly version: number; readonly previousVersion: number }
export interface GrantView { readonly service: string; readonly rights: readonly Right[] }
/** States an operator may ask for; `destroyed` is reached only through destroyDueVersions. */
export type RequestedState = Exclude<VersionState, 'destroyed'>
export interface KeyPatchInput {
  readonly rotationPeriodMs?: number
  readonly noRotation?: boolean
  readonly minDecryptVersion?: number
}
/** Scheduling the destruction of a version used within the guard window needs `force` with a reason (audited). */
export interface DestroyGuardInput {
  readonly force?: boolean
  readonly reason?: string
}

const SCHEDULER: Actor = { kind: 'system', task: 'scheduler' }
const CREATABLE: readonly KeyType[] = ['aead', 'x25519', 'ed25519', 'ecdsa-p256', 'hmac-sha256']

// ---- names, look-ups and views ---------------------------------------------------

/** The audit target. A name that breaks the rules is not echoed: it may be a pasted secret. */
const target = (name: string): string => (isKeyName(name) || isPairId(name) ? `key:${name}` : 'key:(invalid name)')

function checkNewName(name: string): void {
  if (!isKeyName(name)) {
    throw cpError('CP_ERR_KEY_NAME', 'key name must be 1-63 of a-z, 0-9, ".", "_" and "-", starting with a letter or digit (no ":")')
  }
}

async function mustGetKey(r: StoreReader, name: string): Promise<KeyRecord> {
  if (!isKeyName(name) && !isPairId(name)) throw cpError('CP_ERR_KEY_NAME', 'not a key name or a pair id')
  const key = await r.getKey(name)
  if (key === null) throw cpError('CP_ERR_KEY_NOT_FOUND', name)
  return key
}

async function mustGetVersion(r: StoreReader, key: KeyRecord, version: number): Promise<KeyVersionRecord> {
  if (!isKeyVersion(version)) throw cpError('CP_ERR_INVALID_FIELD', 'version must be a whole number from 1')
  const v = await r.getKeyVersion(key.name, version)
  if (v === null) throw cpError('CP_ERR_KEY_VERSION_NOT_FOUND', `${key.name} v${version}`)
  return v
}

function notForPair(key: KeyRecord, what: string, hint: string): void {
  if (key.type === 'pair') throw cpError('CP_ERR_KEY_TYPE', `${key.name} is a pair key: ${what}; ${hint}`)
}

export function versionView(v: KeyVersionRecord): VersionView {
  return {
    version: v.version, state: v.state, createdAt: v.createdAt, stateChangedAt: v.stateChangedAt, destroyAt: v.destroyAt, notAfter: v.notAfter,
    ...(v.origin ? { origin: v.origin } : {}),
  }
}

// Built field by field, never by spreading a record, so a new column cannot leak into an answer.
export function keyView(key: KeyRecord, versions: readonly KeyVersionRecord[]): KeyView {
  return {
    name: key.name,
    type: key.type,
    primaryVersion: key.primaryVersion,
    minDecryptVersion: key.minDecryptVersion,
    rotationPeriodMs: key.rotationPeriodMs,
    nextRotationAt: key.nextRotationAt,
    createdAt: key.createdAt,
    ...(key.pairServices ? { pairServices: key.pairServices } : {}),
    versions: versions.filter((v) => v.keyName === key.name).map(versionView),
  }
}

async function viewOf(r: StoreReader, name: string): Promise<KeyView> {
  const key = await mustGetKey(r, name)
  return keyView(key, await r.listKeyVersions({ keyName: name }))
}

/** A pair key's agents must hear of any change to its versions. */
function pairEvents(key: KeyRecord, reason: string): ChangeEvent[] {
  return key.pairServices ? [{ kind: 'services', services: [...key.pairServices], reason }] : []
}

// ---- reads -------------------------------------------------------------------------

export async function listKeys(ctx: CpContext, filter: { type?: KeyType } = {}): Promise<KeyView[]> {
  return ctx.store.read(async (r) => {
    const keys = await r.listKeys(filter.type ? { type: filter.type } : {})
    const versions = await r.listKeyVersions()
    return keys.map((k) => keyView(k, versions))
  })
}

/** One key with each version's usage over the last 30 days (services/key-usage.ts). */
export function getKey(ctx: CpContext, name: string): Promise<KeyView> {
  return ctx.store.read(async (r) => {
    const view = await viewOf(r, name)
    const usage = await usageOfKey(r, view.name, ctx.clock.now())
    return { ...view, versions: view.versions.map((v) => ({ ...v, ...usageOfVersion(usage, v.version) })) }
  })
}

export async function listGrants(ctx: CpContext, name: string): Promise<{ name: string; grants: GrantView[] }> {
  return ctx.store.read(async (r) => {
    const key = await mustGetKey(r, name)
    const grants = await r.listGrants({ keyName: key.name })
    return { name: key.name, grants: grants.map((g) => ({ service: g.service, rights: [...g.rights] })) }
  })
}

/**
 * The public half of an x25519, ed25519 or ecdsa-p256 version (the primary unless
 * `version` is given): `x25519:…` text, or PEM for the signing keys.
 */
export async function publicKey(ctx: CpContext, name: string, version?: number): Promise<{ name: string; version: number; publicKey: string }> {
  return ctx.store.read(async (r) => {
    const key = await mustGetKey(r, name)
    if (!PUBLIC_KEY_TYPES.includes(key.type)) throw cpError('CP_ERR_KEY_TYPE', `${key.name} is an ${key.type} key; only x25519, ed25519 and ecdsa-p256 keys have a public key`)
    const v = await mustGetVersion(r, key, version ?? key.primaryVersion)
    const text = key.type === 'x25519' ? formatPublicKey(x25519Public(ctx, v)) : signingPublicPem(ctx, key.type as 'ed25519' | 'ecdsa-p256', v)
    return { name: key.name, version: v.version, publicKey: text }
  })
}

// ---- key changes -------------------------------------------------------------------

export function createKey(
  ctx: CpContext,
  actor: Actor,
  input: { name: string; type: KeyType; rotationPeriodMs?: number },
): Promise<KeyView> {
  return perform(ctx, {
    actor,
    action: 'key.create',
    target: target(input.name),
    run: async (tx) => {
      checkNewName(input.name)
      if (!CREATABLE.includes(input.type)) {
        throw cpError('CP_ERR_KEY_TYPE', `pair keys are made by intentions (keymesh intention allow SRC DST); create ${CREATABLE.join(', ')} keys here`)
      }
      if ((await tx.getKey(input.name)) !== null) throw cpError('CP_ERR_KEY_EXISTS', input.name)
      const now = ctx.clock.now()
      const made = lifecycle.createKey(
        { name: input.name, type: input.type, ...(input.rotationPeriodMs !== undefined ? { rotationPeriodMs: input.rotationPeriodMs } : {}) },
        now,
        ctx.settings.lifecycle,
      )
      await tx.insertKey({ ...made.key, pairServices: null })
      await tx.insertKeyVersion({ ...made.version, sealedMaterial: sealNewMaterial(ctx, input.name, 1, input.type) })
      return {
        result: await viewOf(tx, input.name),
        reason: `created ${input.type} key`,
        details: { keyName: input.name, keyType: input.type, rotationPeriodMs: made.key.rotationPeriodMs },
      }
    },
  })
}

/** Makes version N+1 primary with fresh sealed material, inside the caller's transaction. */
async function rotateIn(ctx: CpContext, tx: StoreTx, key: KeyRecord, now: number): Promise<RotationView> {
  const primary = await mustGetVersion(tx, key, key.primaryVersion)
  const r = lifecycle.rotate(key, primary, now, { policy: ctx.settings.lifecycle })
  await tx.updateKey(key.name, { primaryVersion: r.key.primaryVersion, nextRotationAt: r.key.nextRotationAt })
  await tx.insertKeyVersion({ ...r.created, sealedMaterial: sealNewMaterial(ctx, key.name, r.created.version, key.type) })
  return { name: key.name, version: r.created.version, previousVersion: primary.version }
}

export function rotateKey(ctx: CpContext, actor: Actor, name: string): Promise<RotationView> {
  return perform(ctx, {
    actor,
    action: 'key.rotate',
    target: target(name),
    run: async (tx) => {
      const key = await mustGetKey(tx, name)
      notForPair(key, 'it rotates with its pair', `use keymesh pair rotate ${key.pairServices?.join(' ') ?? 'A B'}`)
      const result = await rotateIn(ctx, tx, key, ctx.clock.now())
      return { result, reason: `rotated to v${result.version}`, details: { keyName: name, keyVersion: result.version, previousVersion: result.previousVersion } }
    },
  })
}

export function updateKey(ctx: CpContext, actor: Actor, name: string, patch: KeyPatchInput): Promise<KeyView> {
  return perform(ctx, {
    actor,
    action: 'key.update',
    target: target(name),
    run: async (tx) => {
      const { rotationPeriodMs, noRotation, minDecryptVersion } = patch
      if (rotationPeriodMs === undefined && noRotation === undefined && minDecryptVersion === undefined) {
        throw cpError('CP_ERR_INVALID_FIELD', 'nothing to change: give rotationPeriodMs, noRotation or minDecryptVersion')
      }
      if (noRotation === false) throw cpError('CP_ERR_INVALID_FIELD', 'noRotation, when given, must be true')
      if (noRotation && rotationPeriodMs !== undefined) throw cpError('CP_ERR_INVALID_FIELD', 'give rotationPeriodMs or noRotation, not both')
      let key = await mustGetKey(tx, name)
      notForPair(key, 'its rotation follows the pair policy', 'see keymesh pair')
      const now = ctx.clock.now()
      if (noRotation) key = lifecycle.setRotationPeriod(key, null, now, ctx.settings.lifecycle)
      if (rotationPeriodMs !== undefined) key = lifecycle.setRotationPeriod(key, rotationPeriodMs, now, ctx.settings.lifecycle)
      if (minDecryptVersion !== undefined) key = lifecycle.setMinDecryptVersion(key, minDecryptVersion)
      await tx.updateKey(name, { rotationPeriodMs: key.rotationPeriodMs, nextRotationAt: key.nextRotationAt, minDecryptVersion: key.minDecryptVersion })
      return {
        result: await viewOf(tx, name),
        reason: 'updated key settings',
        details: { keyName: name, rotationPeriodMs: key.rotationPeriodMs, minDecryptVersion: key.minDecryptVersion },
      }
    },
  })
}

// ---- version lifecycle ---------------------------------------------------------------

export function setVersionState(
  ctx: CpContext,
  actor: Actor,
  name: string,
  version: number,
  state: RequestedState,
  windowMs?: number,
  guard: DestroyGuardInput = {},
): Promise<VersionView> {
  return perform(ctx, {
    actor,
    action: 'key.state',
    target: target(name),
    run: async (tx) => {
      if (windowMs !== undefined && state !== 'scheduled-destruction') {
        throw cpError('CP_ERR_INVALID_FIELD', 'windowMs applies only to scheduled-destruction')
      }
      const forced = await checkDestroyGuard(ctx, tx, name, version, state, guard)
      const key = await mustGetKey(tx, name)
      const v = await mustGetVersion(tx, key, version)
      const next = lifecycle.transition(key, v, state, ctx.clock.now(), {
        policy: ctx.settings.lifecycle,
        ...(windowMs !== undefined ? { windowMs } : {}),
      })
      await saveVersion(ctx, tx, v, next)
      return {
        result: versionView(next),
        reason: `${v.state} → ${state}${forced ? ` (forced: ${forced})` : ''}`,
        details: { keyName: key.name, keyVersion: v.version, from: v.state, to: state, destroyAt: next.destroyAt, ...(forced ? { forced: true, forceReason: forced } : {}) },
        events: pairEvents(key, `${key.name} v${v.version} is now ${state}`),
      }
    },
  })
}

const MAX_FORCE_REASON = 200

/**
 * The destroy guard: scheduling the destruction of a version used within
 * settings.destroyGuardMs is refused with CP_ERR_KEY_IN_USE unless forced with a
 * reason. Returns the reason of a forced schedule (for the audit entry), else null.
 */
async function checkDestroyGuard(ctx: CpContext, tx: StoreTx, name: string, version: number, state: RequestedState, guard: DestroyGuardInput): Promise<string | null> {
  const { force, reason } = guard
  if (reason !== undefined && (reason.trim() === '' || reason.length > MAX_FORCE_REASON)) {
    throw cpError('CP_ERR_INVALID_FIELD', `reason must be 1-${MAX_FORCE_REASON} characters`)
  }
  if (force && reason === undefined) throw cpError('CP_ERR_INVALID_FIELD', 'force needs a reason (--reason "…"), which is audited')
  if (state !== 'scheduled-destruction') {
    if (force || reason !== undefined) throw cpError('CP_ERR_INVALID_FIELD', 'force and reason apply only to scheduled-destruction')
    return null
  }
  if (force) return reason ?? null
  const now = ctx.clock.now()
  // "Within the window": a use exactly one window ago no longer counts.
  const used = await lastUseSince(tx, name, version, now - ctx.settings.destroyGuardMs + 1)
  if (used === null) return null
  throw cpError(
    'CP_ERR_KEY_IN_USE',
    `${name} v${version} was last used at ${new Date(used.at).toISOString()} by ${used.services.join(', ')}; ` +
      `to destroy it anyway: --force --reason "…"`,
  )
}

/** Cancels a scheduled destruction: the version returns to the state it had before. */
export function cancelDestruction(ctx: CpContext, actor: Actor, name: string, version: number): Promise<VersionView> {
  return perform(ctx, {
    actor,
    action: 'key.state',
    target: target(name),
    run: async (tx) => {
      const key = await mustGetKey(tx, name)
      const v = await mustGetVersion(tx, key, version)
      if (v.state !== 'scheduled-destruction') {
        throw cpError('CP_ERR_KEY_STATE', `${key.name} v${v.version} is ${v.state}, not scheduled for destruction`)
      }
      // Until its elapsed time has passed too, a destruction whose wall time came early (a clock stepped ahead) is not due, and can be cancelled.
      const due = v.destroyAt !== null && ctx.clock.now() >= v.destroyAt && (await ctx.elapsed.covers(tx, v.destroyAtObserved))
      const next = lifecycle.undo(key, v, ctx.clock.now(), { due })
      await saveVersion(ctx, tx, v, next)
      return {
        result: versionView(next),
        reason: `destruction cancelled; back to ${next.state}`,
        details: { keyName: key.name, keyVersion: v.version, from: v.state, to: next.state },
        events: pairEvents(key, `${key.name} v${v.version} is now ${next.state}`),
      }
    },
  })
}

// ---- grants --------------------------------------------------------------------------

const sortRights = (rights: Iterable<Right>): Right[] => RIGHTS.filter((r) => new Set(rights).has(r))

function checkGrantInput(service: string, rights: readonly string[]): Right[] {
  if (!isServiceName(service)) throw cpError('CP_ERR_GRANT', 'service name must be 1-63 of a-z, 0-9 and "-", not starting or ending with "-"')
  if (rights.length === 0) throw cpError('CP_ERR_GRANT', 'name at least one right')
  const unknown = rights.filter((r) => !(RIGHTS as readonly string[]).includes(r))
  if (unknown.length > 0) throw cpError('CP_ERR_GRANT', `rights are ${RIGHTS.join(', ')}`)
  return sortRights(rights as Right[])
}

/** Adds (`add`) or removes rights of a service on a key; returns the service's rights afterwards. */
export function changeGrant(
  ctx: CpContext,
  actor: Actor,
  name: string,
  input: { service: string; rights: readonly string[] },
  add: boolean,
): Promise<GrantView & { name: string }> {
  return perform(ctx, {
    actor,
    action: add ? 'key.grant' : 'key.revoke-grant',
    target: target(name),
    run: async (tx) => {
      const asked = checkGrantInput(input.service, input.rights)
      const key = await mustGetKey(tx, name)
      notForPair(key, 'only the agents of its two services use it', 'grants apply to every other type of key')
      const held = (await tx.getGrant(key.name, input.service))?.rights ?? []
      if (!add && !asked.some((r) => held.includes(r))) {
        throw cpError('CP_ERR_CONFLICT', `service ${input.service} holds none of ${asked.join(', ')} on key ${key.name}`)
      }
      const rights = add ? sortRights([...held, ...asked]) : held.filter((r) => !asked.includes(r))
      if (rights.length > 0) await tx.putGrant({ keyName: key.name, service: input.service, rights })
      else await tx.deleteGrant(key.name, input.service)
      return {
        result: { name: key.name, service: input.service, rights },
        reason: `${add ? 'granted' : 'revoked'} ${asked.join(', ')}`,
        details: { keyName: key.name, service: input.service, rights: [...asked], held: rights },
      }
    },
  })
}

// ---- scheduler tasks -------------------------------------------------------------------

/**
 * Rotates every key but pair keys whose nextRotationAt ≤ now, one audited transaction
 * per key, as system:scheduler. Pair keys rotate with their pair. A failure is audited
 * and logged and does not stop the other keys.
 */
export async function rotateDueKeys(ctx: CpContext, now: number): Promise<RotationView[]> {
  const due = await ctx.store.read((r) => r.listKeys({ rotationDueBy: now }))
  const done: RotationView[] = []
  for (const { name } of due.filter((k) => k.type !== 'pair')) {
    try {
      done.push(await perform(ctx, {
        actor: SCHEDULER,
        action: 'key.rotate',
        target: target(name),
        run: async (tx) => {
          // Read again inside the transaction: a manual rotation may have come first.
          const key = await mustGetKey(tx, name)
          if (!lifecycle.dueForRotation(key, now)) throw cpError('CP_ERR_CONFLICT', `${name} is no longer due for rotation`)
          const result = await rotateIn(ctx, tx, key, now)
          return { result, reason: `scheduled rotation to v${result.version}`, details: { keyName: name, keyVersion: result.version, previousVersion: result.previousVersion } }
        },
      }))
    } catch (err) {
      ctx.logger.error({ err, keyName: name }, 'scheduled rotation failed')
    }
  }
  return done
}

/**
 * Destroys every version whose scheduled destruction is due: its sealed material is
 * erased (set to null) and its metadata kept, one audited transaction per version, as
 * system:scheduler. A version whose destruction was cancelled meanwhile is refused
 * (and audited) rather than destroyed.
 *
 * A version used since its destruction was scheduled (KMS calls, tunnel reports:
 * key-usage.ts) is not destroyed but postponed (`key.destroy-postponed`): its
 * destroyAt moves to now + the delay it was scheduled with, and stateChangedAt to now,
 * so the next check looks for uses after the postponement. The delay rather than the
 * guard window: the operator chose it, and a version still in use is postponed again.
 */
export async function destroyDueVersions(ctx: CpContext, now: number): Promise<{ name: string; version: number }[]> {
  const wallDue = await ctx.store.read((r) => r.listKeyVersions({ states: ['scheduled-destruction'], destroyDueBy: now }))
  const due = await ctx.elapsed.due(wallDue, (v) => ({ what: `key:${v.keyName} v${v.version} destruction`, deadline: v.destroyAt as number, required: v.destroyAtObserved }))
  const done: { name: string; version: number }[] = []
  for (const { keyName, version, stateChangedAt } of due) {
    try {
      const used = await ctx.store.read((r) => lastUseSince(r, keyName, version, stateChangedAt))
      if (used !== null) {
        await postponeDestruction(ctx, keyName, version, now)
        continue
      }
      await perform(ctx, {
        actor: SCHEDULER,
        action: 'key.destroy',
        target: target(keyName),
        run: async (tx) => {
          const key = await mustGetKey(tx, keyName)
          const v = await mustGetVersion(tx, key, version)
          if ((await lastUseSince(tx, keyName, version, v.stateChangedAt)) !== null) {
            throw cpError('CP_ERR_KEY_IN_USE', `${keyName} v${version} was used meanwhile; the next pass postpones its destruction`)
          }
          if (!(await ctx.elapsed.covers(tx, v.destroyAtObserved))) throw cpError('CP_ERR_CONFLICT', `${keyName} v${version} changed meanwhile; not due by elapsed time`)
          const next = lifecycle.transition(key, v, 'destroyed', now, { policy: ctx.settings.lifecycle })
          await saveVersion(ctx, tx, v, { ...next, sealedMaterial: null })
          return {
            result: undefined,
            reason: `v${version} destroyed; material erased`,
            details: { keyName, keyVersion: version },
            events: pairEvents(key, `${keyName} v${version} destroyed`),
          }
        },
      })
      done.push({ name: keyName, version })
    } catch (err) {
      ctx.logger.error({ err, keyName, keyVersion: version }, 'scheduled destruction failed')
    }
  }
  return done
}

function postponeDestruction(ctx: CpContext, keyName: string, version: number, now: number): Promise<void> {
  return perform(ctx, {
    actor: SCHEDULER,
    action: 'key.destroy-postponed',
    target: target(keyName),
    run: async (tx) => {
      const key = await mustGetKey(tx, keyName)
      const v = await mustGetVersion(tx, key, version)
      const used = await lastUseSince(tx, keyName, version, v.stateChangedAt)
      if (v.state !== 'scheduled-destruction' || v.destroyAt === null || v.destroyAt > now || used === null) {
        throw cpError('CP_ERR_CONFLICT', `${keyName} v${version} changed meanwhile; not postponed`)
      }
      const destroyAt = now + (v.destroyAt - v.stateChangedAt)
      await saveVersion(ctx, tx, v, { ...v, stateChangedAt: now, destroyAt })
      return {
        result: undefined,
        reason: `v${version} used at ${new Date(used.at).toISOString()} by ${used.services.join(', ')} after its destruction was scheduled; postponed`,
        details: { keyName, keyVersion: version, lastUsedAt: used.at, services: used.services, destroyAt },
      }
    },
  })
}
