// What every control-plane service is handed: the store, crypto, clock, sealer,
// audit log, change bus, logger and settings. Built once by app.ts; tests build
// one with a fake clock and a temporary store (test/helpers/cp-context.ts).
import type { Logger } from 'pino'

import type { CryptoSuite, KeyPair } from '../../protocol/src/index.js'
import type { AuditLog } from './audit.js'
import { DAY, HOUR, MINUTE, SECOND, type TimerClock } from '../../platform/src/index.js'
import type { ElapsedLedger } from './elapsed-ledger.js'
import type { ChangeBus } from './events.js'
import type { LifecyclePolicy } from './key-lifecycle.js'
import { lifecyclePolicy } from './key-lifecycle.js'
import type { Sealer } from './seal.js'
import type { OperatorRole } from './store/records.js'
import type { Store } from './store/store.js'


export interface CpSettings {
  /** Default and maximum lifetime of a join token. */
  readonly joinTokenTtlMs: number
  readonly joinTokenMaxTtlMs: number
  /** How often the scheduler looks for due rotations, expiries and destructions. */
  readonly schedulerIntervalMs: number
  /** Destruction windows, rotation periods (pair keys: default 24 h) and the pair grace period (default 1 h). */
  readonly lifecycle: LifecyclePolicy
  /**
   * An agent session from which nothing (a frame, a ping, a pong) arrived for this
   * long is cut (default 15 s), so that an agent whose host vanished without a TCP
   * reset leaves the hub and the connected-agents count. Agents ping every 1.5 s when
   * idle; the control plane pings an agent silent for half this time, so an agent
   * that never pings of its own stays connected as long as it answers.
   */
  readonly agentIdleTimeoutMs: number
  /** On a shared store: how often every connected agent's key set is recomputed anyway (cluster/pg-bus.ts; default 60 s). */
  readonly resyncIntervalMs: number
  /**
   * The scheduler signs an audit checkpoint of the head when the newest one is
   * this old and the log has grown since (default 60 min); one is also signed at
   * every 1000th entry (audit.ts).
   */
  readonly auditCheckpointIntervalMs: number
  /** A version used within this long is not scheduled for destruction without --force (default 30 days; services/key-usage.ts). */
  readonly destroyGuardMs: number
  /** While the store refuses writes, how often one small write probes it (default 5 s; health/write-health.ts). */
  readonly writeProbeIntervalMs: number
  /** SQLite: how long the start waits for PRAGMA quick_check before going on without its verdict (default 10 s). */
  readonly integrityStartTimeoutMs: number
  /** SQLite: how often PRAGMA quick_check runs after the start (default 6 h; 0: never; health/integrity-watch.ts). */
  readonly integrityCheckIntervalMs: number
  /** How often the audit chain is verified from where the last pass stopped (default 10 min; 0: never; health/audit-watch.ts). */
  readonly auditVerifyIntervalMs: number
}

export const DEFAULT_SETTINGS: CpSettings = Object.freeze({
  joinTokenTtlMs: HOUR,
  joinTokenMaxTtlMs: 30 * DAY,
  schedulerIntervalMs: 1_000,
  lifecycle: lifecyclePolicy(),
  agentIdleTimeoutMs: 15 * SECOND,
  resyncIntervalMs: 60 * SECOND,
  auditCheckpointIntervalMs: 60 * MINUTE,
  destroyGuardMs: 30 * DAY,
  writeProbeIntervalMs: 5 * SECOND,
  integrityStartTimeoutMs: 10 * SECOND,
  integrityCheckIntervalMs: 6 * HOUR,
  auditVerifyIntervalMs: 10 * MINUTE,
})

export function settings(overrides: Partial<CpSettings> = {}): CpSettings {
  return Object.freeze({ ...DEFAULT_SETTINGS, ...overrides })
}

/** Who asked. The audit log names actors as `operator:<token id>`, `agent:<id>`, `system:<task>`. */
export type Actor =
  | { readonly kind: 'operator'; readonly id: string; readonly name: string; readonly role: OperatorRole }
  | { readonly kind: 'agent'; readonly id: string; readonly service: string }
  | { readonly kind: 'system'; readonly task: string }
  | { readonly kind: 'anonymous'; readonly remote?: string | undefined }

export function actorName(a: Actor): string {
  switch (a.kind) {
    case 'operator':
      return `operator:${a.id}`
    case 'agent':
      return `agent:${a.id}`
    case 'system':
      return `system:${a.task}`
    case 'anonymous':
      return a.remote ? `anonymous:${a.remote}` : 'anonymous'
  }
}

export interface CpContext {
  readonly store: Store
  readonly suite: CryptoSuite
  readonly clock: TimerClock
  readonly sealer: Sealer
  readonly audit: AuditLog
  readonly bus: ChangeBus
  readonly logger: Logger
  readonly settings: CpSettings
  /** The control plane's static X25519 key pair (the Noise XK responder key agents pin). */
  readonly identity: KeyPair
  /** Elapsed time observed, the second condition of every deadline that destroys material (elapsed-ledger.ts). */
  readonly elapsed: ElapsedLedger
}
