// The control plane's metrics: one prom-client Registry per control plane,
// scraped at GET /metrics (http/probes.ts). See docs/metrics.md for every series.
//
// Where the numbers come from:
//   - Every decision the control plane takes is an audit entry, and every audit
//     entry goes through AuditLog.append, so operations, denials, key operations and
//     rotations are counted there, from the entry's action, actor, target and
//     outcome (instrumentAudit wraps the log the whole control plane uses). A KMS
//     audit entry stands for a group of calls sharing op, key and outcome
//     (services/kms-audit.ts) and says how many in `details.count`: each call is
//     counted. Entries are counted when appended, inside their transaction, not
//     after it commits: the append is the last step of every operation, so the two
//     differ only when the commit itself fails (the store broke), and then the
//     failed operation's own error entry is counted as well.
//   - HTTP answers come from the HTTP layer's onAnswered hook; agent handshake
//     failures from the agent endpoint; connected agents are read at each scrape.
import { performance } from 'node:perf_hooks'
import { Counter, Histogram, Registry } from 'prom-client'

import { LabelCap, counterFromState, gaugeFromState, metricsText, type MetricsText } from '../../platform/src/index.js'
import type { AuditInput, AuditLog } from './audit.js'
import type { AuditWatch } from './health/audit-watch.js'
import type { IntegrityWatch } from './health/integrity-watch.js'
import type { WriteHealth } from './health/write-health.js'
import type { AnsweredEvent } from './http/server.js'

/** Distinct key names shown by keymesh_cp_key_operations_total; further names show as "(other)". */
export const DEFAULT_MAX_KEY_LABELS = 1000

/** What the health series read (health/*.ts). */
export interface HealthSources {
  readonly writes: Pick<WriteHealth, 'fault' | 'failures'>
  readonly integrity?: Pick<IntegrityWatch, 'readiness' | 'state'> | undefined
  readonly audit: Pick<AuditWatch, 'broken' | 'verifiedSeq' | 'verifiedAt'>
}

export interface CpMetricsOptions {
  readonly maxKeyLabels?: number
}

/** What one audit entry adds to the counters. */
export interface AuditFacts {
  readonly operation: string
  readonly outcome: string
  /** Calls the entry stands for: details.count for a KMS entry, else 1. */
  readonly calls: number
  /** The key named by a `key:<name>` target. */
  readonly key?: string
  /** A rotation that happened (not a scheduled pass that found nothing to do). */
  readonly rotation?: { readonly kind: 'key' | 'pair'; readonly trigger: 'scheduled' | 'manual' }
  /** Usage batches an agent reported lost (a usage.loss entry's details.batches). */
  readonly lostBatches?: number
}

export function auditFacts(input: AuditInput): AuditFacts {
  const details = input.details ?? {}
  const count = details['count']
  const calls = input.action.startsWith('kms.') && typeof count === 'number' && Number.isSafeInteger(count) && count > 0 ? count : 1
  const key = input.target.startsWith('key:') ? input.target.slice(4) : undefined
  let rotation: AuditFacts['rotation']
  const kind = input.action === 'key.rotate' ? 'key' : input.action === 'pair.rotate' ? 'pair' : undefined
  // A rotation entry names the version it made; a scheduled pass that found the
  // pair rotated meanwhile writes an ok entry without one.
  if (kind !== undefined && input.outcome === 'ok' && (typeof details['version'] === 'number' || typeof details['keyVersion'] === 'number')) {
    rotation = { kind, trigger: input.actor.startsWith('system:') ? 'scheduled' : 'manual' }
  }
  const lost = details['batches']
  const lostBatches = input.action === 'usage.loss' && typeof lost === 'number' && Number.isSafeInteger(lost) && lost >= 0 ? lost : undefined
  return { operation: input.action, outcome: input.outcome, calls, ...(key !== undefined ? { key } : {}), ...(rotation ? { rotation } : {}), ...(lostBatches !== undefined ? { lostBatches } : {}) }
}

const AUDIT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

export class CpMetrics {
  readonly registry = new Registry()
  readonly #keys: LabelCap
  readonly #httpRequests: Counter<'operation' | 'status'>
  readonly #httpSeconds: Histogram<'operation'>
  readonly #operations: Counter<'operation' | 'outcome'>
  readonly #keyOperations: Counter<'key' | 'operation' | 'outcome'>
  readonly #rotations: Counter<'kind' | 'trigger'>
  readonly #postponed: Counter
  readonly #handshakeFailures: Counter<'code'>
  readonly #preauthRefusals: Counter<'code'>
  readonly #httpRateLimited: Counter
  readonly #usageLost: Counter
  readonly #auditSeconds: Histogram
  readonly #auditFailures: Counter
  #connectedAgents: () => number = () => 0
  #clockJumps: () => { readonly forward: number; readonly backward: number } = () => ({ forward: 0, backward: 0 })

  constructor(o: CpMetricsOptions = {}) {
    const registers = [this.registry]
    this.#keys = new LabelCap(o.maxKeyLabels ?? DEFAULT_MAX_KEY_LABELS)
    this.#httpRequests = new Counter({
      name: 'keymesh_cp_http_requests_total',
      help: 'Admin API and probe requests answered, by route operation and HTTP status',
      labelNames: ['operation', 'status'],
      registers,
    })
    this.#httpSeconds = new Histogram({
      name: 'keymesh_cp_http_request_duration_seconds',
      help: 'Time from receiving a request to answering it, by route operation',
      labelNames: ['operation'],
      registers,
    })
    this.#operations = new Counter({
      name: 'keymesh_cp_operations_total',
      help: 'Audited decisions by operation (audit action) and outcome (ok, deny, error); each KMS call counts once',
      labelNames: ['operation', 'outcome'],
      registers,
    })
    this.#keyOperations = new Counter({
      name: 'keymesh_cp_key_operations_total',
      help: 'Audited operations on a named key (admin and KMS), by key, operation and outcome',
      labelNames: ['key', 'operation', 'outcome'],
      registers,
    })
    this.#rotations = new Counter({
      name: 'keymesh_cp_rotations_total',
      help: 'Key and pair-key rotations that made a new version, by kind (key, pair) and trigger (scheduled, manual)',
      labelNames: ['kind', 'trigger'],
      registers,
    })
    for (const kind of ['key', 'pair']) for (const trigger of ['scheduled', 'manual']) this.#rotations.inc({ kind, trigger }, 0)
    this.#postponed = new Counter({
      name: 'keymesh_cp_destruction_postponed_total',
      help: 'Scheduled destructions postponed because the version was used after they were scheduled (key.destroy-postponed)',
      registers,
    })
    this.#handshakeFailures = new Counter({
      name: 'keymesh_cp_agent_handshake_failures_total',
      help: 'Agent sessions that failed or were refused before admission, by error code',
      labelNames: ['code'],
      registers,
    })
    this.#preauthRefusals = new Counter({
      name: 'keymesh_cp_agent_preauth_refusals_total',
      help: 'Agent connections refused before authentication by a limit (source share, rate, hello timeout, replay), by error code',
      labelNames: ['code'],
      registers,
    })
    this.#httpRateLimited = new Counter({
      name: 'keymesh_cp_http_rate_limited_total',
      help: 'Admin API requests answered 429 CP_ERR_RATE_LIMITED because their source spent its budget of failed authentications',
      registers,
    })
    this.#usageLost = new Counter({
      name: 'keymesh_cp_usage_lost_batches_total',
      help: 'Usage batches agents reported lost to a damaged spool (usage.loss audit entries)',
      registers,
    })
    this.#auditSeconds = new Histogram({
      name: 'keymesh_cp_audit_append_duration_seconds',
      help: 'Time to append one audit entry inside its transaction (head lock, hash, insert)',
      buckets: AUDIT_BUCKETS,
      registers,
    })
    this.#auditFailures = new Counter({
      name: 'keymesh_cp_audit_append_failures_total',
      help: 'Audit appends that failed (the operation was refused with CP_ERR_AUDIT)',
      registers,
    })
    counterFromState({
      registry: this.registry,
      name: 'keymesh_cp_clock_jumps_total',
      help: 'Steps of the wall clock seen (wall time and elapsed time disagreeing by more than 2 s), by direction; each is audited as clock.jump',
      labelNames: ['direction'],
      read: () => {
        const j = this.#clockJumps()
        return [[{ direction: 'forward' }, j.forward], [{ direction: 'backward' }, j.backward]]
      },
    })
    gaugeFromState({
      registry: this.registry,
      name: 'keymesh_cp_agents_connected',
      help: 'Agents with a live, admitted session on this control plane',
      read: () => this.#connectedAgents(),
    })
  }

  /** Where the clock-jumps counter reads from (the clock watch, started once serving). */
  watchClock(jumps: () => { readonly forward: number; readonly backward: number }): void {
    this.#clockJumps = jumps
  }

  /** The store's and the audit chain's health (health/*.ts), read at each scrape. */
  watchHealth(h: HealthSources): void {
    const registry = this.registry
    gaugeFromState({
      registry,
      name: 'keymesh_cp_store_writes_refused',
      help: '1 while the store refuses writes (a write failed with disk full, read-only, I/O error or the database gone; cleared by the next write that succeeds), else 0',
      read: () => (h.writes.fault !== null ? 1 : 0),
    })
    counterFromState({
      registry,
      name: 'keymesh_cp_store_write_failures_total',
      help: 'Write transactions that failed because the store refused the write (not conflicts or refusals of the request)',
      read: () => h.writes.failures,
    })
    if (h.integrity) {
      const integrity = h.integrity
      gaugeFromState({
        registry,
        name: 'keymesh_cp_store_integrity_damaged',
        help: '1 while the last PRAGMA quick_check of the SQLite store found damage, else 0',
        read: () => (integrity.readiness().ready ? 0 : 1),
      })
      gaugeFromState({
        registry,
        name: 'keymesh_cp_store_integrity_checked_timestamp_seconds',
        help: 'When the SQLite store\'s integrity was last checked (Unix time; 0 before the first verdict)',
        read: () => {
          const s = integrity.state
          return 'checkedAt' in s ? s.checkedAt / 1000 : 0
        },
      })
    }
    gaugeFromState({
      registry,
      name: 'keymesh_cp_audit_chain_broken',
      help: '1 while the scheduled audit verification finds the chain broken, else 0',
      read: () => h.audit.broken,
    })
    gaugeFromState({
      registry,
      name: 'keymesh_cp_audit_chain_verified_seq',
      help: 'The last audit entry the scheduled verification found the chain whole up to',
      read: () => h.audit.verifiedSeq,
    })
    gaugeFromState({
      registry,
      name: 'keymesh_cp_audit_chain_verified_timestamp_seconds',
      help: 'When a scheduled audit verification last found the chain whole (Unix time; 0 before the first)',
      read: () => (h.audit.verifiedAt ?? 0) / 1000,
    })
  }

  /** Where the connected-agents gauge reads from (the agent endpoint, built after the metrics). */
  watchAgents(count: () => number): void {
    this.#connectedAgents = count
  }

  /** The same audit log, with every append timed and counted. */
  instrumentAudit(audit: AuditLog): AuditLog {
    return {
      ...audit,
      append: async (tx, input) => {
        const started = performance.now()
        let entry: Awaited<ReturnType<AuditLog['append']>>
        try {
          entry = await audit.append(tx, input)
        } catch (err) {
          this.#auditFailures.inc()
          throw err
        }
        this.#auditSeconds.observe((performance.now() - started) / 1e3)
        this.#count(auditFacts(input))
        return entry
      },
    }
  }

  httpAnswered(e: AnsweredEvent): void {
    this.#httpRequests.inc({ operation: e.operation, status: String(e.status) })
    this.#httpSeconds.observe({ operation: e.operation }, e.seconds)
  }

  handshakeFailed(code: string): void {
    this.#handshakeFailures.inc({ code })
  }

  preauthRefused(code: string): void {
    this.#preauthRefusals.inc({ code })
  }

  httpRateLimited(): void {
    this.#httpRateLimited.inc()
  }

  text(): Promise<MetricsText> {
    return metricsText(this.registry)
  }

  #count(f: AuditFacts): void {
    this.#operations.inc({ operation: f.operation, outcome: f.outcome }, f.calls)
    // Only a call that succeeded proves its key exists; a refused one may name any
    // key at all, so it may use a key's label but never take a new place under the cap.
    if (f.key !== undefined) {
      const key = this.#keys.value(f.key, f.outcome === 'ok')
      this.#keyOperations.inc({ key, operation: f.operation, outcome: f.outcome }, f.calls)
    }
    if (f.rotation) this.#rotations.inc(f.rotation)
    if (f.operation === 'key.destroy-postponed' && f.outcome === 'ok') this.#postponed.inc()
    if (f.lostBatches !== undefined) this.#usageLost.inc(f.lostBatches)
  }
}
