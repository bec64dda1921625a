import { type CryptoSuite } from '../../protocol/src/index.js';
export declare const SEAL_VERSION = 1;
export declare const MASTER_KEY_BYTES = 32;
/** Bytes a sealed value adds to its plaintext. */
export declare const SEAL_OVERHEAD: number;
/** Record identities, so every caller spells them alike. */
export declare const sealIdentity: {
    keyVersion: (keyName: string, version: number) => string;
    meta: (key: string) => string;
};
export interface Sealer {
    seal(identity: string, plaintext: Uint8Array): Uint8Array;
    /** Throws CP_ERR_UNSEAL on a wrong master key, a moved record, or any alteration. */
    unseal(identity: string, sealed: Uint8Array): Uint8Array;
    /** Zeroes the derived sealing key; the sealer is unusable afterwards. */
    wipe(): void;
}
/** A sealer holding the key derived from `masterKey` (HKDF-SHA256, info 'keymesh seal v1'). */
export declare function createSealer(masterKey: Uint8Array, suite?: CryptoSuite): Sealer;
/** One-shot seal; prefer a long-lived `createSealer` on hot paths (it derives the key once). */
export declare function seal(masterKey: Uint8Array, identity: string, plaintext: Uint8Array, suite?: CryptoSuite): Uint8Array;
/** One-shot unseal; throws CP_ERR_UNSEAL like `Sealer.unseal`. */
export declare function unseal(masterKey: Uint8Array, identity: string, sealed: Uint8Array, suite?: CryptoSuite): Uint8Array;
