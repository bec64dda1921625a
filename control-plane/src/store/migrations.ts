// Numbered schema migrations for the SQLite store. Each runs once, in order,
// inside the transaction that records it in schema_migrations, so a crash leaves
// either the old schema or the new one. Never edit a released migration: add one.
// The PostgreSQL store keeps its own list with the same numbers and names, so a
// schema version means the same tables on both back-ends; the SQL stays close to
// the common subset (TEXT, INTEGER, CHECK, plain indexes) to make that list easy.

export interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

/** What migration 7 differs in between the two back-ends. */
export interface ElapsedGuardDialect {
  readonly integer: 'INTEGER' | 'BIGINT'
  /** The two-argument maximum: MAX in SQLite, GREATEST in PostgreSQL. */
  readonly greatest: 'MAX' | 'GREATEST'
  /** The database's wall clock now, in ms since the epoch. */
  readonly nowMs: string
}

/**
 * Migration 7, one text for both back-ends (pg-migrations.ts passes its dialect).
 * Elapsed time the control planes have observed (elapsed-ledger.ts): one row, made by
 * the first advance. Each deadline that destroys material gets a twin column, the
 * ledger reading that must be reached as well as the wall time, so that a wall clock
 * stepped ahead never destroys early (the argument is in elapsed-ledger.ts). Deadlines
 * pending at the upgrade must also see the time left to them by the database's clock
 * go by: the ledger starts at 0.
 */
export function elapsedGuardMigration(d: ElapsedGuardDialect): Migration {
  const left = (column: string): string => `${d.greatest}(0, ${column} - ${d.nowMs})`
  return {
    version: 7,
    name: 'elapsed guard on destruction deadlines',
    sql: `
CREATE TABLE elapsed_ledger (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  observed_ms ${d.integer} NOT NULL CHECK (observed_ms >= 0),
  writer TEXT NOT NULL,
  advanced_at ${d.integer} NOT NULL
);
ALTER TABLE key_versions ADD COLUMN destroy_at_observed ${d.integer};
ALTER TABLE key_versions ADD COLUMN not_after_observed ${d.integer};
ALTER TABLE intentions ADD COLUMN expires_at_observed ${d.integer};
UPDATE key_versions SET destroy_at_observed = ${left('destroy_at')} WHERE state = 'scheduled-destruction' AND destroy_at IS NOT NULL;
UPDATE key_versions SET not_after_observed = ${left('not_after')} WHERE state <> 'destroyed' AND not_after IS NOT NULL;
UPDATE intentions SET expires_at_observed = ${left('expires_at')} WHERE expires_at IS NOT NULL;
`,
  }
}

const ZERO_HASH = `X'${'00'.repeat(32)}'`

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL
);

CREATE TABLE keys (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('aead', 'x25519', 'pair')),
  created_at INTEGER NOT NULL,
  rotation_period_ms INTEGER,
  next_rotation_at INTEGER,
  primary_version INTEGER NOT NULL,
  min_decrypt_version INTEGER NOT NULL,
  pair_a TEXT,
  pair_b TEXT,
  CHECK ((type = 'pair' AND pair_a IS NOT NULL AND pair_b IS NOT NULL)
      OR (type <> 'pair' AND pair_a IS NULL AND pair_b IS NULL))
);
CREATE UNIQUE INDEX keys_pair ON keys (pair_a, pair_b);
CREATE INDEX keys_next_rotation ON keys (next_rotation_at);

CREATE TABLE key_versions (
  key_name TEXT NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
  version INTEGER NOT NULL CHECK (version >= 1),
  state TEXT NOT NULL CHECK (state IN ('enabled', 'decrypt-only', 'disabled', 'scheduled-destruction', 'destroyed')),
  material BLOB,
  created_at INTEGER NOT NULL,
  state_changed_at INTEGER NOT NULL,
  destroy_at INTEGER,
  not_after INTEGER,
  previous_state TEXT CHECK (previous_state IS NULL
    OR previous_state IN ('enabled', 'decrypt-only', 'disabled', 'scheduled-destruction', 'destroyed')),
  PRIMARY KEY (key_name, version),
  -- Destroyed means erased: the material column is empty exactly then.
  CHECK ((state = 'destroyed') = (material IS NULL))
);
CREATE INDEX key_versions_destroy_at ON key_versions (destroy_at);
CREATE INDEX key_versions_not_after ON key_versions (not_after);

-- One row per right ("right" is a keyword in both SQL dialects, hence grant_right).
CREATE TABLE grants (
  key_name TEXT NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
  service TEXT NOT NULL,
  grant_right TEXT NOT NULL CHECK (grant_right IN ('encrypt', 'decrypt', 'generate-data-key', 'rotate', 'manage')),
  PRIMARY KEY (key_name, service, grant_right)
);
CREATE INDEX grants_service ON grants (service);

CREATE TABLE intentions (
  src TEXT NOT NULL,
  dst TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (src, dst)
);
CREATE INDEX intentions_dst ON intentions (dst);

CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  static_key BLOB NOT NULL UNIQUE,
  enrolled_at INTEGER NOT NULL,
  revoked_at INTEGER,
  last_seen_at INTEGER,
  endpoint TEXT
);
CREATE INDEX agents_service ON agents (service);

-- used_by_agent has no foreign key on purpose: enrollment may mark the token
-- before or after inserting the agent within its transaction.
CREATE TABLE join_tokens (
  id TEXT PRIMARY KEY,
  token_hash BLOB NOT NULL UNIQUE,
  service TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  used_by_agent TEXT
);

CREATE TABLE operator_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash BLOB NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER
);

CREATE TABLE usage_batches (
  agent_id TEXT NOT NULL REFERENCES agents (id),
  seq INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (agent_id, seq)
);

CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY CHECK (seq >= 1),
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'ok', 'error')),
  reason TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor);
CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_target ON audit_log (target);

-- Append-only: the code never updates or deletes an entry, and these triggers make
-- an accidental attempt fail loudly. They do not stop someone with the file; the
-- hash chain and the head row below are what detect that.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

-- The chain head (last seq and hash), one row, updated in the appending
-- transaction. A truncated log no longer matches it.
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ${ZERO_HASH});
`,
  },
  {
    version: 2,
    name: 'keyed audit chain',
    sql: `
-- The MAC of each entry under a key derived from the master key (audit-chain.ts).
-- NULL on entries written before this migration: the control plane's next start
-- appends a bridge entry whose MAC covers them, and MACs every entry after it.
ALTER TABLE audit_log ADD COLUMN mac BLOB;

-- Signed checkpoints (audit-checkpoint.ts): the chain's hash at seq, signed with
-- the installation's Ed25519 audit key, checkable with audit.pub alone.
CREATE TABLE audit_checkpoints (
  seq INTEGER PRIMARY KEY CHECK (seq >= 1),
  hash BLOB NOT NULL,
  at INTEGER NOT NULL,
  signature BLOB NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
`,
  },
  {
    version: 4,
    name: 'signing and MAC keys',
    sql: `
-- Key types ed25519, ecdsa-p256 and hmac-sha256, and the rights sign, verify and
-- hmac (services/kms-ops.ts). SQLite cannot alter a CHECK, so keys and grants are
-- rebuilt as sqlite.org/lang_altertable.html §7 says: a new table, the rows
-- copied, the old one dropped, the new one renamed. The migration runs with
-- foreign keys off (sqlite-store.ts migrate), so dropping keys does not cascade
-- into key_versions, whose references name "keys" and so the new table.
CREATE TABLE keys_new (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('aead', 'x25519', 'pair', 'ed25519', 'ecdsa-p256', 'hmac-sha256')),
  created_at INTEGER NOT NULL,
  rotation_period_ms INTEGER,
  next_rotation_at INTEGER,
  primary_version INTEGER NOT NULL,
  min_decrypt_version INTEGER NOT NULL,
  pair_a TEXT,
  pair_b TEXT,
  CHECK ((type = 'pair' AND pair_a IS NOT NULL AND pair_b IS NOT NULL)
      OR (type <> 'pair' AND pair_a IS NULL AND pair_b IS NULL))
);
INSERT INTO keys_new (name, type, created_at, rotation_period_ms, next_rotation_at, primary_version, min_decrypt_version, pair_a, pair_b)
  SELECT name, type, created_at, rotation_period_ms, next_rotation_at, primary_version, min_decrypt_version, pair_a, pair_b FROM keys;
DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;
CREATE UNIQUE INDEX keys_pair ON keys (pair_a, pair_b);
CREATE INDEX keys_next_rotation ON keys (next_rotation_at);

CREATE TABLE grants_new (
  key_name TEXT NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
  service TEXT NOT NULL,
  grant_right TEXT NOT NULL CHECK (grant_right IN ('encrypt', 'decrypt', 'generate-data-key', 'rotate', 'manage', 'sign', 'verify', 'hmac')),
  PRIMARY KEY (key_name, service, grant_right)
);
INSERT INTO grants_new (key_name, service, grant_right) SELECT key_name, service, grant_right FROM grants;
DROP TABLE grants;
ALTER TABLE grants_new RENAME TO grants;
CREATE INDEX grants_service ON grants (service);
`,
  },
  {
    version: 5,
    name: 'key usage and imported versions',
    sql: `
-- Uses of each key version per service and UTC day (day = floor(ms / 86,400,000)), from
-- KMS calls and agents' tunnel reports (services/key-usage.ts). Daily buckets keep the
-- table bounded: the scheduler prunes buckets older than the guard window.
CREATE TABLE key_usage (
  key_name TEXT NOT NULL,
  version INTEGER NOT NULL,
  service TEXT NOT NULL,
  day INTEGER NOT NULL,
  uses INTEGER NOT NULL CHECK (uses >= 0),
  last_used_at INTEGER NOT NULL,
  PRIMARY KEY (key_name, version, service, day)
);
CREATE INDEX key_usage_day ON key_usage (day);

-- Where a version's material came from: made here, or imported (keymesh key import).
ALTER TABLE key_versions ADD COLUMN origin TEXT NOT NULL DEFAULT 'generated' CHECK (origin IN ('generated', 'imported'));
`,
  },
  {
    version: 6,
    name: 'explicit deny intentions, removal grace, join-token revocation',
    sql: `
-- An intention is a rule: allow or deny, either side possibly '*' (any service).
-- A deny wins over every allow that matches (policy.ts). expires_at is set while
-- a removed allow keeps working through its grace; the scheduler deletes it then.
ALTER TABLE intentions ADD COLUMN effect TEXT NOT NULL DEFAULT 'allow' CHECK (effect IN ('allow', 'deny'));
ALTER TABLE intentions ADD COLUMN expires_at INTEGER;
CREATE INDEX intentions_expires_at ON intentions (expires_at);
-- A revoked join token enrols nothing; it stays listed until it expires.
ALTER TABLE join_tokens ADD COLUMN revoked_at INTEGER;
`,
  },
  elapsedGuardMigration({ integer: 'INTEGER', greatest: 'MAX', nowMs: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)" }),
  {
    version: 8,
    name: 'operator console: sessions, replicas, open tunnels',
    sql: `
-- Console sessions and one-time sign-in links (ui/session.ts). Only the SHA-256 of
-- the cookie's or link's secret is kept. A session works while its operator token
-- does (checked on every request, on every replica) and until expires_at.
CREATE TABLE console_sessions (
  id TEXT PRIMARY KEY,
  secret_hash BLOB NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('session', 'link')),
  token_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);

-- Each control-plane replica's own word on itself, rewritten every few seconds (ui/replicas.ts).
CREATE TABLE console_replicas (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  seen_at INTEGER NOT NULL,
  status TEXT NOT NULL
);

-- Tunnels open per agent and pair: the agent's reported opens minus its closes
-- (agent-endpoint/usage.ts), never below zero.
CREATE TABLE agent_tunnels (
  agent_id TEXT NOT NULL,
  pair_id TEXT NOT NULL,
  open INTEGER NOT NULL CHECK (open >= 0),
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (agent_id, pair_id)
);

-- The overview's recent refusals (outcome = 'deny', newest first): without it the
-- newest few refusals of a long log are found by walking the whole log backwards.
CREATE INDEX audit_log_outcome_seq ON audit_log (outcome, seq);
`,
  },
]

/** The newest schema version this code knows. */
export const LATEST_SCHEMA_VERSION: number = SQLITE_MIGRATIONS.reduce((m, x) => Math.max(m, x.version), 0)
