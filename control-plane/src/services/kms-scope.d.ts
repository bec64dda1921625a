import { type CryptoSuite } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import { type Decision } from '../policy.js';
import type { GrantRecord, KeyRecord, KeyVersionRecord, Right } from '../store/records.js';
import type { PolicyFacts, PolicyReader } from './kms-policy.js';
export declare class KmsScope {
    #private;
    /** The context's suite, drawing randomness from this scope's pool: for nonces only. */
    readonly nonceSuite: CryptoSuite;
    /** `calls`: how many calls share the scope (sizes the nonce pool; at most 256 nonces per draw). */
    constructor(ctx: CpContext, policy: PolicyReader, calls?: number);
    /** The key `name` with `service`'s grant and the versions `pick` names; null when no such key. Answered after flush(). */
    lookup(name: string, service: string, pick: (key: KeyRecord) => readonly number[]): Promise<PolicyFacts | null>;
    /** Sends the collected look-ups to the policy reader as one group. */
    flush(): void;
    /** authorizeService(grant ? [grant] : [], service, name, right), decided once per grant row (by identity) and right. */
    authorize(grant: GrantRecord | null, service: string, name: string, right: Right): Decision;
    /** Runs `fn` with the version's material, unsealed on first use in this scope; `fn` must not keep it. */
    withMaterial<T>(v: KeyVersionRecord, fn: (material: Uint8Array) => T): T;
    /** Zeroes every material opened in this scope. */
    wipe(): void;
}
