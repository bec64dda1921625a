import type { KmsBatchMessage } from '../../../protocol/src/index.js';
import { type CpContext } from '../context.js';
import { KmsAuditLog, type KmsAuditOptions } from './kms-audit.js';
import { type KmsCaller, type KmsReply, type KmsRequest } from './kms-ops.js';
import { PolicyReader } from './kms-policy.js';
export type { KmsCaller, KmsReply, KmsRequest, KmsResult } from './kms-ops.js';
export type KmsBatch = Omit<KmsBatchMessage, 'type'>;
export interface KmsOptions {
    /** Calls (single requests and batch items alike) one agent session may have unanswered; more are refused with CP_ERR_KMS_BUSY. */
    readonly maxInFlightPerAgent?: number;
    readonly audit?: KmsAuditOptions;
}
/** Enough for 50,000 items/s with a 25 ms commit, and bounds a session's memory (each holds ≤ 32 KiB). */
export declare const DEFAULT_MAX_KMS_IN_FLIGHT = 2048;
export declare class KmsService {
    #private;
    readonly audit: KmsAuditLog;
    readonly policy: PolicyReader;
    readonly maxInFlightPerAgent: number;
    constructor(ctx: CpContext, options?: KmsOptions);
    /** Performs, audits and answers one request; resolves after its audit line is committed. */
    handle(caller: KmsCaller, req: KmsRequest): Promise<KmsReply>;
    /**
     * Performs, audits and answers the items of one batch in one scope. Resolves
     * with one reply per item, in order, once every performed item's line is
     * committed. Only the first `accepted` items are performed (the caller's
     * in-flight room); the others are answered CP_ERR_KMS_BUSY, as busy() says.
     */
    handleBatch(caller: KmsCaller, batch: KmsBatch, accepted?: number): Promise<KmsReply[]>;
    /**
     * The reply for a request refused because its session has too many in flight.
     * Load shedding, not a decision about a key: it is logged, not audited, so a
     * flood cannot grow the audit log faster than the calls it serves.
     */
    busy(req: Pick<KmsRequest, 'id'>): KmsReply;
}
/** The control plane's KMS service, made on first use with default options. */
export declare function kmsService(ctx: CpContext): KmsService;
/** Replaces the control plane's KMS service (tests: other limits); call before agents connect. */
export declare function installKmsService(ctx: CpContext, service: KmsService): void;
