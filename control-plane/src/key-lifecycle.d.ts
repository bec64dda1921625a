import type { KeyRecord, KeyType, KeyVersionRecord, VersionState } from './store/records.js';
export { VERSION_STATES, type KeyType, type VersionState } from './store/records.js';
/**
 * What the lifecycle reads of a key. Invariant: `primaryVersion` is the newest version —
 * rotation is the only way to make a version, and it makes it primary. Versions below
 * `minDecryptVersion` are refused for decryption (CP_ERR_VERSION_BELOW_MIN).
 */
export type LifecycleKey = Omit<KeyRecord, 'pairServices'>;
/**
 * What the lifecycle reads of a version. `destroyAt` is kept after destruction as the time
 * it happened; `previousState` is what `undo` returns to; `notAfter` ends a pair version's
 * grace. `sealedMaterial`, when the record carries it, is set to null on destruction.
 */
export type LifecycleVersion = Omit<KeyVersionRecord, 'sealedMaterial'> & {
    readonly sealedMaterial?: Uint8Array | null;
};
export interface LifecyclePolicy {
    readonly destroyWindowMs: number;
    readonly minDestroyWindowMs: number;
    readonly maxDestroyWindowMs: number;
    readonly minRotationPeriodMs: number;
    readonly pairRotationPeriodMs: number;
    readonly pairGraceMs: number;
    /** Lifts the minimum window and rotation period, for tests with a fake clock only. */
    readonly allowShortWindows: boolean;
}
export declare const DEFAULT_LIFECYCLE_POLICY: LifecyclePolicy;
export declare function lifecyclePolicy(overrides?: Partial<LifecyclePolicy>): LifecyclePolicy;
/** Allowed explicit transitions; `undo` and pair expiry are separate functions. */
export declare const TRANSITIONS: Readonly<Record<VersionState, readonly VersionState[]>>;
/**
 * Moves one version to `to`. The store must erase the version's material in the same
 * transaction that records `destroyed`; only the metadata survives.
 */
export declare function transition<V extends LifecycleVersion>(key: LifecycleKey, v: V, to: VersionState, now: number, options?: {
    windowMs?: number;
    policy?: LifecyclePolicy;
}): V;
/**
 * Undoes a disable or a scheduled destruction, returning to the state recorded before it.
 * A destruction can be undone only before its time; a version disabled and then scheduled
 * comes back as `disabled` with nothing further to undo (one level is kept, not a history).
 */
export declare function undo<V extends LifecycleVersion>(key: LifecycleKey, v: V, now: number): V;
/** Versions whose scheduled destruction is due: the scheduler calls `transition(…, 'destroyed')` on each. */
export declare function dueForDestruction<V extends LifecycleVersion>(versions: readonly V[], now: number): V[];
/** A new key with version 1 enabled and primary. Pair keys rotate every day unless told otherwise. */
export declare function createKey(input: {
    name: string;
    type: KeyType;
    rotationPeriodMs?: number | null;
}, now: number, policy?: LifecyclePolicy): {
    key: LifecycleKey;
    version: LifecycleVersion;
};
/** Sets or clears the rotation period; the next rotation is one period from now. */
export declare function setRotationPeriod<K extends LifecycleKey>(key: K, periodMs: number | null, now: number, policy?: LifecyclePolicy): K;
/**
 * Raising the minimum retires old ciphertexts without destroying material; lowering it is
 * allowed (as in Vault transit) while the versions still exist. It may not pass the primary,
 * or data encrypted now could not be decrypted.
 */
export declare function setMinDecryptVersion<K extends LifecycleKey>(key: K, min: number): K;
export declare function dueForRotation(key: LifecycleKey, now: number): boolean;
export interface Rotation<K extends LifecycleKey, V extends LifecycleVersion> {
    readonly key: K;
    /** Version N+1, enabled and primary, without material: the caller generates and seals it. */
    readonly created: LifecycleVersion;
    /** The former primary as it must now be stored (unchanged for aead and x25519). */
    readonly previous: V;
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
export declare function rotate<K extends LifecycleKey, V extends LifecycleVersion>(key: K, primary: V, now: number, options?: {
    graceMs?: number;
    policy?: LifecyclePolicy;
}): Rotation<K, V>;
/** Pair versions past their grace period and not yet destroyed. */
export declare function expiredPairVersions<V extends LifecycleVersion>(versions: readonly V[], now: number): V[];
/**
 * Destroys a pair version whose grace has ended, without a destruction window: a pair key
 * protects only live sessions, never stored data, so there is nothing a delay could recover,
 * and keeping it would only lengthen a leaked key's life.
 */
export declare function expirePairVersion<V extends LifecycleVersion>(v: V, now: number): V;
/** `encrypt` also means "initiate a session" for pair keys, `decrypt` "accept one". */
export type KeyUse = 'encrypt' | 'decrypt';
/**
 * Throws the specific CP_ERR_VERSION_* that refuses `use` of `v`, or returns.
 * Encrypt: the primary only, and only while `enabled`. Decrypt: `enabled` or
 * `decrypt-only`, at or above the minimum decryption version, and before `notAfter`.
 */
export declare function assertUsable(key: LifecycleKey, v: LifecycleVersion, use: KeyUse, now: number): void;
/** What `v` may do now, for listings: the same rules as `assertUsable`, without the reason. */
export declare function permits(key: LifecycleKey, v: LifecycleVersion, now: number): {
    encrypt: boolean;
    decrypt: boolean;
};
