import type { Actor, CpContext } from '../context.js';
import { type Right } from '../policy.js';
import type { KeyRecord, KeyType, KeyVersionRecord, VersionState } from '../store/records.js';
/** What a view shows of a version: everything but the sealed material and the undo state. */
export type VersionView = Pick<KeyVersionRecord, 'version' | 'state' | 'createdAt' | 'stateChangedAt' | 'destroyAt' | 'notAfter'>;
export type KeyView = Omit<KeyRecord, 'pairServices'> & {
    readonly pairServices?: readonly [string, string];
    readonly versions: VersionView[];
};
export interface RotationView {
    readonly name: string;
    readonly version: number;
    readonly previousVersion: number;
}
export interface GrantView {
    readonly service: string;
    readonly rights: readonly Right[];
}
/** States an operator may ask for; `destroyed` is reached only through destroyDueVersions. */
export type RequestedState = Exclude<VersionState, 'destroyed'>;
export interface KeyPatchInput {
    readonly rotationPeriodMs?: number;
    readonly noRotation?: boolean;
    readonly minDecryptVersion?: number;
}
export declare function versionView(v: KeyVersionRecord): VersionView;
export declare function keyView(key: KeyRecord, versions: readonly KeyVersionRecord[]): KeyView;
export declare function listKeys(ctx: CpContext, filter?: {
    type?: KeyType;
}): Promise<KeyView[]>;
export declare function getKey(ctx: CpContext, name: string): Promise<KeyView>;
export declare function listGrants(ctx: CpContext, name: string): Promise<{
    name: string;
    grants: GrantView[];
}>;
/** The public half of an x25519 version (the primary unless `version` is given). */
export declare function publicKey(ctx: CpContext, name: string, version?: number): Promise<{
    name: string;
    version: number;
    publicKey: string;
}>;
export declare function createKey(ctx: CpContext, actor: Actor, input: {
    name: string;
    type: KeyType;
    rotationPeriodMs?: number;
}): Promise<KeyView>;
export declare function rotateKey(ctx: CpContext, actor: Actor, name: string): Promise<RotationView>;
export declare function updateKey(ctx: CpContext, actor: Actor, name: string, patch: KeyPatchInput): Promise<KeyView>;
export declare function setVersionState(ctx: CpContext, actor: Actor, name: string, version: number, state: RequestedState, windowMs?: number): Promise<VersionView>;
/** Cancels a scheduled destruction: the version returns to the state it had before. */
export declare function cancelDestruction(ctx: CpContext, actor: Actor, name: string, version: number): Promise<VersionView>;
/** Adds (`add`) or removes rights of a service on a key; returns the service's rights afterwards. */
export declare function changeGrant(ctx: CpContext, actor: Actor, name: string, input: {
    service: string;
    rights: readonly string[];
}, add: boolean): Promise<GrantView & {
    name: string;
}>;
/**
 * Rotates every aead and x25519 key whose nextRotationAt ≤ now, one audited transaction
 * per key, as system:scheduler. Pair keys rotate with their pair. A failure is audited
 * and logged and does not stop the other keys.
 */
export declare function rotateDueKeys(ctx: CpContext, now: number): Promise<RotationView[]>;
/**
 * Destroys every version whose scheduled destruction is due: its sealed material is
 * erased (set to null) and its metadata kept, one audited transaction per version, as
 * system:scheduler. A version whose destruction was cancelled meanwhile is refused
 * (and audited) rather than destroyed.
 */
export declare function destroyDueVersions(ctx: CpContext, now: number): Promise<{
    name: string;
    version: number;
}[]>;
