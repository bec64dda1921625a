import type { GrantRecord, KeyRecord, KeyVersionRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
export interface PolicyFacts {
    readonly key: KeyRecord;
    /** The caller's grant on the key, null when it has none. */
    readonly grant: GrantRecord | null;
    /** The rows of the versions `pick` named, in its order; null where no such version. */
    readonly versions: readonly (KeyVersionRecord | null)[];
    /** The version numbers `pick` named. */
    readonly wanted: readonly number[];
}
/** What one call asks for: the key `name` with `service`'s grant and the versions `pick` names. */
export interface PolicyLookup {
    readonly name: string;
    readonly service: string;
    readonly pick: (key: KeyRecord) => readonly number[];
}
/** A look-up that carries its own settling (a scope's). */
export interface PolicyRequest extends PolicyLookup {
    readonly resolve: (facts: PolicyFacts | null) => void;
    readonly reject: (err: unknown) => void;
}
export declare class PolicyReader {
    #private;
    constructor(store: Store);
    /** The key `name` with `service`'s grant and the versions `pick` names; null when no such key. */
    load(name: string, service: string, pick: (key: KeyRecord) => readonly number[]): Promise<PolicyFacts | null>;
    /**
     * Several look-ups queued at once, so that one read answers all of them (a
     * batch's items see one snapshot, and each distinct row is read once).
     */
    loadMany(lookups: readonly PolicyLookup[]): Promise<PolicyFacts | null>[];
    /** loadMany() for look-ups that settle themselves: no promise of its own per look-up (a batch's items). */
    enqueue(requests: readonly PolicyRequest[]): void;
}
