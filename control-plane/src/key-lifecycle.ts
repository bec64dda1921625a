// The key version state machine, rotation and "may this version be used" checks.
// Pure: records and `now` (ms since the epoch) in, new records out, or a typed
// CP_ERR_* thrown. The store persists what these functions return, in one
// transaction with the audit entry; nothing here reads a clock or touches material.
//
//   from \ to              enabled  decrypt-only  disabled  sched.-destr.  destroyed
//   enabled                   -         yes         yes        yes¹          -
//   decrypt-only             yes         -          yes        yes¹          -
//   disabled                 yes        yes          -         yes¹          -
//   scheduled-destruction     -          -           -          -           yes²
//   destroyed                 -          -           -          -            -
//   ¹ not the primary version; window ≥ minimum (1 h) unless allowShortWindows, default 7 days
//   ² only once destroyAt ≤ now. `undo` leaves `disabled` and `scheduled-destruction`
//     (the latter only while now < destroyAt) for the state recorded before them.
//
// Departures from a strict pipeline, following AWS KMS and Google Cloud KMS: destruction
// may be scheduled from any live state (not only from disabled), and a primary may be
// disabled — an emergency stop for encryption — but never scheduled for destruction.
// Re-entering the current state is refused (409) rather than silently accepted, so a
// caller learns that its request changed nothing.
//
// The record types are the store's (store/records.ts), so the two cannot drift. The
// functions take only the fields they need (LifecycleKey, LifecycleVersion) and are
// generic, so a stored record goes in and comes out with its other fields intact.
import { cpError } from './errors.js'
import type { KeyRecord, KeyType, KeyVersionRecord, VersionState } from './store/records.js'
import { DAY, HOUR } from '../../platform/src/index.js'

export { VERSION_STATES, type KeyType, type VersionState } from './store/records.js'

/**
 * What the lifecycle reads of a key. Invariant: `primaryVersion` is the newest version —
 * rotation is the only way to make a version, and it makes it primary. Versions below
 * `minDecryptVersion` are refused for decryption (CP_ERR_VERSION_BELOW_MIN).
 */
export type LifecycleKey = Omit<KeyRecord, 'pairServices'>

/**
 * What the lifecycle reads of a version. `destroyAt` is kept after destruction as the time
 * it happened; `previousState` is what `undo` returns to; `notAfter` ends a pair version's
 * grace. `sealedMaterial`, when the record carries it, is set to null on destruction.
 */
export type LifecycleVersion = Omit<KeyVersionRecord, 'sealedMaterial'> & { readonly sealedMaterial?: Uint8Array | null }


export interface LifecyclePolicy {
  readonly destroyWindowMs: number
  readonly minDestroyWindowMs: number
  readonly maxDestroyWindowMs: number
  readonly minRotationPeriodMs: number
  readonly pairRotationPeriodMs: number
  readonly pairGraceMs: number
  /** Lifts the minimum window and rotation period, for tests with a fake clock only. */
  readonly allowShortWindows: boolean
}

export const DEFAULT_LIFECYCLE_POLICY: LifecyclePolicy = Object.freeze({
  destroyWindowMs: 7 * DAY, // AWS KMS's minimum and Google Cloud KMS's default
  minDestroyWindowMs: HOUR,
  maxDestroyWindowMs: 120 * DAY, // Google Cloud KMS's maximum
  minRotationPeriodMs: HOUR,
  pairRotationPeriodMs: DAY,
  pairGraceMs: HOUR,
  allowShortWindows: false,
})

export function lifecyclePolicy(overrides: Partial<LifecyclePolicy> = {}): LifecyclePolicy {
  return Object.freeze({ ...DEFAULT_LIFECYCLE_POLICY, ...overrides })
}

/** Allowed explicit transitions; `undo` and pair expiry are separate functions. */
export const TRANSITIONS: Readonly<Record<VersionState, readonly VersionState[]>> = Object.freeze({
  enabled: ['decrypt-only', 'disabled', 'scheduled-destruction'],
  'decrypt-only': ['enabled', 'disabled', 'scheduled-destruction'],
  disabled: ['enabled', 'decrypt-only', 'scheduled-destruction'],
  'scheduled-destruction': ['destroyed'],
  destroyed: [],
})

const label = (v: LifecycleVersion): string => `${v.keyName} v${v.version}`
const isCount = (n: number): boolean => Number.isSafeInteger(n) && n >= 0

function checkOwner(key: LifecycleKey, v: LifecycleVersion): void {
  if (v.keyName !== key.name) throw cpError('CP_ERR_CONFLICT', `version of ${v.keyName} given with key ${key.name}`)
}

/**
 * Moves one version to `to`. The store must erase the version's material in the same
 * transaction that records `destroyed`; only the metadata survives.
 */
export function transition<V extends LifecycleVersion>(
  key: LifecycleKey,
  v: V,
  to: VersionState,
  now: number,
  options: { windowMs?: number; policy?: LifecyclePolicy } = {},
): V {
  checkOwner(key, v)
  if (!TRANSITIONS[v.state].includes(to)) {
    const hint =
      v.state === to ? 'it is already in that state'
      : v.state === 'destroyed' ? 'destruction is final'
      : v.state === 'scheduled-destruction' ? 'cancel the scheduled destruction first'
      : 'destruction must be scheduled first'
    throw cpError('CP_ERR_KEY_STATE', `${label(v)}: ${v.state} → ${to} is not allowed; ${hint}`)
  }
  const base = { ...v, state: to, stateChangedAt: now }
  switch (to) {
    case 'scheduled-destruction': {
      if (v.version === key.primaryVersion) throw cpError('CP_ERR_KEY_PRIMARY', `${label(v)} is the primary version`)
      const policy = options.policy ?? DEFAULT_LIFECYCLE_POLICY
      const windowMs = options.windowMs ?? policy.destroyWindowMs
      const min = policy.allowShortWindows ? 0 : policy.minDestroyWindowMs
      if (!isCount(windowMs) || windowMs < min || windowMs > policy.maxDestroyWindowMs) {
        throw cpError('CP_ERR_DESTROY_WINDOW', `${windowMs} ms is outside ${min}..${policy.maxDestroyWindowMs} ms`)
      }
      return { ...base, destroyAt: now + windowMs, previousState: v.state }
    }
    case 'destroyed':
      if (v.destroyAt === null || now < v.destroyAt) {
        throw cpError('CP_ERR_KEY_STATE', `${label(v)}: destruction is not due until ${v.destroyAt === null ? 'scheduled' : new Date(v.destroyAt).toISOString()}`)
      }
      return erase({ ...base, previousState: null })
    case 'disabled':
      return { ...base, previousState: v.state, destroyAt: null }
    default:
      return { ...base, previousState: null, destroyAt: null }
  }
}

/**
 * Undoes a disable or a scheduled destruction, returning to the state recorded before it.
 * A destruction can be undone only before it is due — by default once `now` reaches
 * destroyAt; the control plane also says it is not while its elapsed time has not
 * passed (elapsed-ledger.ts) — and a version disabled and then scheduled comes back as
 * `disabled` with nothing further to undo (one level is kept, not a history).
 */
export function undo<V extends LifecycleVersion>(key: LifecycleKey, v: V, now: number, options: { due?: boolean } = {}): V {
  checkOwner(key, v)
  if (v.state === 'scheduled-destruction') {
    if (options.due ?? (v.destroyAt !== null && now >= v.destroyAt)) {
      throw cpError('CP_ERR_KEY_STATE', `${label(v)}: destruction time has passed; it can no longer be cancelled`)
    }
    // previousState is always set on scheduling; `disabled` is the safe fallback for a bad row.
    return { ...v, state: v.previousState ?? 'disabled', previousState: null, destroyAt: null, stateChangedAt: now }
  }
  if (v.state === 'disabled' && v.previousState !== null) {
    return { ...v, state: v.previousState, previousState: null, stateChangedAt: now }
  }
  throw cpError('CP_ERR_KEY_STATE', `${label(v)}: nothing to undo from ${v.state}`)
}

/** Versions whose scheduled destruction is due: the scheduler calls `transition(…, 'destroyed')` on each. */
export function dueForDestruction<V extends LifecycleVersion>(versions: readonly V[], now: number): V[] {
  return versions.filter((v) => v.state === 'scheduled-destruction' && v.destroyAt !== null && v.destroyAt <= now)
}

/** Destroyed material is gone: a record that carries material comes back with none. */
function erase<V extends LifecycleVersion>(v: V): V {
  return 'sealedMaterial' in v ? { ...v, sealedMaterial: null } : v
}

function checkRotationPeriod(periodMs: number | null, policy: LifecyclePolicy): void {
  if (periodMs === null) return
  const min = policy.allowShortWindows ? 1 : policy.minRotationPeriodMs
  if (!isCount(periodMs) || periodMs < min) {
    throw cpError('CP_ERR_ROTATION_PERIOD', `${periodMs} ms is below the minimum of ${min} ms`)
  }
}

/** A new key with version 1 enabled and primary. Pair keys rotate every day unless told otherwise. */
export function createKey(
  input: { name: string; type: KeyType; rotationPeriodMs?: number | null },
  now: number,
  policy: LifecyclePolicy = DEFAULT_LIFECYCLE_POLICY,
): { key: LifecycleKey; version: LifecycleVersion } {
  const period = input.rotationPeriodMs !== undefined ? input.rotationPeriodMs
    : input.type === 'pair' ? policy.pairRotationPeriodMs : null
  checkRotationPeriod(period, policy)
  const key: LifecycleKey = {
    name: input.name,
    type: input.type,
    primaryVersion: 1,
    minDecryptVersion: 1,
    rotationPeriodMs: period,
    nextRotationAt: period === null ? null : now + period,
    createdAt: now,
  }
  return { key, version: newVersion(key.name, 1, now) }
}

function newVersion(keyName: string, version: number, now: number): LifecycleVersion {
  return { keyName, version, state: 'enabled', createdAt: now, stateChangedAt: now, destroyAt: null, previousState: null, notAfter: null }
}

/** Sets or clears the rotation period; the next rotation is one period from now. */
export function setRotationPeriod<K extends LifecycleKey>(key: K, periodMs: number | null, now: number, policy: LifecyclePolicy = DEFAULT_LIFECYCLE_POLICY): K {
  checkRotationPeriod(periodMs, policy)
  return { ...key, rotationPeriodMs: periodMs, nextRotationAt: periodMs === null ? null : now + periodMs }
}

/**
 * Raising the minimum retires old ciphertexts without destroying material; lowering it is
 * allowed (as in Vault transit) while the versions still exist. It may not pass the primary,
 * or data encrypted now could not be decrypted.
 */
export function setMinDecryptVersion<K extends LifecycleKey>(key: K, min: number): K {
  if (!Number.isSafeInteger(min) || min < 1 || min > key.primaryVersion) {
    throw cpError('CP_ERR_MIN_VERSION', `${min} is not in 1..${key.primaryVersion}`)
  }
  return { ...key, minDecryptVersion: min }
}

export function dueForRotation(key: LifecycleKey, now: number): boolean {
  return key.nextRotationAt !== null && key.nextRotationAt <= now
}

export interface Rotation<K extends LifecycleKey, V extends LifecycleVersion> {
  readonly key: K
  /** Version N+1, enabled and primary, without material: the caller generates and seals it. */
  readonly created: LifecycleVersion
  /** The former primary as it must now be stored (unchanged for aead and x25519). */
  readonly previous: V
}

/**
 * Creates version N+1 and makes it primary. For aead and x25519 keys the former primary
 * stays as it was (usually `enabled`): like AWS KMS and Google Cloud KMS, old versions keep
 * decrypting, and only the primary encrypts, so nothing else needs to change.
 * For pair keys the former primary becomes `decrypt-only` — accept, never initiate — until
 * `notAfter = now + grace` (default 1 h; 0 when an agent is revoked and the old key must go
 * at once), after which `expiredPairVersions` returns it for destruction.
 * A scheduler that was down for several periods rotates once, not once per missed period:
 * the next rotation is one period after this one.
 */
export function rotate<K extends LifecycleKey, V extends LifecycleVersion>(
  key: K,
  primary: V,
  now: number,
  options: { graceMs?: number; policy?: LifecyclePolicy } = {},
): Rotation<K, V> {
  checkOwner(key, primary)
  if (primary.version !== key.primaryVersion) {
    throw cpError('CP_ERR_CONFLICT', `${label(primary)} is not the primary (v${key.primaryVersion})`)
  }
  const next = key.primaryVersion + 1
  const rotated: K = {
    ...key,
    primaryVersion: next,
    nextRotationAt: key.rotationPeriodMs === null ? null : now + key.rotationPeriodMs,
  }
  let previous = primary
  if (key.type === 'pair') {
    const graceMs = options.graceMs ?? (options.policy ?? DEFAULT_LIFECYCLE_POLICY).pairGraceMs
    if (!isCount(graceMs)) throw cpError('CP_ERR_BAD_REQUEST', `grace period ${graceMs} ms is not a whole number of ms ≥ 0`)
    const demote = primary.state === 'enabled'
    previous = {
      ...primary,
      notAfter: now + graceMs,
      state: demote ? 'decrypt-only' : primary.state,
      stateChangedAt: demote ? now : primary.stateChangedAt,
    }
  }
  return { key: rotated, created: newVersion(key.name, next, now), previous }
}

/** Pair versions past their grace period and not yet destroyed. */
export function expiredPairVersions<V extends LifecycleVersion>(versions: readonly V[], now: number): V[] {
  return versions.filter((v) => v.state !== 'destroyed' && v.notAfter !== null && v.notAfter <= now)
}

/**
 * Destroys a pair version whose grace has ended, without a destruction window: a pair key
 * protects only live sessions, never stored data, so there is nothing a delay could recover,
 * and keeping it would only lengthen a leaked key's life.
 */
export function expirePairVersion<V extends LifecycleVersion>(v: V, now: number): V {
  if (v.state === 'destroyed' || v.notAfter === null || now < v.notAfter) {
    throw cpError('CP_ERR_KEY_STATE', `${label(v)}: not a pair version past its grace period`)
  }
  return erase({ ...v, state: 'destroyed', stateChangedAt: now, destroyAt: now, previousState: null })
}

/** `encrypt` also means "initiate a session" for pair keys, `decrypt` "accept one". */
export type KeyUse = 'encrypt' | 'decrypt'

/**
 * Throws the specific CP_ERR_VERSION_* that refuses `use` of `v`, or returns.
 * Encrypt: the primary only, and only while `enabled`. Decrypt: `enabled` or
 * `decrypt-only`, at or above the minimum decryption version, and before `notAfter`.
 */
export function assertUsable(key: LifecycleKey, v: LifecycleVersion, use: KeyUse, now: number): void {
  checkOwner(key, v)
  const what = `${label(v)} for ${use}`
  if (v.state === 'destroyed') throw cpError('CP_ERR_VERSION_DESTROYED', what)
  if (v.state === 'disabled' || v.state === 'scheduled-destruction') throw cpError('CP_ERR_VERSION_DISABLED', `${what} (${v.state})`)
  if (v.notAfter !== null && now >= v.notAfter) throw cpError('CP_ERR_VERSION_EXPIRED', what)
  if (use === 'encrypt') {
    if (v.version !== key.primaryVersion) throw cpError('CP_ERR_VERSION_NOT_PRIMARY', `${what}; the primary is v${key.primaryVersion}`)
    if (v.state === 'decrypt-only') throw cpError('CP_ERR_VERSION_DECRYPT_ONLY', what)
  } else if (v.version < key.minDecryptVersion) {
    throw cpError('CP_ERR_VERSION_BELOW_MIN', `${what}; the minimum is v${key.minDecryptVersion}`)
  }
}

/** What `v` may do now, for listings: the same rules as `assertUsable`, without the reason. */
export function permits(key: LifecycleKey, v: LifecycleVersion, now: number): { encrypt: boolean; decrypt: boolean } {
  const ok = (use: KeyUse): boolean => {
    try {
      assertUsable(key, v, use, now)
      return true
    } catch {
      return false
    }
  }
  return { encrypt: ok('encrypt'), decrypt: ok('decrypt') }
}
