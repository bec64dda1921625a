// The rows the control plane keeps, as plain typed values shared by every Store
// back-end. Times are integer milliseconds since the epoch. Byte fields are
// Uint8Array (back-ends convert their driver's Buffer). Key material only ever
// appears here sealed (see ../seal.ts); nothing in this file is a secret in clear.

export const KEY_TYPES = ['aead', 'x25519', 'pair', 'ed25519', 'ecdsa-p256', 'hmac-sha256'] as const
export type KeyType = (typeof KEY_TYPES)[number]

export const VERSION_STATES = ['enabled', 'decrypt-only', 'disabled', 'scheduled-destruction', 'destroyed'] as const
export type VersionState = (typeof VERSION_STATES)[number]

export const RIGHTS = ['encrypt', 'decrypt', 'generate-data-key', 'rotate', 'manage', 'sign', 'verify', 'hmac'] as const
export type Right = (typeof RIGHTS)[number]

export const OPERATOR_ROLES = ['admin', 'operator', 'auditor'] as const
export type OperatorRole = (typeof OPERATOR_ROLES)[number]

export const AUDIT_OUTCOMES = ['allow', 'deny', 'ok', 'error'] as const
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number]

export interface KeyRecord {
  readonly name: string
  readonly type: KeyType
  readonly createdAt: number
  /** null: no scheduled rotation. */
  readonly rotationPeriodMs: number | null
  readonly nextRotationAt: number | null
  readonly primaryVersion: number
  readonly minDecryptVersion: number
  /**
   * The two services of a `pair` key, null for every other type. The store keeps
   * them as given; callers store them in one canonical order (e.g. sorted) and
   * `findPairKey` matches either order.
   */
  readonly pairServices: readonly [string, string] | null
}

/** Fields of a key that change after creation. */
export type KeyPatch = Partial<Pick<KeyRecord, 'rotationPeriodMs' | 'nextRotationAt' | 'primaryVersion' | 'minDecryptVersion'>>

export interface KeyVersionRecord {
  readonly keyName: string
  /** 1, 2, 3 … per key. */
  readonly version: number
  readonly state: VersionState
  /** Sealed material (identity `key-version:NAME:VERSION`); null exactly when destroyed. */
  readonly sealedMaterial: Uint8Array | null
  readonly createdAt: number
  readonly stateChangedAt: number
  /** When a `scheduled-destruction` version is due to be destroyed. */
  readonly destroyAt: number | null
  /** End of a pair key version's grace period after rotation. */
  readonly notAfter: number | null
  /** State to return to when a disable or a scheduled destruction is undone. */
  readonly previousState: VersionState | null
  /** Set (to `imported`) only on a version whose material came from `keymesh key import`; absent: made here. */
  readonly origin?: 'imported'
  /**
   * The elapsed-ledger reading (../elapsed-ledger.ts) that must be reached, besides
   * destroyAt / notAfter on the wall clock, before the version is destroyed for that
   * deadline; absent (null) while the deadline is.
   */
  readonly destroyAtObserved?: number | null
  readonly notAfterObserved?: number | null
}

export type KeyVersionPatch = Partial<
  Pick<KeyVersionRecord, 'state' | 'sealedMaterial' | 'stateChangedAt' | 'destroyAt' | 'notAfter' | 'previousState' | 'destroyAtObserved' | 'notAfterObserved'>
>

/** Uses of one key version by one service on one UTC day (services/key-usage.ts). */
export interface KeyUsageRecord {
  readonly keyName: string
  readonly version: number
  readonly service: string
  /** Days since the epoch, UTC: floor(ms / 86,400,000). */
  readonly day: number
  readonly uses: number
  readonly lastUsedAt: number
}

export interface GrantRecord {
  readonly keyName: string
  readonly service: string
  /** Sorted, without duplicates. An empty set is stored as no grant. */
  readonly rights: readonly Right[]
}

export const INTENTION_EFFECTS = ['allow', 'deny'] as const
export type IntentionEffect = (typeof INTENTION_EFFECTS)[number]

/** A service-to-service rule; `src` or `dst` may be `*` (any service). See ../policy.ts. */
export interface IntentionRecord {
  readonly src: string
  readonly dst: string
  readonly createdAt: number
  readonly effect: IntentionEffect
  /** Set while a removed rule keeps working through its grace; the scheduler deletes it then. */
  readonly expiresAt: number | null
  /** With expiresAt: the elapsed-ledger reading that must also be reached before the scheduler deletes it (../elapsed-ledger.ts). */
  readonly expiresAtObserved?: number | null
}

/** What `addIntention` takes: an allow that does not expire unless said otherwise. */
export type NewIntention = Pick<IntentionRecord, 'src' | 'dst' | 'createdAt'> & Partial<Pick<IntentionRecord, 'effect' | 'expiresAt' | 'expiresAtObserved'>>

export type IntentionPatch = Partial<Pick<IntentionRecord, 'effect' | 'expiresAt' | 'createdAt' | 'expiresAtObserved'>>

/**
 * The elapsed time the control planes of an installation have observed, ms, summed over
 * every process that advanced it (../elapsed-ledger.ts); one row, absent until the first
 * advance (observedMs 0, writer '').
 */
export interface ElapsedLedgerRecord {
  readonly observedMs: number
  /** Which process last advanced it: its compare-and-set tag. */
  readonly writer: string
  /** Wall time of that advance, for people reading the row. */
  readonly advancedAt: number
}

export interface AgentRecord {
  readonly id: string
  readonly service: string
  /** The agent's X25519 static public key (32 bytes); unique across agents. */
  readonly staticKey: Uint8Array
  readonly enrolledAt: number
  readonly revokedAt: number | null
  readonly lastSeenAt: number | null
  /** Where peer agents reach this agent (e.g. `ws://host:port`), once it says. */
  readonly endpoint: string | null
}

export type AgentPatch = Partial<Pick<AgentRecord, 'revokedAt' | 'lastSeenAt' | 'endpoint'>>

export interface JoinTokenRecord {
  readonly id: string
  /** SHA-256 of the token; the token itself is never stored. Unique. */
  readonly tokenHash: Uint8Array
  readonly service: string
  readonly createdAt: number
  readonly expiresAt: number
  readonly usedAt: number | null
  readonly usedByAgent: string | null
  /** Set by `join-token revoke`; a revoked token enrols nothing. */
  readonly revokedAt: number | null
}

/** What `insertJoinToken` takes: a token is never revoked when it is made. */
export type NewJoinToken = Omit<JoinTokenRecord, 'revokedAt'>

export interface OperatorTokenRecord {
  readonly id: string
  readonly name: string
  /** SHA-256 of the bearer token; the token itself is never stored. Unique. */
  readonly tokenHash: Uint8Array
  readonly role: OperatorRole
  readonly createdAt: number
  readonly expiresAt: number | null
  readonly revokedAt: number | null
}

export interface UsageBatchRecord {
  readonly agentId: string
  /** The agent's own batch counter; (agentId, seq) is unique. */
  readonly seq: number
  readonly receivedAt: number
}

/** One stored audit entry as the store keeps it; see ../audit.ts for its meaning. */
export interface AuditRow {
  readonly seq: number
  readonly at: number
  readonly actor: string
  readonly action: string
  readonly target: string
  readonly outcome: AuditOutcome
  readonly reason: string
  /** Canonical JSON (sorted keys) of the details object, exactly as hashed. */
  readonly detailsJson: string
  readonly prevHash: Uint8Array
  readonly hash: Uint8Array
  /** HMAC of the hash under the chain key (../audit-chain.ts); null on entries from before the keyed chain. */
  readonly mac: Uint8Array | null
}

/** A signed statement that the chain's entry `seq` had hash `hash` at time `at` (../audit-checkpoint.ts). */
export interface AuditCheckpointRecord {
  readonly seq: number
  readonly hash: Uint8Array
  readonly at: number
  /** Ed25519 signature by the installation's audit key. */
  readonly signature: Uint8Array
}

/** The last appended entry: seq 0 and 32 zero bytes for an empty log. */
export interface AuditHead {
  readonly seq: number
  readonly hash: Uint8Array
}

/**
 * A signed-in console session, or a one-time sign-in link not yet used (../ui/session.ts).
 * The secret (the cookie's value, the link's code) is kept only as its SHA-256.
 */
export interface ConsoleSessionRecord {
  readonly id: string
  /** SHA-256 of the secret; unique. */
  readonly secretHash: Uint8Array
  readonly kind: 'session' | 'link'
  /** The operator token the session acts for: revoking it ends the session. */
  readonly tokenId: string
  readonly createdAt: number
  readonly expiresAt: number
}

/** What a control-plane replica last said of itself (the console's overview, ../ui/replicas.ts). */
export interface ConsoleReplicaRecord {
  readonly id: string
  /** Where it serves (its own idea of its URL). */
  readonly url: string
  readonly startedAt: number
  readonly seenAt: number
  /** JSON: readiness, sealed, agents connected (../ui/replicas.ts ReplicaStatus). */
  readonly statusJson: string
}

/** Tunnels an agent reports open for one pair: its opens minus its closes (../agent-endpoint/usage.ts). */
export interface AgentTunnelRecord {
  readonly agentId: string
  readonly pairId: string
  readonly open: number
  readonly updatedAt: number
}
