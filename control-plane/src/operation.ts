// One control-plane operation = one store transaction that makes the change and
// appends its audit entry together: both commit or neither does (fail closed).
// A refused or failed operation rolls back and is then audited on its own, with
// the error code as the reason, so every decision leaves a record.
import { isKeymeshError } from '../../protocol/src/index.js'
import type { AuditDetails } from './audit-chain.js'
import { actorName, type Actor, type CpContext } from './context.js'
import type { ChangeEvent } from './events.js'
import type { StoreTx } from './store/store.js'
import { dryRunScope, type DryRunState } from './dry-run.js'

/** Thrown inside a dry run's transaction to roll it back; never leaves rehearse(). */
const ROLLBACK = Symbol('dry run rollback')

export interface OperationOutcome<T> {
  readonly result: T
  /** Why it was allowed or what it did; defaults to "ok". */
  readonly reason?: string
  /** Plain JSON for the audit entry: never key material (the audit guard refuses it). */
  readonly details?: AuditDetails
  /**
   * Published after commit, never before: a subscriber must not see uncommitted
   * state. A bus that reaches other replicas sends them inside the transaction,
   * delivered by the database at commit.
   */
  readonly events?: readonly ChangeEvent[]
}

export interface OperationSpec<T> {
  readonly actor: Actor
  /** Audit action, e.g. `key.rotate`. */
  readonly action: string
  /** Audit target, e.g. `key:orders`. */
  readonly target: string
  run(tx: StoreTx): Promise<OperationOutcome<T>>
}

export async function perform<T>(ctx: CpContext, spec: OperationSpec<T>): Promise<T> {
  const dryRun = dryRunScope.getStore()
  if (dryRun !== undefined) return rehearse(ctx, spec, dryRun)
  let outcome: OperationOutcome<T>
  let staged = false
  try {
    outcome = await ctx.store.transaction(async (tx) => {
      const out = await spec.run(tx)
      // Other replicas hear of the change from the commit itself (pg-bus.ts), so a
      // replica that dies between COMMIT and publishing cannot keep it from them.
      const events = out.events ?? []
      if (events.length > 0 && ctx.bus.stage) staged = await ctx.bus.stage(tx, events)
      await ctx.audit.append(tx, {
        actor: actorName(spec.actor),
        action: spec.action,
        target: spec.target,
        outcome: 'ok',
        reason: out.reason ?? 'ok',
        ...(out.details ? { details: out.details } : {}),
      })
      return out
    })
  } catch (err) {
    await auditFailure(ctx, spec.actor, spec.action, spec.target, err)
    throw err
  }
  for (const event of outcome.events ?? []) ctx.bus.publish(event, { staged })
  return outcome.result
}

/** A dry run (dry-run.ts): the same transaction, rolled back; its would-be audit entry and events are noted. */
async function rehearse<T>(ctx: CpContext, spec: OperationSpec<T>, state: DryRunState): Promise<T> {
  let result!: T
  try {
    await ctx.store.transaction(async (tx) => {
      const out = await spec.run(tx)
      state.changes.push({ action: spec.action, target: spec.target, reason: out.reason ?? 'ok', details: out.details ?? {}, notifications: out.events ?? [] })
      result = out.result
      throw ROLLBACK
    })
  } catch (err) {
    if (err !== ROLLBACK) throw err
  }
  return result
}

/**
 * Records a refusal or failure in a transaction of its own. When the store itself
 * is what failed, this may fail too: that is logged, and the caller still gets
 * the original error. `details` adds fields (e.g. the count of a summary entry).
 */
export async function auditFailure(ctx: CpContext, actor: Actor, action: string, target: string, err: unknown, details: Record<string, number> = {}): Promise<void> {
  const code = isKeymeshError(err) ? err.code : 'CP_ERR_INTERNAL'
  const denied = isKeymeshError(err) && (err.status === 401 || err.status === 403)
  const reason = isKeymeshError(err) ? `${code}: ${err.message}` : `${code}: unexpected error`
  try {
    await ctx.store.transaction((tx) =>
      ctx.audit.append(tx, {
        actor: actorName(actor),
        action,
        target,
        outcome: denied ? 'deny' : 'error',
        reason,
        details: { ...details, code },
      }),
    )
  } catch (auditErr) {
    ctx.logger.error({ err: auditErr, action, target, code }, 'could not audit a failed operation')
  }
}
