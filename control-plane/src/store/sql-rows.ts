// Column lists and row → record mapping for every SQL back-end, and a small WHERE
// builder. Kept apart from the queries so sql-tx.ts reads as the repository.
// Drivers differ in what they hand back: SQLite gives numbers and Buffers,
// PostgreSQL may give BIGINT as a string and BYTEA as a Buffer; the helpers
// here turn both into the plain numbers and Uint8Arrays of records.ts.
import type {
  AgentRecord,
  AgentTunnelRecord,
  ConsoleReplicaRecord,
  ConsoleSessionRecord,
  IntentionEffect,
  IntentionRecord,
  AuditOutcome,
  AuditCheckpointRecord,
  AuditRow,
  JoinTokenRecord,
  KeyRecord,
  KeyType,
  KeyUsageRecord,
  KeyVersionRecord,
  OperatorRole,
  OperatorTokenRecord,
  VersionState,
} from './records.js'
export type Row = Record<string, unknown>

/** Uint8Array → Buffer without copying (drivers bind Buffers as BLOB/BYTEA). */
export const toBlob = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/** Buffer → a plain Uint8Array copy, so callers see the same type from every back-end. */
export const fromBlob = (b: unknown): Uint8Array => new Uint8Array(b as Buffer)

export const KEY_COLUMNS =
  'name, type, created_at, rotation_period_ms, next_rotation_at, primary_version, min_decrypt_version, pair_a, pair_b'
export const VERSION_COLUMNS =
  'key_name, version, state, material, created_at, state_changed_at, destroy_at, not_after, previous_state, origin, destroy_at_observed, not_after_observed'
export const AGENT_COLUMNS = 'id, service, static_key, enrolled_at, revoked_at, last_seen_at, endpoint'
export const JOIN_TOKEN_COLUMNS = 'id, token_hash, service, created_at, expires_at, used_at, used_by_agent, revoked_at'
export const INTENTION_COLUMNS = 'src, dst, created_at, effect, expires_at, expires_at_observed'
export const OPERATOR_TOKEN_COLUMNS = 'id, name, token_hash, role, created_at, expires_at, revoked_at'
export const AUDIT_COLUMNS = 'seq, at, actor, action, target, outcome, reason, details, prev_hash, hash, mac'
export const CHECKPOINT_COLUMNS = 'seq, hash, at, signature'
export const CONSOLE_SESSION_COLUMNS = 'id, secret_hash, kind, token_id, created_at, expires_at'
export const CONSOLE_REPLICA_COLUMNS = 'id, url, started_at, seen_at, status'
export const AGENT_TUNNEL_COLUMNS = 'agent_id, pair_id, open, updated_at'

const str = (v: unknown): string => v as string
export const num = (v: unknown): number => Number(v)
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : (v as string))

export function toKey(r: Row): KeyRecord {
  return {
    name: str(r.name),
    type: r.type as KeyType,
    createdAt: num(r.created_at),
    rotationPeriodMs: numOrNull(r.rotation_period_ms),
    nextRotationAt: numOrNull(r.next_rotation_at),
    primaryVersion: num(r.primary_version),
    minDecryptVersion: num(r.min_decrypt_version),
    pairServices: r.pair_a === null ? null : [str(r.pair_a), str(r.pair_b)],
  }
}

export function toKeyVersion(r: Row): KeyVersionRecord {
  return {
    keyName: str(r.key_name),
    version: num(r.version),
    state: r.state as VersionState,
    sealedMaterial: r.material === null ? null : fromBlob(r.material),
    createdAt: num(r.created_at),
    stateChangedAt: num(r.state_changed_at),
    destroyAt: numOrNull(r.destroy_at),
    notAfter: numOrNull(r.not_after),
    previousState: strOrNull(r.previous_state) as VersionState | null,
    ...(r.origin === 'imported' ? { origin: 'imported' as const } : {}),
    ...observed('destroyAtObserved', r.destroy_at_observed),
    ...observed('notAfterObserved', r.not_after_observed),
  }
}

/** An elapsed guard as an optional field: present only when set, so records from before schema 7 read as they did. */
function observed<K extends string>(field: K, v: unknown): { [P in K]?: number } {
  return (v === null || v === undefined ? {} : { [field]: Number(v) }) as { [P in K]?: number }
}

export function toKeyUsage(r: Row): KeyUsageRecord {
  return { keyName: str(r.key_name), version: num(r.version), service: str(r.service), day: num(r.day), uses: num(r.uses), lastUsedAt: num(r.last_used_at) }
}

export function toIntention(r: Row): IntentionRecord {
  return { src: str(r.src), dst: str(r.dst), createdAt: num(r.created_at), effect: r.effect as IntentionEffect, expiresAt: numOrNull(r.expires_at), ...observed('expiresAtObserved', r.expires_at_observed) }
}

export function toAgent(r: Row): AgentRecord {
  return {
    id: str(r.id),
    service: str(r.service),
    staticKey: fromBlob(r.static_key),
    enrolledAt: num(r.enrolled_at),
    revokedAt: numOrNull(r.revoked_at),
    lastSeenAt: numOrNull(r.last_seen_at),
    endpoint: strOrNull(r.endpoint),
  }
}

export function toJoinToken(r: Row): JoinTokenRecord {
  return {
    id: str(r.id),
    tokenHash: fromBlob(r.token_hash),
    service: str(r.service),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    usedAt: numOrNull(r.used_at),
    usedByAgent: strOrNull(r.used_by_agent),
    revokedAt: numOrNull(r.revoked_at),
  }
}

export function toOperatorToken(r: Row): OperatorTokenRecord {
  return {
    id: str(r.id),
    name: str(r.name),
    tokenHash: fromBlob(r.token_hash),
    role: r.role as OperatorRole,
    createdAt: num(r.created_at),
    expiresAt: numOrNull(r.expires_at),
    revokedAt: numOrNull(r.revoked_at),
  }
}

export function toAuditRow(r: Row): AuditRow {
  return {
    seq: num(r.seq),
    at: num(r.at),
    actor: str(r.actor),
    action: str(r.action),
    target: str(r.target),
    outcome: r.outcome as AuditOutcome,
    reason: str(r.reason),
    detailsJson: str(r.details),
    prevHash: fromBlob(r.prev_hash),
    hash: fromBlob(r.hash),
    mac: r.mac === null || r.mac === undefined ? null : fromBlob(r.mac),
  }
}

export function toAuditCheckpoint(r: Row): AuditCheckpointRecord {
  return { seq: num(r.seq), hash: fromBlob(r.hash), at: num(r.at), signature: fromBlob(r.signature) }
}

/** Collects `AND`ed conditions with their parameters; `sql` is '' or ' WHERE …'. */
export function where(): { add(cond: string, ...args: unknown[]): void; readonly sql: string; readonly args: unknown[] } {
  const conds: string[] = []
  const args: unknown[] = []
  return {
    add(cond, ...a) {
      conds.push(cond)
      args.push(...a)
    },
    get sql() {
      return conds.length === 0 ? '' : ` WHERE ${conds.join(' AND ')}`
    },
    args,
  }
}

export function toConsoleSession(r: Row): ConsoleSessionRecord {
  return {
    id: str(r.id),
    secretHash: fromBlob(r.secret_hash),
    kind: r.kind as ConsoleSessionRecord['kind'],
    tokenId: str(r.token_id),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
  }
}

export function toConsoleReplica(r: Row): ConsoleReplicaRecord {
  return { id: str(r.id), url: str(r.url), startedAt: num(r.started_at), seenAt: num(r.seen_at), statusJson: str(r.status) }
}

export function toAgentTunnel(r: Row): AgentTunnelRecord {
  return { agentId: str(r.agent_id), pairId: str(r.pair_id), open: num(r.open), updatedAt: num(r.updated_at) }
}
