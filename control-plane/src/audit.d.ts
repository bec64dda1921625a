import type { CryptoSuite } from '../../protocol/src/index.js';
import { type AuditDetails, type AuditVerifyResult } from './audit-chain.js';
import type { AuditOutcome, AuditRow } from './store/records.js';
import type { AuditFilter, Store, StoreTx } from './store/store.js';
export declare const DEFAULT_AUDIT_PAGE = 500;
export interface AuditInput {
    /** Who: 'operator:<token id>', 'agent:<id>', 'system:<task>'. */
    readonly actor: string;
    readonly action: string;
    readonly target: string;
    readonly outcome: AuditOutcome;
    readonly reason: string;
    /** Plain JSON, never key material; checked by the guard in audit-chain.ts. */
    readonly details?: AuditDetails;
}
/** An entry as shown to operators: details parsed, hashes as hex. */
export type AuditEntry = Omit<AuditRow, 'detailsJson' | 'prevHash' | 'hash'> & {
    readonly details: AuditDetails;
    readonly prevHash: string;
    readonly hash: string;
};
export type AuditQuery = Omit<AuditFilter, 'afterSeq' | 'beforeSeq' | 'order' | 'limit'> & {
    readonly limit?: number;
};
export interface AuditLogOptions {
    readonly suite?: CryptoSuite;
    /** Clock for `at`; injected so tests fix it. */
    readonly now?: () => number;
    /** Rows per read transaction when streaming. */
    readonly pageSize?: number;
}
export declare function toAuditEntry(row: AuditRow): AuditEntry;
export interface AuditLog {
    /** Appends within `tx`; throws CP_ERR_AUDIT (the caller's transaction then rolls back). */
    append(tx: StoreTx, input: AuditInput): Promise<AuditEntry>;
    /** The last `n` entries, oldest first. */
    tail(store: Store, n: number): Promise<AuditEntry[]>;
    /** Entries matching the filter, oldest first, at most `limit` (default one page). */
    query(store: Store, q?: AuditQuery): Promise<AuditEntry[]>;
    /** Every matching entry, oldest first, one page per read transaction. */
    export(store: Store, q?: Omit<AuditQuery, 'limit'>): AsyncGenerator<AuditEntry>;
    /** Recomputes the whole chain and compares the end with the stored head. */
    verify(store: Store): Promise<AuditVerifyResult>;
}
export declare function createAuditLog(options?: AuditLogOptions): AuditLog;
