import { type PairEntry } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import type { StoreReader } from '../store/store.js';
/**
 * The pairs of `service`, ordered by pair id. A pair is included when an intention
 * lets this service initiate or accept, and its primary version may initiate
 * (enabled, within its grace); previous versions that may still accept follow,
 * newest first, up to the message limit. Peers are the peer service's non-revoked
 * agents, the most recently enrolled first when there are more than the limit.
 */
export declare function buildKeySet(ctx: CpContext, reader: StoreReader, service: string): Promise<PairEntry[]>;
/** Zeroes every key in the entries (after they were encoded). */
export declare function wipeKeySet(entries: readonly PairEntry[]): void;
/** The peer services of `service`: the other side of each of its pair keys. */
export declare function peerServices(reader: StoreReader, service: string): Promise<string[]>;
