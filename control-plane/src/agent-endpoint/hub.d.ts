import type { KeymeshError } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import { wipeKeySet } from '../services/keyset.js';
/** One pair as pushed: the encoded pair.update message (secret: wiped after use) and its digest. */
export interface EncodedPair {
    readonly bytes: Uint8Array;
    readonly digest: string;
    /** The same pair as a keyset.pair message, when asked for (a session's first key set). */
    readonly initial?: Uint8Array;
}
export type EncodedKeySet = ReadonlyMap<string, EncodedPair>;
export interface HubSession {
    readonly agentId: string;
    readonly service: string;
    /** Sends the differences between what this session last got and `set`. */
    applyUpdate(seq: number, set: EncodedKeySet): void;
    /** Closes the session with a typed error (its close code). */
    terminate(error: KeymeshError): void;
}
/** The hub serving `ctx`, for the admin API's `connected` column. */
export declare function hubOf(ctx: CpContext): Hub | undefined;
export declare class Hub {
    #private;
    constructor(ctx: CpContext);
    get size(): number;
    isConnected(agentId: string): boolean;
    /** The next key-set sequence number; take it before reading the store. */
    nextSeq(): number;
    /** Adds a session; an older session of the same agent is closed (the agent reconnected). */
    register(session: HubSession): void;
    unregister(session: HubSession): void;
    sessions(): HubSession[];
    /** Recomputes and pushes the key set of `service` to its sessions (coalesced). */
    refresh(service: string): void;
    /** Resolves when no push is being computed (tests, shutdown). */
    idle(): Promise<void>;
    close(): void;
}
export declare function wipeEncoded(set: EncodedKeySet): void;
/** Encodes each pair as a pair.update message and wipes the clear entries. */
export declare function encodeKeySet(ctx: CpContext, entries: Parameters<typeof wipeKeySet>[0], initial?: boolean): Map<string, EncodedPair>;
