import { type KmsBatchItem, type KmsItemReply } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import type { KmsScope } from './kms-scope.js';
export type KmsRequest = KmsBatchItem;
export type KmsReply = KmsItemReply;
export type KmsResult = NonNullable<KmsReply['result']>;
/** Who asks: the agent, speaking for its service. */
export interface KmsCaller {
    readonly agentId: string;
    readonly service: string;
}
/** What the audit line says of a call; filled in as the call learns it. */
export interface CallFacts {
    key?: string;
    version?: number;
    toVersion?: number;
    reason?: string;
}
/** One call's surroundings. */
export interface KmsCall {
    readonly ctx: CpContext;
    readonly scope: KmsScope;
    readonly caller: KmsCaller;
    readonly facts: CallFacts;
}
/** Performs one request; the result, or a thrown error for kms.ts to type and audit. */
export declare function performKms(call: KmsCall, req: KmsRequest): Promise<KmsResult>;
