/** Uint8Array → Buffer without copying (drivers bind Buffers as BLOB/BYTEA). */
export const toBlob = (u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
/** Buffer → a plain Uint8Array copy, so callers see the same type from every back-end. */
export const fromBlob = (b) => new Uint8Array(b);
export const KEY_COLUMNS = 'name, type, created_at, rotation_period_ms, next_rotation_at, primary_version, min_decrypt_version, pair_a, pair_b';
export const VERSION_COLUMNS = 'key_name, version, state, material, created_at, state_changed_at, destroy_at, not_after, previous_state';
export const AGENT_COLUMNS = 'id, service, static_key, enrolled_at, revoked_at, last_seen_at, endpoint';
export const JOIN_TOKEN_COLUMNS = 'id, token_hash, service, created_at, expires_at, used_at, used_by_agent';
export const OPERATOR_TOKEN_COLUMNS = 'id, name, token_hash, role, created_at, expires_at, revoked_at';
export const AUDIT_COLUMNS = 'seq, at, actor, action, target, outcome, reason, details, prev_hash, hash';
const str = (v) => v;
export const num = (v) => Number(v);
export const numOrNull = (v) => (v === null || v === undefined ? null : Number(v));
const strOrNull = (v) => (v === null || v === undefined ? null : v);
export function toKey(r) {
    return {
        name: str(r.name),
        type: r.type,
        createdAt: num(r.created_at),
        rotationPeriodMs: numOrNull(r.rotation_period_ms),
        nextRotationAt: numOrNull(r.next_rotation_at),
        primaryVersion: num(r.primary_version),
        minDecryptVersion: num(r.min_decrypt_version),
        pairServices: r.pair_a === null ? null : [str(r.pair_a), str(r.pair_b)],
    };
}
export function toKeyVersion(r) {
    return {
        keyName: str(r.key_name),
        version: num(r.version),
        state: r.state,
        sealedMaterial: r.material === null ? null : fromBlob(r.material),
        createdAt: num(r.created_at),
        stateChangedAt: num(r.state_changed_at),
        destroyAt: numOrNull(r.destroy_at),
        notAfter: numOrNull(r.not_after),
        previousState: strOrNull(r.previous_state),
    };
}
export function toIntention(r) {
    return { src: str(r.src), dst: str(r.dst), createdAt: num(r.created_at) };
}
export function toAgent(r) {
    return {
        id: str(r.id),
        service: str(r.service),
        staticKey: fromBlob(r.static_key),
        enrolledAt: num(r.enrolled_at),
        revokedAt: numOrNull(r.revoked_at),
        lastSeenAt: numOrNull(r.last_seen_at),
        endpoint: strOrNull(r.endpoint),
    };
}
export function toJoinToken(r) {
    return {
        id: str(r.id),
        tokenHash: fromBlob(r.token_hash),
        service: str(r.service),
        createdAt: num(r.created_at),
        expiresAt: num(r.expires_at),
        usedAt: numOrNull(r.used_at),
        usedByAgent: strOrNull(r.used_by_agent),
    };
}
export function toOperatorToken(r) {
    return {
        id: str(r.id),
        name: str(r.name),
        tokenHash: fromBlob(r.token_hash),
        role: r.role,
        createdAt: num(r.created_at),
        expiresAt: numOrNull(r.expires_at),
        revokedAt: numOrNull(r.revoked_at),
    };
}
export function toAuditRow(r) {
    return {
        seq: num(r.seq),
        at: num(r.at),
        actor: str(r.actor),
        action: str(r.action),
        target: str(r.target),
        outcome: r.outcome,
        reason: str(r.reason),
        detailsJson: str(r.details),
        prevHash: fromBlob(r.prev_hash),
        hash: fromBlob(r.hash),
    };
}
/** Collects `AND`ed conditions with their parameters; `sql` is '' or ' WHERE …'. */
export function where() {
    const conds = [];
    const args = [];
    return {
        add(cond, ...a) {
            conds.push(cond);
            args.push(...a);
        },
        get sql() {
            return conds.length === 0 ? '' : ` WHERE ${conds.join(' AND ')}`;
        },
        args,
    };
}
//# sourceMappingURL=sql-rows.js.map