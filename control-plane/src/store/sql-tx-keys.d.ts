import type { GrantRecord, IntentionRecord, KeyPatch, KeyRecord, KeyVersionPatch, KeyVersionRecord, VersionState } from './records.js';
import { SqlQueries } from './sql-queries.js';
import type { KeyFilter, KeyVersionFilter } from './store.js';
export declare abstract class SqlKeyRepository extends SqlQueries {
    getMeta(key: string): Promise<Uint8Array | null>;
    putMeta(key: string, value: Uint8Array): Promise<void>;
    insertMetaIfAbsent(key: string, value: Uint8Array): Promise<boolean>;
    deleteMeta(key: string): Promise<boolean>;
    getKey(name: string): Promise<KeyRecord | null>;
    findPairKey(a: string, b: string): Promise<KeyRecord | null>;
    listKeys(filter?: KeyFilter): Promise<KeyRecord[]>;
    insertKey(k: KeyRecord): Promise<void>;
    updateKey(name: string, patch: KeyPatch): Promise<boolean>;
    deleteKey(name: string): Promise<boolean>;
    getKeyVersion(keyName: string, version: number): Promise<KeyVersionRecord | null>;
    listKeyVersions(filter?: KeyVersionFilter): Promise<KeyVersionRecord[]>;
    lastKeyVersion(keyName: string): Promise<number>;
    insertKeyVersion(v: KeyVersionRecord): Promise<void>;
    updateKeyVersion(keyName: string, version: number, patch: KeyVersionPatch, ifState?: VersionState): Promise<boolean>;
    getGrant(keyName: string, service: string): Promise<GrantRecord | null>;
    listGrants(filter?: {
        keyName?: string;
        service?: string;
    }): Promise<GrantRecord[]>;
    putGrant(g: GrantRecord): Promise<void>;
    deleteGrant(keyName: string, service: string): Promise<boolean>;
    getIntention(src: string, dst: string): Promise<IntentionRecord | null>;
    listIntentions(filter?: {
        src?: string;
        dst?: string;
        service?: string;
    }): Promise<IntentionRecord[]>;
    addIntention(i: IntentionRecord): Promise<boolean>;
    deleteIntention(src: string, dst: string): Promise<boolean>;
}
