// The one storage interface of the control plane. SQLite (sqlite-store.ts) is the
// embedded default; PostgreSQL (pg-store.ts) implements the same interface for
// several replicas on one database, so callers never know which one they hold.
// open.ts picks one from `--store`.
//
// Contract, for every back-end:
//   - All access goes through `read` or `transaction`. A transaction is
//     all-or-nothing: when `fn` throws (or rejects), nothing it wrote remains.
//     Transactions are serialisable with respect to each other.
//   - A tx object is valid only while its `fn` runs; any call after that rejects
//     with CP_ERR_STORE. Calling `transaction`/`read` from inside `fn` rejects
//     with CP_ERR_STORE (it would deadlock): pass the tx down instead.
//   - Inserting a row whose natural key exists rejects with CP_ERR_CONFLICT;
//     a row that refers to a missing key or agent rejects with CP_ERR_NOT_FOUND;
//     any other back-end failure rejects with CP_ERR_STORE (cause attached).
//     Errors thrown by `fn` itself pass through unchanged. After a store error
//     the tx refuses every further call with CP_ERR_STORE (PostgreSQL aborts a
//     transaction at its first error; SQLite is made to behave alike): let the
//     error end the transaction rather than catching it and carrying on.
//   - `update*`/`delete*`/`mark*` resolve to whether a row changed, so callers
//     can make compare-and-set decisions (e.g. `ifState`) without locks.
//   - Lists come back in a stable order (documented per method).
//   - Destroyed means gone: a transaction that erases key material (a version's
//     sealedMaterial set to null, a key deleted) is followed, once committed, by
//     the back-end's scrub of older copies: SQLite checkpoints its WAL and
//     truncates it (secure_delete zeroes the freed cells); PostgreSQL VACUUMs
//     key_versions. A scrub that cannot run now (another process reads) is
//     retried after later transactions; it never fails the committed one.
import type {
  AgentPatch,
  AgentRecord,
  AgentTunnelRecord,
  ConsoleReplicaRecord,
  ConsoleSessionRecord,
  AuditCheckpointRecord,
  AuditHead,
  AuditOutcome,
  AuditRow,
  ElapsedLedgerRecord,
  GrantRecord,
  IntentionPatch,
  IntentionRecord,
  NewIntention,
  NewJoinToken,
  JoinTokenRecord,
  KeyPatch,
  KeyRecord,
  KeyType,
  KeyUsageRecord,
  KeyVersionPatch,
  KeyVersionRecord,
  OperatorTokenRecord,
  UsageBatchRecord,
  VersionState,
} from './records.js'
import type { PgLocation } from './pg-url.js'

export interface KeyFilter {
  readonly type?: KeyType
  /** Pair keys that have this service on either side. */
  readonly service?: string
  /** Keys whose nextRotationAt is set and ≤ this time. */
  readonly rotationDueBy?: number
}

export interface IntentionFilter {
  readonly src?: string
  readonly dst?: string
  /** Rules with this service, or `*`, on either side. */
  readonly service?: string
  /** Rules whose expiresAt is set and ≤ this time. */
  readonly expiresBy?: number
}

export interface KeyVersionFilter {
  readonly keyName?: string
  readonly states?: readonly VersionState[]
  /** Versions whose destroyAt is set and ≤ this time. */
  readonly destroyDueBy?: number
  /** Versions whose notAfter is set and ≤ this time. */
  readonly notAfterBy?: number
}

export interface AuditFilter {
  /** Inclusive lower bound on `at`. */
  readonly from?: number
  /** Exclusive upper bound on `at`. */
  readonly to?: number
  readonly actor?: string
  readonly action?: string
  readonly target?: string
  readonly outcome?: AuditOutcome
  /** Keyset paging: only entries with seq > afterSeq (ascending) or < beforeSeq (descending). */
  readonly afterSeq?: number
  readonly beforeSeq?: number
  /** 'asc' (default) or 'desc' by seq. */
  readonly order?: 'asc' | 'desc'
  /** Required: a back-end never returns an unbounded audit page. */
  readonly limit: number
}

export interface AuditCheckpointFilter {
  /** Only checkpoints with seq > afterSeq. */
  readonly afterSeq?: number
  /** Only checkpoints with seq <= upToSeq. */
  readonly upToSeq?: number
  /** 'asc' (default) or 'desc' by seq. */
  readonly order?: 'asc' | 'desc'
  readonly limit: number
}

/** Read access: every look-up and list. */
export interface StoreReader {
  getMeta(key: string): Promise<Uint8Array | null>

  /** The elapsed ledger (../elapsed-ledger.ts); observedMs 0 and writer '' before its first advance. */
  getElapsedLedger(): Promise<ElapsedLedgerRecord>

  getKey(name: string): Promise<KeyRecord | null>
  /** The pair key of two services, matching either order. */
  findPairKey(serviceA: string, serviceB: string): Promise<KeyRecord | null>
  /** Ordered by name. */
  listKeys(filter?: KeyFilter): Promise<KeyRecord[]>

  getKeyVersion(keyName: string, version: number): Promise<KeyVersionRecord | null>
  /** Ordered by key name, then version ascending. */
  listKeyVersions(filter?: KeyVersionFilter): Promise<KeyVersionRecord[]>
  /** Highest version number of a key, 0 when it has none. */
  lastKeyVersion(keyName: string): Promise<number>

  /** A key's usage buckets from `fromDay` on; ordered by version, service, day. */
  listKeyUsage(keyName: string, fromDay: number): Promise<KeyUsageRecord[]>

  getGrant(keyName: string, service: string): Promise<GrantRecord | null>
  /** Ordered by key name, then service. */
  listGrants(filter?: { keyName?: string; service?: string }): Promise<GrantRecord[]>

  getIntention(src: string, dst: string): Promise<IntentionRecord | null>
  /** Ordered by src, then dst. */
  listIntentions(filter?: IntentionFilter): Promise<IntentionRecord[]>

  getAgent(id: string): Promise<AgentRecord | null>
  getAgentByStaticKey(staticKey: Uint8Array): Promise<AgentRecord | null>
  /** Ordered by enrolledAt, then id. Revoked agents are left out unless asked for. */
  listAgents(filter?: { service?: string; includeRevoked?: boolean }): Promise<AgentRecord[]>

  getJoinToken(id: string): Promise<JoinTokenRecord | null>
  getJoinTokenByHash(tokenHash: Uint8Array): Promise<JoinTokenRecord | null>
  /** Ordered by createdAt, then id. */
  listJoinTokens(filter?: { service?: string; unusedOnly?: boolean }): Promise<JoinTokenRecord[]>

  getOperatorToken(id: string): Promise<OperatorTokenRecord | null>
  getOperatorTokenByHash(tokenHash: Uint8Array): Promise<OperatorTokenRecord | null>
  /** Ordered by createdAt, then id. Revoked tokens are left out unless asked for. */
  listOperatorTokens(filter?: { includeRevoked?: boolean }): Promise<OperatorTokenRecord[]>

  /** Highest batch seq recorded for an agent, null when none. */
  lastUsageBatchSeq(agentId: string): Promise<number | null>

  /** The audit head as last written; seq 0 and zero hash for an empty log. */
  getAuditHead(): Promise<AuditHead>
  listAuditEntries(filter: AuditFilter): Promise<AuditRow[]>
  listAuditCheckpoints(filter: AuditCheckpointFilter): Promise<AuditCheckpointRecord[]>

  /** A console session or sign-in link by the SHA-256 of its secret, expired or not. */
  getConsoleSession(secretHash: Uint8Array): Promise<ConsoleSessionRecord | null>
  /** Ordered by id. */
  listConsoleReplicas(): Promise<ConsoleReplicaRecord[]>
  /** Rows with at least one open tunnel, ordered by agent id, then pair id. */
  listAgentTunnels(filter?: { agentId?: string }): Promise<AgentTunnelRecord[]>
}

/** Read and write access, inside one transaction. */
export interface StoreTx extends StoreReader {
  /** Insert or replace. */
  putMeta(key: string, value: Uint8Array): Promise<void>
  /** Insert only if absent; false when the key exists (first-start races between replicas). */
  insertMetaIfAbsent(key: string, value: Uint8Array): Promise<boolean>
  deleteMeta(key: string): Promise<boolean>

  /** Compare-and-set: writes `to` only while the ledger still reads `from` (observedMs and writer); false otherwise. */
  advanceElapsedLedger(from: ElapsedLedgerRecord, to: ElapsedLedgerRecord): Promise<boolean>

  insertKey(key: KeyRecord): Promise<void>
  updateKey(name: string, patch: KeyPatch): Promise<boolean>
  /** Removes the key with its versions and grants. */
  deleteKey(name: string): Promise<boolean>

  insertKeyVersion(version: KeyVersionRecord): Promise<void>
  /** With `ifState`, changes the row only when it is in that state (compare-and-set). */
  updateKeyVersion(keyName: string, version: number, patch: KeyVersionPatch, ifState?: VersionState): Promise<boolean>

  /** Adds each row's uses to its (key, version, service, day) bucket and keeps the later lastUsedAt. */
  addKeyUsage(rows: readonly KeyUsageRecord[]): Promise<void>
  /** Housekeeping: removes usage buckets of days before `day`; returns how many. */
  deleteKeyUsageBefore(day: number): Promise<number>

  /** Replaces the rights of (key, service); an empty rights list removes the grant. */
  putGrant(grant: GrantRecord): Promise<void>
  deleteGrant(keyName: string, service: string): Promise<boolean>

  /** False when the intention already exists (its createdAt is kept). */
  addIntention(intention: NewIntention): Promise<boolean>
  updateIntention(src: string, dst: string, patch: IntentionPatch): Promise<boolean>
  deleteIntention(src: string, dst: string): Promise<boolean>

  insertAgent(agent: AgentRecord): Promise<void>
  updateAgent(id: string, patch: AgentPatch): Promise<boolean>

  insertJoinToken(token: NewJoinToken): Promise<void>
  /** Sets revokedAt on a token not yet revoked; false otherwise. */
  revokeJoinToken(id: string, revokedAt: number): Promise<boolean>
  /** Marks an unused token used; false when it was already used (one-time use) or is unknown. */
  markJoinTokenUsed(id: string, usedAt: number, agentId: string): Promise<boolean>
  /** Housekeeping: removes tokens that expired before `time`; returns how many. */
  deleteJoinTokensExpiredBefore(time: number): Promise<number>

  insertOperatorToken(token: OperatorTokenRecord): Promise<void>
  /** Sets revokedAt on a token not yet revoked; false otherwise. */
  revokeOperatorToken(id: string, revokedAt: number): Promise<boolean>

  /** Records a usage batch exactly once: true when new, false when (agentId, seq) was seen. */
  recordUsageBatch(batch: UsageBatchRecord): Promise<boolean>

  /**
   * Reads the audit head and holds it until the transaction ends, so concurrent
   * appenders queue behind each other instead of forking the chain (SQLite: the
   * write transaction already excludes others; PostgreSQL: SELECT … FOR UPDATE).
   */
  lockAuditHead(): Promise<AuditHead>
  /** Appends one entry and moves the head to it; use through ../audit.ts. */
  appendAuditRow(row: AuditRow): Promise<void>
  /** Keeps a signed checkpoint; false when one for that seq exists (it is kept). */
  insertAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<boolean>

  insertConsoleSession(session: ConsoleSessionRecord): Promise<void>
  /** Removes a session or link; false when it was gone (a link is used once: whoever removes it uses it). */
  deleteConsoleSession(id: string): Promise<boolean>
  /** Housekeeping: removes sessions and links that expired before `time`; returns how many. */
  deleteConsoleSessionsExpiredBefore(time: number): Promise<number>
  /** Insert or replace a replica's row. */
  putConsoleReplica(replica: ConsoleReplicaRecord): Promise<void>
  /** Housekeeping: removes replicas not seen since `time`; returns how many. */
  deleteConsoleReplicasSeenBefore(time: number): Promise<number>
  /**
   * Adds each delta to the agent's open tunnels of its pair, never going below zero
   * (a close whose open was counted before the row existed).
   */
  addAgentTunnels(agentId: string, deltas: ReadonlyMap<string, number>, at: number): Promise<void>

  /**
   * Optional, on a back-end shared by several processes (PostgreSQL): queues a
   * notification on `channel` that the server delivers to its listeners when,
   * and only if, this transaction commits (NOTIFY). Absent on SQLite.
   */
  notify?(channel: string, payload: string): Promise<void>
}

/** A PRAGMA quick_check under way (store/sqlite-integrity.ts). */
export interface IntegrityRun {
  /** Resolves with the verdict; never rejects (a check that could not run says so in `problems`). */
  readonly result: Promise<IntegrityResult>
  /** Gives up on the check (close); its result then says it was stopped. */
  stop(): void
}

export type IntegrityResult =
  | { readonly ok: true; readonly ms: number }
  /** `problems`: what quick_check reported (at most a few lines), or why it could not run (`ran` false). */
  | { readonly ok: false; readonly ran: boolean; readonly problems: readonly string[]; readonly ms: number }

/**
 * What an embedded store can tell about its own file (SQLite; absent on
 * PostgreSQL, whose server looks after its files).
 */
export interface StoreHealth {
  /** The database file. */
  readonly file: string
  /** Null while the file the store holds open is the one at its path; else why not (removed, replaced). */
  fileProblem(): string | null
  /** Runs PRAGMA quick_check on a connection of its own, off the main thread. */
  integrityCheck(): IntegrityRun
}

/** A write transaction's outcome, as a store tells its observer. */
export type WriteOutcome = { readonly ok: true } | { readonly ok: false; readonly error: unknown }

/**
 * Told by a back-end, after the fact, how its transactions went (readiness,
 * health/write-health.ts). Called before the caller sees the result; must not
 * throw, and must not wait on the store.
 */
export interface StoreObserver {
  /** Every write transaction: committed, or failed (rolled back, or never begun). */
  onWriteOutcome(outcome: WriteOutcome): void
  /** Every read that failed. */
  onReadError(error: unknown): void
}

/** `p` with its outcome told to `observer` first (the back-ends' transaction()). */
export function reportWrite<T>(p: Promise<T>, observer: StoreObserver | undefined): Promise<T> {
  if (observer === undefined) return p
  return p.then(
    (v) => (observer.onWriteOutcome({ ok: true }), v),
    (error: unknown) => {
      observer.onWriteOutcome({ ok: false, error })
      throw error
    },
  )
}

/** `p` with its failure told to `observer` first (the back-ends' read()). */
export function reportRead<T>(p: Promise<T>, observer: StoreObserver | undefined): Promise<T> {
  if (observer === undefined) return p
  return p.catch((error: unknown) => {
    observer.onReadError(error)
    throw error
  })
}

export interface Store {
  /** 'sqlite' or 'postgres', for logs and metrics. */
  readonly backend: string
  readonly readOnly: boolean
  /**
   * Set on a back-end that several processes share (PostgreSQL): where it lives,
   * for what opens its own connections there (the LISTEN bus and the scheduler
   * lease, cluster/replica.ts). Absent on SQLite, which one process owns.
   */
  readonly location?: PgLocation
  /** Set on SQLite: its file's health (readiness, integrity checks). */
  readonly health?: StoreHealth
  /** Runs `fn` in one all-or-nothing write transaction; rejects with CP_ERR_STORE when read-only. */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>
  /** Runs `fn` against one consistent snapshot, without writing. */
  read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T>
  /** Waits for the running transaction, then releases the back-end; later calls reject. */
  close(): Promise<void>
  /**
   * Tells `observer` how every later transaction goes (undefined: no one); one
   * observer at a time. Absent on a store that cannot say (a test's stand-in).
   */
  observe?(observer: StoreObserver | undefined): void
}
