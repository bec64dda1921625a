import type { RandomSource } from '../../protocol/src/index.js';
export declare const MASTER_KEY_FILE = "master.key";
export interface MasterKeyOptions {
    /** The data directory, where master.key is found or created. */
    readonly dataDir: string;
    /** An operator-supplied key file (--master-key-file). */
    readonly file?: string;
    /** Base64 text from the environment, read by the caller. */
    readonly envValue?: string;
    /** What to call the environment value in errors (e.g. 'KEYMESH_MASTER_KEY'). */
    readonly envName?: string;
    /** Random source for a new key; node:crypto by default. */
    readonly random?: RandomSource;
}
export interface MasterKey {
    readonly key: Uint8Array;
    /** Where it came from, for the start-up log line. */
    readonly source: 'file' | 'env' | 'data-dir' | 'created';
    /** The file it was read from or written to; absent for 'env'. */
    readonly path?: string;
}
/** Decodes strict base64 (standard alphabet, whitespace around it allowed) of exactly 32 bytes. */
export declare function decodeMasterKeyText(text: string, where: string): Uint8Array;
/** Reads a key file after checking that only its owner can read it. */
export declare function readMasterKeyFile(path: string): Uint8Array;
/**
 * Writes a new random key to `path` (0600) without ever exposing a partial file
 * or replacing an existing one: temp file, fsync, then link() into place, which
 * fails if the name exists (a rename would silently overwrite a key that other
 * data is sealed under). Returns null when another process created it first.
 */
export declare function createMasterKeyFile(path: string, dir: string, random?: RandomSource): Uint8Array | null;
/** Loads (or on first start creates) the master key; see the file comment for the order. */
export declare function loadMasterKey(options: MasterKeyOptions): MasterKey;
