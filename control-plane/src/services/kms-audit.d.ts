import type { KmsOp } from '../../../protocol/src/index.js';
import type { AuditInput, AuditLog } from '../audit.js';
import type { Store } from '../store/store.js';
export declare const DEFAULT_MAX_AUDIT_GROUP = 4096;
/** Calls listed in one audit entry, so an entry stays near 100 KB. */
export declare const DEFAULT_MAX_CALLS_PER_ENTRY = 1000;
/** One KMS call as the audit log records it. */
export interface KmsCallRecord {
    /** `agent:<id>`. */
    readonly actor: string;
    readonly service: string;
    readonly op: KmsOp;
    /** `key:<name>`, or `key:(unknown)` when the call never named a valid key. */
    readonly target: string;
    readonly outcome: 'ok' | 'deny' | 'error';
    /** The policy's reason when allowed; `CODE: message` when not. */
    readonly reason: string;
    readonly requestId: number;
    readonly keyVersion: number | null;
    /** rewrap: the version the result is sealed under. */
    readonly toVersion?: number;
    /** SHA-256 of the canonical context (ciphertext.ts contextHash). */
    readonly contextHash: string;
    /** Null when the call succeeded. */
    readonly code: string | null;
    /** The kms.batch the call was an item of (requestId is then the item's id). */
    readonly batchId?: number;
}
/** Columns of each line in an entry's `calls`, in order. */
export declare const KMS_CALL_COLUMNS: readonly ["requestId", "keyVersion", "contextHash", "code"];
export interface AuditGroupStats {
    /** Transactions that committed. */
    readonly groups: number;
    /** Calls committed in them. */
    readonly calls: number;
    /** Audit entries written for them. */
    readonly entries: number;
    /** Transactions that failed (their calls answered CP_ERR_AUDIT). */
    readonly failedGroups: number;
    readonly largestGroup: number;
}
export interface KmsAuditOptions {
    /** Calls per transaction. */
    readonly maxGroup?: number;
    readonly maxCallsPerEntry?: number;
    /** Lets pending I/O run before a group is taken (default: one setImmediate turn). */
    readonly yieldToIo?: () => Promise<void>;
}
export declare class KmsAuditLog {
    #private;
    constructor(deps: {
        readonly store: Store;
        readonly audit: AuditLog;
    }, options?: KmsAuditOptions);
    /** Counters for tests and metrics; timing-free. */
    get stats(): AuditGroupStats;
    /**
     * Queues calls (a batch's items, or one call) so that they share a transaction
     * (up to maxGroup). Each promise resolves once its call's line is committed and
     * rejects with CP_ERR_AUDIT when its group's transaction fails.
     */
    recordAll(calls: readonly KmsCallRecord[]): Promise<void>[];
}
/**
 * The audit entries of one group: calls sharing actor, op, target and outcome go
 * into one entry (at most `maxCalls` each), in order of their first call.
 */
export declare function entriesOf(calls: readonly KmsCallRecord[], maxCalls?: number): AuditInput[];
