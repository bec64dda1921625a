// The scheduler: one pass every settings.schedulerIntervalMs on ctx.clock.
// A pass first advances the elapsed ledger (elapsed-ledger.ts), then rotates pair keys whose rotation is due, destroys pair versions whose grace
// has ended, deletes removed intentions whose grace has ended (destroying the pair
// keys no rule calls for any more), rotates due keys and destroys due versions (services/keys.ts), and
// removes expired join tokens and (once a day) old key-usage buckets, and signs an audit checkpoint of the head when the
// newest one is older than settings.auditCheckpointIntervalMs.
//
// What must hold:
// - each change is its own perform(): one transaction with its audit entry, actor
//   system:scheduler, and its 'services' event published after commit;
// - one failing item is logged and the pass goes on with the next;
// - never two passes at once: a tick() while a pass runs waits for it and then runs
//   one more (coalesced), and every item is re-checked inside its transaction, so a
//   pass that comes late finds nothing left to do instead of rotating twice;
// - the timer is re-armed only after a pass ends; stop() cancels it, waits, and writes
//   the elapsed time this process observed since its last write;
// - what destroys material (pair expiry, intention removal, scheduled destruction)
//   waits for its wall time and for its elapsed time (elapsed-ledger.ts): an item
//   whose wall time came first is left for a later pass, logged once;
// - with a lease (several replicas, cluster/pg-lease.ts) a pass runs only on the
//   replica that holds it; without one (a single process) every pass runs. The
//   re-checks above keep two overlapping passes on two replicas from doing any
//   item twice, because the store serialises write transactions across replicas.
import { DAY, type CancelTimer } from '../../platform/src/index.js'
import type { Actor, CpContext } from './context.js'
import { perform } from './operation.js'
import { allowedPairs, describeEffect, reconcilePairs } from './services/intentions.js'
import { expireIfDue, rotateIfDue } from './services/pairs.js'
import { VERSION_STATES } from './store/records.js'
import { destroyDueVersions, rotateDueKeys } from './services/keys.js'
import { dayOf, pruneKeyUsage } from './services/key-usage.js'

export interface Scheduler {
  /** Starts ticking every settings.schedulerIntervalMs on ctx.clock. */
  start(): void
  /** One pass: due rotations, pair-version expiry, due destructions, expired join tokens. */
  tick(): Promise<void>
  /** Stops ticking and waits for a running pass. */
  stop(): Promise<void>
}

/** Who may run a pass (one replica at a time); see cluster/pg-lease.ts. */
export interface SchedulerLease {
  /** True when this process holds the lease, taking it when free; never throws. */
  tryAcquire(): Promise<boolean>
}

export interface SchedulerOptions {
  readonly lease?: SchedulerLease | undefined
}

const ACTOR: Actor = { kind: 'system', task: 'scheduler' }
const LIVE_STATES = VERSION_STATES.filter((s) => s !== 'destroyed')

export function createScheduler(ctx: CpContext, options: SchedulerOptions = {}): Scheduler {
  const { lease } = options
  let timer: CancelTimer | undefined
  let running: Promise<void> | undefined
  let queued: Promise<void> | undefined
  let started = false
  let stopped = false
  const pruned = { day: -1 }

  const tick = (): Promise<void> => {
    if (running === undefined) {
      running = guardedPass(ctx, lease, pruned).finally(() => {
        running = undefined
      })
      return running
    }
    // Coalesce: however many ticks arrive during a pass, one more pass follows it.
    queued ??= running.then(() => {
      queued = undefined
      return tick()
    })
    return queued
  }

  const arm = (): void => {
    if (stopped) return
    timer = ctx.clock.setTimer(ctx.settings.schedulerIntervalMs, () => {
      timer = undefined
      tick()
        .catch((err: unknown) => ctx.logger.error({ err }, 'scheduler pass failed'))
        .finally(arm)
    })
  }

  return {
    start() {
      if (started || stopped) return
      started = true
      arm()
    },
    tick,
    async stop() {
      stopped = true
      timer?.()
      timer = undefined
      await (queued ?? running)
      await ctx.elapsed.flush().catch((err: unknown) => ctx.logger.warn({ err }, 'could not write the elapsed ledger'))
    },
  }
}

async function guardedPass(ctx: CpContext, lease: SchedulerLease | undefined, pruned: { day: number }): Promise<void> {
  if (lease && !(await lease.tryAcquire())) return
  // Only the lease holder counts elapsed time, so replicas never count it twice.
  await step(ctx, 'elapsed ledger', async () => (await ctx.elapsed.advance(), 0))
  await runPass(ctx, pruned)
}

/** One pass over everything that is due at the pass's start time. */
async function runPass(ctx: CpContext, pruned: { day: number }): Promise<void> {
  const now = ctx.clock.now()
  await step(ctx, 'pair rotation', () => rotateDuePairs(ctx, now))
  await step(ctx, 'pair expiry', () => expireDuePairVersions(ctx, now))
  await step(ctx, 'intention removal', () => removeExpiredIntentions(ctx, now))
  await step(ctx, 'key rotation', () => rotateDueKeys(ctx, now))
  await step(ctx, 'key destruction', () => destroyDueVersions(ctx, now))
  await step(ctx, 'join-token cleanup', () => deleteExpiredJoinTokens(ctx, now))
  if (pruned.day !== dayOf(now)) {
    pruned.day = dayOf(now)
    await step(ctx, 'key-usage cleanup', () => pruneKeyUsage(ctx.store, now, ctx.settings.destroyGuardMs))
  }
  await step(ctx, 'audit checkpoint', async () => ((await ctx.audit.checkpointIfDue(ctx.store, ctx.settings.auditCheckpointIntervalMs)) ? 1 : 0))
}

/** `fn` returns how many changes it made, or the list of them (services/keys.ts does). */
async function step(ctx: CpContext, what: string, fn: () => Promise<number | readonly unknown[]>): Promise<void> {
  try {
    const done = await fn()
    const n = typeof done === 'number' ? done : done.length
    if (n > 0) ctx.logger.info({ task: what, count: n }, 'scheduler step done')
  } catch (err) {
    ctx.logger.error({ err, task: what }, 'scheduler step failed')
  }
}

/** Runs `fn` on each item; a failure is logged (perform already audited it) and the rest go on. */
async function each<T>(ctx: CpContext, items: readonly T[], what: (item: T) => string, fn: (item: T) => Promise<boolean>): Promise<number> {
  let done = 0
  for (const item of items) {
    try {
      if (await fn(item)) done++
    } catch (err) {
      ctx.logger.error({ err, item: what(item) }, 'scheduler item failed')
    }
  }
  return done
}

export async function rotateDuePairs(ctx: CpContext, now: number): Promise<number> {
  const due = await ctx.store.read((r) => r.listKeys({ type: 'pair', rotationDueBy: now }))
  return each(ctx, due, (k) => k.name, async (key) => {
    const r = await perform(ctx, {
      actor: ACTOR,
      action: 'pair.rotate',
      target: `pair:${key.name}`,
      run: async (tx) => {
        const rotated = await rotateIfDue(ctx, tx, key.name, now)
        if (rotated === null) return { result: null, reason: 'not due any more; nothing changed' }
        const { pairId, version, previousVersion, previousNotAfter } = rotated
        return {
          result: rotated,
          reason: `scheduled rotation of ${pairId} to v${version}`,
          details: { pairId, version, previousVersion, previousNotAfter },
          events: [{ kind: 'services', services: rotated.services, reason: 'pair.rotate' }],
        }
      },
    })
    return r !== null
  })
}

export async function expireDuePairVersions(ctx: CpContext, now: number): Promise<number> {
  // Destroyed versions keep their notAfter; leaving them out keeps each pass's read
  // proportional to what is due, not to the history of every rotation.
  const due = await ctx.store.read((r) => r.listKeyVersions({ notAfterBy: now, states: LIVE_STATES }))
  const live = await ctx.elapsed.due(due, (v) => ({ what: `pair:${v.keyName} v${v.version} grace end`, deadline: v.notAfter as number, required: v.notAfterObserved }))
  return each(ctx, live, (v) => `${v.keyName} v${v.version}`, async (v) => {
    const r = await perform(ctx, {
      actor: ACTOR,
      action: 'pair.expire',
      target: `pair:${v.keyName}`,
      run: async (tx) => {
        const gone = await expireIfDue(ctx, tx, v.keyName, v.version, now)
        if (gone === null) return { result: null, reason: 'already destroyed or not due; nothing changed' }
        return {
          result: gone,
          reason: `grace of ${gone.pairId} v${gone.version} ended; material destroyed`,
          details: { pairId: gone.pairId, keyVersion: gone.version },
          events: [{ kind: 'services', services: gone.services, reason: 'pair.expire' }],
        }
      },
    })
    return r !== null
  })
}

/** Deletes each removed intention whose grace has ended, and destroys the pair keys no rule calls for any more. */
export async function removeExpiredIntentions(ctx: CpContext, now: number): Promise<number> {
  const expired = await ctx.store.read((r) => r.listIntentions({ expiresBy: now }))
  const due = await ctx.elapsed.due(expired, (i) => ({ what: `intention:${i.src}->${i.dst} removal`, deadline: i.expiresAt as number, required: i.expiresAtObserved }))
  return each(ctx, due, (i) => `${i.src}->${i.dst}`, async (i) => {
    const r = await perform(ctx, {
      actor: ACTOR,
      action: 'intention.expire',
      target: `intention:${i.src}->${i.dst}`,
      run: async (tx) => {
        const current = await tx.getIntention(i.src, i.dst)
        if (current === null || current.expiresAt === null || current.expiresAt > now || !(await ctx.elapsed.covers(tx, current.expiresAtObserved))) {
          return { result: null, reason: 'no longer due; nothing changed' }
        }
        // The rule stopped counting at its expiry; compare with the rules as they were just before.
        const before = await allowedPairs(tx, current.expiresAt - 1)
        await tx.deleteIntention(i.src, i.dst)
        const effect = await reconcilePairs(ctx, tx, before, now)
        return {
          result: effect,
          reason: `grace of the removal of ${current.effect} ${i.src} → ${i.dst} ended; ${describeEffect(effect)}`,
          details: { src: i.src, dst: i.dst, impact: JSON.parse(JSON.stringify(effect)) as { [k: string]: never } },
          events: effect.services.length > 0 ? [{ kind: 'services', services: effect.services, reason: 'intention.expire' }] : [],
        }
      },
    })
    return r !== null
  })
}

/**
 * How long an expired join token is kept before it is removed: an agent that presents
 * it meanwhile is told it expired, and when, rather than that it is unknown.
 */
export const EXPIRED_JOIN_TOKEN_KEEP_MS = DAY

export async function deleteExpiredJoinTokens(ctx: CpContext, now: number): Promise<number> {
  const before = now - EXPIRED_JOIN_TOKEN_KEEP_MS
  // Looked at first so that an idle control plane does not audit an empty cleanup every second.
  const tokens = await ctx.store.read((r) => r.listJoinTokens())
  if (!tokens.some((t) => t.expiresAt < before)) return 0
  return perform(ctx, {
    actor: ACTOR,
    action: 'join-token.expire',
    target: 'join-tokens',
    run: async (tx) => {
      const count = await tx.deleteJoinTokensExpiredBefore(before)
      return { result: count, reason: `removed ${count} expired join token(s)`, details: { count } }
    },
  })
}
