// The transaction object of every SQL back-end: the repository methods for
// agents, join and operator tokens, usage batches and the audit log, on top of
// the key methods in sql-tx-keys.ts. One object per transaction; a back-end's
// subclass (sqlite-tx.ts, pg-tx.ts) runs the SQL on the connection its store
// holds inside BEGIN … COMMIT.
import { cpError } from '../errors.js'
import type {
  AgentPatch,
  AgentRecord,
  AgentTunnelRecord,
  ConsoleReplicaRecord,
  ConsoleSessionRecord,
  AuditCheckpointRecord,
  AuditHead,
  AuditRow,
  JoinTokenRecord,
  NewJoinToken,
  OperatorTokenRecord,
  UsageBatchRecord,
} from './records.js'
import {
  AGENT_COLUMNS,
  AGENT_TUNNEL_COLUMNS,
  CONSOLE_REPLICA_COLUMNS,
  CONSOLE_SESSION_COLUMNS,
  toAgentTunnel,
  toConsoleReplica,
  toConsoleSession,
  AUDIT_COLUMNS,
  CHECKPOINT_COLUMNS,
  JOIN_TOKEN_COLUMNS,
  OPERATOR_TOKEN_COLUMNS,
  toAgent,
  toAuditCheckpoint,
  toAuditRow,
  toJoinToken,
  toOperatorToken,
  fromBlob,
  num,
  numOrNull,
  where,
} from './sql-rows.js'
import { SqlKeyRepository } from './sql-tx-keys.js'
import type { AuditCheckpointFilter, AuditFilter, StoreTx } from './store.js'

const AGENT_PATCH: Record<keyof AgentPatch, string> = {
  revokedAt: 'revoked_at',
  lastSeenAt: 'last_seen_at',
  endpoint: 'endpoint',
}

export abstract class SqlTx extends SqlKeyRepository implements StoreTx {
  // agents

  async getAgent(id: string): Promise<AgentRecord | null> {
    const row = await this.get(`SELECT ${AGENT_COLUMNS} FROM agents WHERE id = ?`, id)
    return row ? toAgent(row) : null
  }
  async getAgentByStaticKey(staticKey: Uint8Array): Promise<AgentRecord | null> {
    const row = await this.get(`SELECT ${AGENT_COLUMNS} FROM agents WHERE static_key = ?`, staticKey)
    return row ? toAgent(row) : null
  }
  async listAgents(filter: { service?: string; includeRevoked?: boolean } = {}): Promise<AgentRecord[]> {
    const w = where()
    if (filter.service !== undefined) w.add('service = ?', filter.service)
    if (filter.includeRevoked !== true) w.add('revoked_at IS NULL')
    return (await this.all(`SELECT ${AGENT_COLUMNS} FROM agents${w.sql} ORDER BY enrolled_at, id`, ...w.args)).map(toAgent)
  }
  async insertAgent(a: AgentRecord): Promise<void> {
    await this.run(
      `INSERT INTO agents (id, service, static_key, enrolled_at, revoked_at, last_seen_at, endpoint)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      a.id, a.service, a.staticKey, a.enrolledAt, a.revokedAt, a.lastSeenAt, a.endpoint,
    )
  }
  async updateAgent(id: string, patch: AgentPatch): Promise<boolean> {
    return this.patch('agents', AGENT_PATCH, patch, 'id = ?', [id])
  }

  // join tokens

  async getJoinToken(id: string): Promise<JoinTokenRecord | null> {
    const row = await this.get(`SELECT ${JOIN_TOKEN_COLUMNS} FROM join_tokens WHERE id = ?`, id)
    return row ? toJoinToken(row) : null
  }
  async getJoinTokenByHash(tokenHash: Uint8Array): Promise<JoinTokenRecord | null> {
    const row = await this.get(`SELECT ${JOIN_TOKEN_COLUMNS} FROM join_tokens WHERE token_hash = ?`, tokenHash)
    return row ? toJoinToken(row) : null
  }
  async listJoinTokens(filter: { service?: string; unusedOnly?: boolean } = {}): Promise<JoinTokenRecord[]> {
    const w = where()
    if (filter.service !== undefined) w.add('service = ?', filter.service)
    if (filter.unusedOnly === true) w.add('used_at IS NULL')
    return (await this.all(`SELECT ${JOIN_TOKEN_COLUMNS} FROM join_tokens${w.sql} ORDER BY created_at, id`, ...w.args)).map(toJoinToken)
  }
  async insertJoinToken(t: NewJoinToken): Promise<void> {
    await this.run(
      `INSERT INTO join_tokens (id, token_hash, service, created_at, expires_at, used_at, used_by_agent)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      t.id, t.tokenHash, t.service, t.createdAt, t.expiresAt, t.usedAt, t.usedByAgent,
    )
  }
  async markJoinTokenUsed(id: string, usedAt: number, agentId: string): Promise<boolean> {
    return (await this.run('UPDATE join_tokens SET used_at = ?, used_by_agent = ? WHERE id = ? AND used_at IS NULL', usedAt, agentId, id)) > 0
  }
  async revokeJoinToken(id: string, revokedAt: number): Promise<boolean> {
    return (await this.run('UPDATE join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', revokedAt, id)) > 0
  }
  async deleteJoinTokensExpiredBefore(time: number): Promise<number> {
    return this.run('DELETE FROM join_tokens WHERE expires_at < ?', time)
  }

  // operator tokens

  async getOperatorToken(id: string): Promise<OperatorTokenRecord | null> {
    const row = await this.get(`SELECT ${OPERATOR_TOKEN_COLUMNS} FROM operator_tokens WHERE id = ?`, id)
    return row ? toOperatorToken(row) : null
  }
  async getOperatorTokenByHash(tokenHash: Uint8Array): Promise<OperatorTokenRecord | null> {
    const row = await this.get(`SELECT ${OPERATOR_TOKEN_COLUMNS} FROM operator_tokens WHERE token_hash = ?`, tokenHash)
    return row ? toOperatorToken(row) : null
  }
  async listOperatorTokens(filter: { includeRevoked?: boolean } = {}): Promise<OperatorTokenRecord[]> {
    const cond = filter.includeRevoked === true ? '' : ' WHERE revoked_at IS NULL'
    return (await this.all(`SELECT ${OPERATOR_TOKEN_COLUMNS} FROM operator_tokens${cond} ORDER BY created_at, id`)).map(toOperatorToken)
  }
  async insertOperatorToken(t: OperatorTokenRecord): Promise<void> {
    await this.run(
      `INSERT INTO operator_tokens (id, name, token_hash, role, created_at, expires_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      t.id, t.name, t.tokenHash, t.role, t.createdAt, t.expiresAt, t.revokedAt,
    )
  }
  async revokeOperatorToken(id: string, revokedAt: number): Promise<boolean> {
    return (await this.run('UPDATE operator_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', revokedAt, id)) > 0
  }

  // usage batches

  async recordUsageBatch(b: UsageBatchRecord): Promise<boolean> {
    return (await this.run(
      'INSERT INTO usage_batches (agent_id, seq, received_at) VALUES (?, ?, ?) ON CONFLICT (agent_id, seq) DO NOTHING',
      b.agentId, b.seq, b.receivedAt,
    )) > 0
  }
  async lastUsageBatchSeq(agentId: string): Promise<number | null> {
    const row = await this.get('SELECT MAX(seq) AS s FROM usage_batches WHERE agent_id = ?', agentId)
    return numOrNull(row?.s)
  }

  // audit

  getAuditHead(): Promise<AuditHead> {
    return this.#auditHead('')
  }
  // The row lock makes a second appender wait for this transaction to end; on
  // SQLite the write transaction already holds the only write lock (rowLock '').
  lockAuditHead(): Promise<AuditHead> {
    return this.#auditHead(this.rowLock)
  }
  async #auditHead(lock: string): Promise<AuditHead> {
    const row = await this.get(`SELECT seq, hash FROM audit_head WHERE id = 1${lock}`)
    if (!row) throw cpError('CP_ERR_STORE', 'audit head row is missing')
    return { seq: num(row.seq), hash: fromBlob(row.hash) }
  }
  async appendAuditRow(r: AuditRow): Promise<void> {
    await this.run(
      `INSERT INTO audit_log (seq, at, actor, action, target, outcome, reason, details, prev_hash, hash, mac)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      r.seq, r.at, r.actor, r.action, r.target, r.outcome, r.reason, r.detailsJson, r.prevHash, r.hash, r.mac,
    )
    // Moves the head only from the entry before this one: a second writer that
    // computed the same seq fails here instead of forking the chain.
    if ((await this.run('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?', r.seq, r.hash, r.seq - 1)) !== 1) {
      throw cpError('CP_ERR_CONFLICT', 'audit head moved while appending')
    }
  }
  async listAuditEntries(f: AuditFilter): Promise<AuditRow[]> {
    const w = where()
    if (f.from !== undefined) w.add('at >= ?', f.from)
    if (f.to !== undefined) w.add('at < ?', f.to)
    if (f.actor !== undefined) w.add('actor = ?', f.actor)
    if (f.action !== undefined) w.add('action = ?', f.action)
    if (f.target !== undefined) w.add('target = ?', f.target)
    if (f.outcome !== undefined) w.add('outcome = ?', f.outcome)
    if (f.afterSeq !== undefined) w.add('seq > ?', f.afterSeq)
    if (f.beforeSeq !== undefined) w.add('seq < ?', f.beforeSeq)
    const order = f.order === 'desc' ? 'DESC' : 'ASC'
    const limit = Math.max(0, Math.floor(f.limit))
    return (await this.all(`SELECT ${AUDIT_COLUMNS} FROM audit_log${w.sql} ORDER BY seq ${order} LIMIT ?`, ...w.args, limit)).map(toAuditRow)
  }

  async insertAuditCheckpoint(c: AuditCheckpointRecord): Promise<boolean> {
    return (await this.run(
      'INSERT INTO audit_checkpoints (seq, hash, at, signature) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING',
      c.seq, c.hash, c.at, c.signature,
    )) > 0
  }
  async listAuditCheckpoints(f: AuditCheckpointFilter): Promise<AuditCheckpointRecord[]> {
    const w = where()
    if (f.afterSeq !== undefined) w.add('seq > ?', f.afterSeq)
    if (f.upToSeq !== undefined) w.add('seq <= ?', f.upToSeq)
    const order = f.order === 'desc' ? 'DESC' : 'ASC'
    const limit = Math.max(0, Math.floor(f.limit))
    return (await this.all(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints${w.sql} ORDER BY seq ${order} LIMIT ?`, ...w.args, limit)).map(toAuditCheckpoint)
  }

  // the operator console (ui/)

  async getConsoleSession(secretHash: Uint8Array): Promise<ConsoleSessionRecord | null> {
    const row = await this.get(`SELECT ${CONSOLE_SESSION_COLUMNS} FROM console_sessions WHERE secret_hash = ?`, secretHash)
    return row ? toConsoleSession(row) : null
  }
  async insertConsoleSession(c: ConsoleSessionRecord): Promise<void> {
    await this.run(
      'INSERT INTO console_sessions (id, secret_hash, kind, token_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
      c.id, c.secretHash, c.kind, c.tokenId, c.createdAt, c.expiresAt,
    )
  }
  async deleteConsoleSession(id: string): Promise<boolean> {
    return (await this.run('DELETE FROM console_sessions WHERE id = ?', id)) > 0
  }
  async deleteConsoleSessionsExpiredBefore(time: number): Promise<number> {
    return this.run('DELETE FROM console_sessions WHERE expires_at < ?', time)
  }
  async listConsoleReplicas(): Promise<ConsoleReplicaRecord[]> {
    return (await this.all(`SELECT ${CONSOLE_REPLICA_COLUMNS} FROM console_replicas ORDER BY id`)).map(toConsoleReplica)
  }
  async putConsoleReplica(r: ConsoleReplicaRecord): Promise<void> {
    await this.run(
      `INSERT INTO console_replicas (id, url, started_at, seen_at, status) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, started_at = excluded.started_at, seen_at = excluded.seen_at, status = excluded.status`,
      r.id, r.url, r.startedAt, r.seenAt, r.statusJson,
    )
  }
  async deleteConsoleReplicasSeenBefore(time: number): Promise<number> {
    return this.run('DELETE FROM console_replicas WHERE seen_at < ?', time)
  }
  async listAgentTunnels(filter: { agentId?: string } = {}): Promise<AgentTunnelRecord[]> {
    const w = where()
    w.add('open > 0')
    if (filter.agentId !== undefined) w.add('agent_id = ?', filter.agentId)
    return (await this.all(`SELECT ${AGENT_TUNNEL_COLUMNS} FROM agent_tunnels${w.sql} ORDER BY agent_id, pair_id`, ...w.args)).map(toAgentTunnel)
  }
  async addAgentTunnels(agentId: string, deltas: ReadonlyMap<string, number>, at: number): Promise<void> {
    for (const [pairId, delta] of deltas) {
      // CASE rather than MAX()/GREATEST(): the same SQL on both back-ends.
      await this.run(
        `INSERT INTO agent_tunnels (agent_id, pair_id, open, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (agent_id, pair_id) DO UPDATE SET updated_at = excluded.updated_at,
           open = CASE WHEN agent_tunnels.open + ? < 0 THEN 0 ELSE agent_tunnels.open + ? END`,
        agentId, pairId, Math.max(0, delta), at, delta, delta,
      )
    }
  }
}
