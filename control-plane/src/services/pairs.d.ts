import type { CpContext } from '../context.js';
import type { KeyRecord, VersionState } from '../store/records.js';
import type { StoreReader, StoreTx } from '../store/store.js';
/** A pair key as operators see it: metadata only, never material. */
export interface PairView {
    readonly pairId: string;
    readonly services: readonly [string, string];
    readonly primaryVersion: number;
    /** `lo->hi` and `hi->lo`: whether an intention allows that direction. */
    readonly allows: Readonly<Record<string, boolean>>;
    readonly versions: readonly {
        readonly version: number;
        readonly state: VersionState;
        readonly notAfter: number | null;
    }[];
}
/** Validates a service name with the control plane's own error code (the API's 400). */
export declare function checkService(name: unknown, what?: string): string;
/** Sorted services and the pair id of two distinct, valid service names. */
export declare function pairOf(a: unknown, b: unknown): {
    pairId: string;
    lo: string;
    hi: string;
};
/** A pair key is live while its primary still has material. */
export declare function isLive(r: StoreReader, key: KeyRecord): Promise<boolean>;
export type EnsureOutcome = 'created' | 'revived' | 'existing';
/**
 * Makes sure the pair of `a` and `b` has a live key: creates v1, revives a dead key with a
 * new version, or leaves a live one alone. Returns the primary version afterwards.
 */
export declare function ensurePairKey(ctx: CpContext, tx: StoreTx, a: string, b: string, now: number): Promise<{
    pairId: string;
    version: number;
    outcome: EnsureOutcome;
}>;
export interface PairRotation {
    readonly pairId: string;
    readonly services: readonly [string, string];
    readonly version: number;
    readonly previousVersion: number;
    readonly previousNotAfter: number | null;
}
/**
 * Rotates one live pair key: v(N+1) becomes the enabled primary, vN becomes decrypt-only
 * until now + graceMs. Older versions still in their grace are cut to the same end, so a
 * rotation with grace 0 (an agent was revoked) leaves no version the revoked agent held;
 * versions whose grace has already ended are destroyed in the same transaction.
 */
export declare function rotatePairKey(ctx: CpContext, tx: StoreTx, key: KeyRecord, now: number, graceMs: number): Promise<PairRotation>;
/**
 * Rotates every live pair key that has `service` on either side, inside the caller's
 * transaction (the caller audits, and publishes a 'services' event for both sides of
 * each pair after commit). Returns the pair ids rotated, in name order.
 */
export declare function rotatePairsOfService(ctx: CpContext, tx: StoreTx, service: string, now: number, opts: {
    graceMs: number;
    reason: string;
}): Promise<string[]>;
/** Rotates a pair key whose scheduled rotation is due; null when it no longer is (another pass did it). */
export declare function rotateIfDue(ctx: CpContext, tx: StoreTx, keyName: string, now: number): Promise<PairRotation | null>;
/** Destroys one pair version past its grace; null when it is already gone or not due. */
export declare function expireIfDue(tx: StoreTx, keyName: string, version: number, now: number): Promise<{
    pairId: string;
    services: readonly [string, string];
    version: number;
} | null>;
/**
 * The last intention between two services is gone: every remaining version is destroyed
 * at once (material erased, metadata kept) and scheduled rotation stops. Returns the
 * versions destroyed.
 */
export declare function retirePairKey(tx: StoreTx, key: KeyRecord, now: number): Promise<number[]>;
/** Every pair key with its directions and versions, for `GET /v1/pairs`. */
export declare function listPairs(r: StoreReader, service?: string): Promise<PairView[]>;
