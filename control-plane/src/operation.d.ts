import type { AuditDetails } from './audit-chain.js';
import { type Actor, type CpContext } from './context.js';
import type { ChangeEvent } from './events.js';
import type { StoreTx } from './store/store.js';
export interface OperationOutcome<T> {
    readonly result: T;
    /** Why it was allowed or what it did; defaults to "ok". */
    readonly reason?: string;
    /** Plain JSON for the audit entry: never key material (the audit guard refuses it). */
    readonly details?: AuditDetails;
    /**
     * Published after commit, never before: a subscriber must not see uncommitted
     * state. A bus that reaches other replicas sends them inside the transaction,
     * delivered by the database at commit.
     */
    readonly events?: readonly ChangeEvent[];
}
export interface OperationSpec<T> {
    readonly actor: Actor;
    /** Audit action, e.g. `key.rotate`. */
    readonly action: string;
    /** Audit target, e.g. `key:orders`. */
    readonly target: string;
    run(tx: StoreTx): Promise<OperationOutcome<T>>;
}
export declare function perform<T>(ctx: CpContext, spec: OperationSpec<T>): Promise<T>;
/**
 * Records a refusal or failure in a transaction of its own. When the store itself
 * is what failed, this may fail too: that is logged, and the caller still gets
 * the original error.
 */
export declare function auditFailure(ctx: CpContext, actor: Actor, action: string, target: string, err: unknown): Promise<void>;
