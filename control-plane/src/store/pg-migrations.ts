// Numbered schema migrations for the PostgreSQL store: the same versions and
// names as SQLITE_MIGRATIONS (migrations.ts), and the same tables, columns,
// checks and indexes, so a schema version means the same thing on both
// back-ends (a test keeps the two lists in step). Dialect differences only:
// BYTEA for BLOB, BIGINT for INTEGER (times are ms since the epoch), and the
// append-only audit triggers as a plpgsql function. Never edit a released
// migration: add one, to both lists.
import { elapsedGuardMigration, type Migration } from './migrations.js'

const ZERO_HASH = `'\\x${'00'.repeat(32)}'::bytea`

export const PG_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value BYTEA NOT NULL
);

CREATE TABLE keys (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('aead', 'x25519', 'pair')),
  created_at BIGINT NOT NULL,
  rotation_period_ms BIGINT,
  next_rotation_at BIGINT,
  primary_version BIGINT NOT NULL,
  min_decrypt_version BIGINT NOT NULL,
  pair_a TEXT,
  pair_b TEXT,
  CHECK ((type = 'pair' AND pair_a IS NOT NULL AND pair_b IS NOT NULL)
      OR (type <> 'pair' AND pair_a IS NULL AND pair_b IS NULL))
);
CREATE UNIQUE INDEX keys_pair ON keys (pair_a, pair_b);
CREATE INDEX keys_next_rotation ON keys (next_rotation_at);

CREATE TABLE key_versions (
  key_name TEXT NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
  version BIGINT NOT NULL CHECK (version >= 1),
  state TEXT NOT NULL CHECK (state IN ('enabled', 'decrypt-only', 'disabled', 'scheduled-destruction', 'destroyed')),
  material BYTEA,
  created_at BIGINT NOT NULL,
  state_changed_at BIGINT NOT NULL,
  destroy_at BIGINT,
  not_after BIGINT,
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
  created_at BIGINT NOT NULL,
  PRIMARY KEY (src, dst)
);
CREATE INDEX intentions_dst ON intentions (dst);

CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  static_key BYTEA NOT NULL UNIQUE,
  enrolled_at BIGINT NOT NULL,
  revoked_at BIGINT,
  last_seen_at BIGINT,
  endpoint TEXT
);
CREATE INDEX agents_service ON agents (service);

-- used_by_agent has no foreign key on purpose: enrollment may mark the token
-- before or after inserting the agent within its transaction.
CREATE TABLE join_tokens (
  id TEXT PRIMARY KEY,
  token_hash BYTEA NOT NULL UNIQUE,
  service TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  used_by_agent TEXT
);

CREATE TABLE operator_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash BYTEA NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT
);

CREATE TABLE usage_batches (
  agent_id TEXT NOT NULL REFERENCES agents (id),
  seq BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (agent_id, seq)
);

CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY CHECK (seq >= 1),
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'ok', 'error')),
  reason TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash BYTEA NOT NULL,
  hash BYTEA NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor);
CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_target ON audit_log (target);

-- Append-only: the code never updates or deletes an entry, and these triggers make
-- an accidental attempt fail loudly. They do not stop the table's owner (who can
-- drop them); the hash chain and the head row below are what detect that.
-- Statement-level, so TRUNCATE and a DELETE that matches no row are refused too.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The chain head (last seq and hash), one row, updated in the appending
-- transaction. A truncated log no longer matches it.
CREATE TABLE audit_head (
  id BIGINT PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL,
  hash BYTEA NOT NULL
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
ALTER TABLE audit_log ADD COLUMN mac BYTEA;

-- Signed checkpoints (audit-checkpoint.ts): the chain's hash at seq, signed with
-- the installation's Ed25519 audit key, checkable with audit.pub alone.
CREATE TABLE audit_checkpoints (
  seq BIGINT PRIMARY KEY CHECK (seq >= 1),
  hash BYTEA NOT NULL,
  at BIGINT NOT NULL,
  signature BYTEA NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
`,
  },
  {
    version: 4,
    name: 'signing and MAC keys',
    sql: `
-- Key types ed25519, ecdsa-p256 and hmac-sha256, and the rights sign, verify and hmac.
ALTER TABLE keys DROP CONSTRAINT keys_type_check;
ALTER TABLE keys ADD CONSTRAINT keys_type_check
  CHECK (type IN ('aead', 'x25519', 'pair', 'ed25519', 'ecdsa-p256', 'hmac-sha256'));
ALTER TABLE grants DROP CONSTRAINT grants_grant_right_check;
ALTER TABLE grants ADD CONSTRAINT grants_grant_right_check
  CHECK (grant_right IN ('encrypt', 'decrypt', 'generate-data-key', 'rotate', 'manage', 'sign', 'verify', 'hmac'));
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
  version BIGINT NOT NULL,
  service TEXT NOT NULL,
  day BIGINT NOT NULL,
  uses BIGINT NOT NULL CHECK (uses >= 0),
  last_used_at BIGINT NOT NULL,
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
ALTER TABLE intentions ADD COLUMN expires_at BIGINT;
CREATE INDEX intentions_expires_at ON intentions (expires_at);
-- A revoked join token enrols nothing; it stays listed until it expires.
ALTER TABLE join_tokens ADD COLUMN revoked_at BIGINT;
`,
  },
  elapsedGuardMigration({ integer: 'BIGINT', greatest: 'GREATEST', nowMs: '(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT' }),
  {
    version: 8,
    name: 'operator console: sessions, replicas, open tunnels',
    sql: `
-- Console sessions and one-time sign-in links (ui/session.ts). Only the SHA-256 of
-- the cookie's or link's secret is kept. A session works while its operator token
-- does (checked on every request, on every replica) and until expires_at.
CREATE TABLE console_sessions (
  id TEXT PRIMARY KEY,
  secret_hash BYTEA NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('session', 'link')),
  token_id TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);

-- Each control-plane replica's own word on itself, rewritten every few seconds (ui/replicas.ts).
CREATE TABLE console_replicas (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  seen_at BIGINT NOT NULL,
  status TEXT NOT NULL
);

-- Tunnels open per agent and pair: the agent's reported opens minus its closes
-- (agent-endpoint/usage.ts), never below zero.
CREATE TABLE agent_tunnels (
  agent_id TEXT NOT NULL,
  pair_id TEXT NOT NULL,
  open BIGINT NOT NULL CHECK (open >= 0),
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (agent_id, pair_id)
);

-- The overview's recent refusals (outcome = 'deny', newest first): without it the
-- newest few refusals of a long log are found by walking the whole log backwards.
CREATE INDEX audit_log_outcome_seq ON audit_log (outcome, seq);
`,
  },
]
