import type { CpContext } from '../context.js';
import type { KeyType, KeyVersionRecord } from '../store/records.js';
export declare const MATERIAL_BYTES = 32;
/**
 * Fresh material for a version: 32 random bytes for every type. For `aead` and
 * `pair` they are the ChaCha20-Poly1305 key; for `x25519` the secret scalar
 * (clamped on use per RFC 7748), whose public half is derived when needed.
 */
export declare function newMaterial(ctx: CpContext, _type: KeyType): Uint8Array;
/** Makes, seals and wipes new material; returns the sealed bytes for the version row. */
export declare function sealNewMaterial(ctx: CpContext, keyName: string, version: number, type: KeyType): Uint8Array;
/** Opens a version's material; throws CP_ERR_VERSION_DESTROYED when it was erased. The caller wipes the result. */
export declare function openMaterial(ctx: CpContext, v: Pick<KeyVersionRecord, 'keyName' | 'version' | 'sealedMaterial'>): Uint8Array;
/** The public half of an x25519 version. */
export declare function x25519Public(ctx: CpContext, v: Pick<KeyVersionRecord, 'keyName' | 'version' | 'sealedMaterial'>): Uint8Array;
