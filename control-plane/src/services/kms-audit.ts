// Group commit for the audit of KMS calls. A KMS call costs a few microseconds of
// AEAD; a durable commit far more (SQLite with synchronous=FULL: one fsync, 85 to
// 1,000 commits/s on the reference machine, and its COMMIT blocks the event loop),
// and a chained audit row per call about 50 µs of CPU (indexed insert, hash,
// read-back): 10,000-16,000 rows/s at best, measured, for a whole core. So:
//
//   - calls queue their record here; one flusher writes everything queued in ONE
//     store transaction, then releases those calls' replies together;
//   - within a transaction, calls that share actor, op, key and outcome become one
//     audit entry that lists every call individually — request id, key version,
//     context hash, error code, and the batch id for the items of a kms.batch — so
//     each entry is homogeneous in the columns the audit query filters on (actor,
//     action, target, outcome): a query for a key's denials, say, finds every
//     entry holding one.
//
// Batching is natural, with no timer: while one commit runs, the next group
// accumulates. The group is taken once the transaction holds the store (inside
// `fn`), so calls whose reads were queued on the store ahead of it join it.
// SQLite's COMMIT is synchronous (better-sqlite3), so "while one commit runs"
// nothing else does: the flusher first yields to the event loop once
// (setImmediate), so that every message already received — each kms.batch of
// ~60 KB comes in its own socket reads — is handled and queued before the group
// is taken. Without it each message had a commit of its own (measured: one
// commit per ~43 items, ~5,000 items/s; see bench/kms-batch.ts).
//
// Contract:
//   - recordAll(calls) resolves each call only after a transaction holding the call's line has
//     committed; when that transaction fails, every call of the group rejects with
//     CP_ERR_AUDIT (cause attached) and none of its lines is in the log.
//   - An entry never holds data, plaintext, ciphertext or context: only the
//     fields of KmsCallRecord, which are metadata and a context hash.
//   - The same transaction adds the group's successful calls to the key-usage
//     buckets (key-usage.ts): a few upserts per group, no commit of their own.
import { isKeymeshError } from '../../../protocol/src/index.js'
import type { KmsOp } from '../../../protocol/src/index.js'
import type { JsonValue } from '../audit-chain.js'
import type { AuditInput, AuditLog } from '../audit.js'
import { cpError } from '../errors.js'
import type { Store } from '../store/store.js'
import { usageOfCalls } from './key-usage.js'

export const DEFAULT_MAX_AUDIT_GROUP = 4096
/** Calls listed in one audit entry, so an entry stays near 100 KB. */
export const DEFAULT_MAX_CALLS_PER_ENTRY = 1000
/** Distinct reasons quoted in one entry's reason text; the codes of all are in the lines. */
const MAX_REASONS = 8

/** One KMS call as the audit log records it. */
export interface KmsCallRecord {
  /** `agent:<id>`. */
  readonly actor: string
  readonly service: string
  readonly op: KmsOp
  /** `key:<name>`, or `key:(unknown)` when the call never named a valid key. */
  readonly target: string
  readonly outcome: 'ok' | 'deny' | 'error'
  /** The policy's reason when allowed; `CODE: message` when not. */
  readonly reason: string
  readonly requestId: number
  readonly keyVersion: number | null
  /** rewrap: the version the result is sealed under. */
  readonly toVersion?: number
  /** SHA-256 of the canonical context (ciphertext.ts contextHash). */
  readonly contextHash: string
  /** Null when the call succeeded. */
  readonly code: string | null
  /** The kms.batch the call was an item of (requestId is then the item's id). */
  readonly batchId?: number
}

/** Columns of each line in an entry's `calls`, in order. */
export const KMS_CALL_COLUMNS = ['requestId', 'keyVersion', 'contextHash', 'code'] as const
/** rewrap adds `toVersion`, then batch items `batchId` (an entry never mixes single calls and batch items). */
const REWRAP_COLUMN = 'toVersion'
const BATCH_COLUMN = 'batchId'

export interface AuditGroupStats {
  /** Transactions that committed. */
  readonly groups: number
  /** Calls committed in them. */
  readonly calls: number
  /** Audit entries written for them. */
  readonly entries: number
  /** Transactions that failed (their calls answered CP_ERR_AUDIT). */
  readonly failedGroups: number
  readonly largestGroup: number
}

interface Pending {
  readonly call: KmsCallRecord
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

export interface KmsAuditOptions {
  /** Calls per transaction. */
  readonly maxGroup?: number
  readonly maxCallsPerEntry?: number
  /** Lets pending I/O run before a group is taken (default: one setImmediate turn). */
  readonly yieldToIo?: () => Promise<void>
}

const setImmediateTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

export class KmsAuditLog {
  readonly #store: Store
  readonly #audit: AuditLog
  readonly #maxGroup: number
  readonly #maxCalls: number
  readonly #yield: () => Promise<void>
  readonly #now: () => number
  #queue: Pending[] = []
  #flushing = false
  #stats = { groups: 0, calls: 0, entries: 0, failedGroups: 0, largestGroup: 0 }

  constructor(deps: { readonly store: Store; readonly audit: AuditLog; readonly clock?: { now(): number } }, options: KmsAuditOptions = {}) {
    this.#maxGroup = positive(options.maxGroup ?? DEFAULT_MAX_AUDIT_GROUP, 'maxGroup')
    this.#maxCalls = positive(options.maxCallsPerEntry ?? DEFAULT_MAX_CALLS_PER_ENTRY, 'maxCallsPerEntry')
    this.#store = deps.store
    this.#audit = deps.audit
    this.#yield = options.yieldToIo ?? setImmediateTurn
    const clock = deps.clock
    this.#now = clock ? () => clock.now() : Date.now
  }

  /** Counters for tests and metrics; timing-free. */
  get stats(): AuditGroupStats {
    return { ...this.#stats }
  }

  /**
   * Queues calls (a batch's items, or one call) so that they share a transaction
   * (up to maxGroup). Each promise resolves once its call's line is committed and
   * rejects with CP_ERR_AUDIT when its group's transaction fails.
   */
  recordAll(calls: readonly KmsCallRecord[]): Promise<void>[] {
    const done = calls.map((call) => new Promise<void>((resolve, reject) => this.#queue.push({ call, resolve, reject })))
    if (!this.#flushing && calls.length > 0) void this.#flush()
    return done
  }

  async #flush(): Promise<void> {
    this.#flushing = true
    try {
      while (this.#queue.length > 0) {
        await this.#yield()
        let group: Pending[] = []
        let entries = 0
        try {
          await this.#store.transaction(async (tx) => {
            group = this.#queue.splice(0, this.#maxGroup)
            const inputs = entriesOf(group.map((p) => p.call), this.#maxCalls)
            for (const input of inputs) await this.#audit.append(tx, input)
            await tx.addKeyUsage(usageOfCalls(group.map((p) => p.call), this.#now()))
            entries = inputs.length
          })
        } catch (err) {
          this.#stats.failedGroups++
          const error = isKeymeshError(err, 'CP_ERR_AUDIT') ? err : cpError('CP_ERR_AUDIT', undefined, { cause: err })
          // A transaction that failed before taking its group leaves the queue as it
          // was; fail that group too, or a store that refuses every transaction
          // would keep this loop spinning.
          if (group.length === 0) group = this.#queue.splice(0, this.#maxGroup)
          for (const p of group) p.reject(error)
          continue
        }
        this.#stats.groups++
        this.#stats.calls += group.length
        this.#stats.entries += entries
        this.#stats.largestGroup = Math.max(this.#stats.largestGroup, group.length)
        for (const p of group) p.resolve()
      }
    } finally {
      this.#flushing = false
    }
  }
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw cpError('CP_ERR_INTERNAL', `${name} must be a whole number from 1`)
  return n
}

/**
 * The audit entries of one group: calls sharing actor, op, target and outcome go
 * into one entry (at most `maxCalls` each), in order of their first call.
 */
export function entriesOf(calls: readonly KmsCallRecord[], maxCalls = DEFAULT_MAX_CALLS_PER_ENTRY): AuditInput[] {
  const buckets: KmsCallRecord[][] = []
  const open = new Map<string, KmsCallRecord[]>()
  for (const c of calls) {
    const id = `${c.actor}\0${c.op}\0${c.target}\0${c.outcome}\0${c.batchId === undefined ? '' : 'batch'}`
    let bucket = open.get(id)
    if (bucket === undefined || bucket.length >= maxCalls) {
      bucket = []
      buckets.push(bucket)
      open.set(id, bucket)
    }
    bucket.push(c)
  }
  return buckets.map(entryOf)
}

function entryOf(calls: readonly KmsCallRecord[]): AuditInput {
  const first = calls[0] as KmsCallRecord
  const rewrap = first.op === 'rewrap'
  const batched = first.batchId !== undefined
  const reasons = [...new Set(calls.map((c) => c.reason))]
  const quoted = reasons.slice(0, MAX_REASONS).join('; ') + (reasons.length > MAX_REASONS ? `; and ${reasons.length - MAX_REASONS} more` : '')
  const lines: JsonValue[] = calls.map((c) => {
    const line: JsonValue[] = [c.requestId, c.keyVersion, c.contextHash, c.code]
    if (rewrap) line.push(c.toVersion ?? null)
    if (batched) line.push(c.batchId ?? null)
    return line
  })
  return {
    actor: first.actor,
    action: `kms.${first.op}`,
    target: first.target,
    outcome: first.outcome,
    reason: `${calls.length} call${calls.length === 1 ? '' : 's'}: ${quoted}`,
    details: {
      service: first.service,
      op: first.op,
      count: calls.length,
      columns: [...KMS_CALL_COLUMNS, ...(rewrap ? [REWRAP_COLUMN] : []), ...(batched ? [BATCH_COLUMN] : [])],
      calls: lines,
    },
  }
}
