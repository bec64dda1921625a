import type { AgentRecord, IntentionRecord, AuditRow, JoinTokenRecord, KeyRecord, KeyVersionRecord, OperatorTokenRecord } from './records.js';
export type Row = Record<string, unknown>;
/** Uint8Array → Buffer without copying (drivers bind Buffers as BLOB/BYTEA). */
export declare const toBlob: (u: Uint8Array) => Buffer;
/** Buffer → a plain Uint8Array copy, so callers see the same type from every back-end. */
export declare const fromBlob: (b: unknown) => Uint8Array;
export declare const KEY_COLUMNS = "name, type, created_at, rotation_period_ms, next_rotation_at, primary_version, min_decrypt_version, pair_a, pair_b";
export declare const VERSION_COLUMNS = "key_name, version, state, material, created_at, state_changed_at, destroy_at, not_after, previous_state";
export declare const AGENT_COLUMNS = "id, service, static_key, enrolled_at, revoked_at, last_seen_at, endpoint";
export declare const JOIN_TOKEN_COLUMNS = "id, token_hash, service, created_at, expires_at, used_at, used_by_agent";
export declare const OPERATOR_TOKEN_COLUMNS = "id, name, token_hash, role, created_at, expires_at, revoked_at";
export declare const AUDIT_COLUMNS = "seq, at, actor, action, target, outcome, reason, details, prev_hash, hash";
export declare const num: (v: unknown) => number;
export declare const numOrNull: (v: unknown) => number | null;
export declare function toKey(r: Row): KeyRecord;
export declare function toKeyVersion(r: Row): KeyVersionRecord;
export declare function toIntention(r: Row): IntentionRecord;
export declare function toAgent(r: Row): AgentRecord;
export declare function toJoinToken(r: Row): JoinTokenRecord;
export declare function toOperatorToken(r: Row): OperatorTokenRecord;
export declare function toAuditRow(r: Row): AuditRow;
/** Collects `AND`ed conditions with their parameters; `sql` is '' or ' WHERE …'. */
export declare function where(): {
    add(cond: string, ...args: unknown[]): void;
    readonly sql: string;
    readonly args: unknown[];
};
