// Admin API for intentions and pair keys:
//   POST   /v1/intentions               {src, dst}   intention.allow
//   POST   /v1/intentions/deny          {src, dst}   intention.deny
//   DELETE /v1/intentions/:src/:dst?graceMs=N|now=true   intention.remove
//   GET    /v1/intentions?service=S                  intention.list
//   GET    /v1/pairs?service=S&all=true              pair.list
//   POST   /v1/pairs/:a/:b/rotate                    pair.rotate
// Either side of a rule may be `*` (any service); a deny wins over every allow it
// matches (policy.ts, services/intentions.ts). Removing an allow keeps it working
// through a grace (default: the pair grace, 1 h) so live tunnels are not cut by a
// typo; `now=true` removes it at once. A deny, and lifting a deny, act at once.
// Every change is one perform(): the rules, the pair keys and the audit entry commit
// together, and the 'services' event for the affected services goes out only after
// the commit. Names are checked inside the operation, so a bad name is audited with
// its code. Responses carry pair metadata (versions, states, notAfter), never material.
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { Route } from '../http/router.js'
import { perform, type OperationOutcome } from '../operation.js'
import { ANY_SERVICE, activeIntentions, mayConnect } from '../policy.js'
import { allowedPairs, checkRuleSide, describeEffect, reconcilePairs, type PolicyEffect } from '../services/intentions.js'
import { checkService, listPairs, pairOf, rotatePairKey } from '../services/pairs.js'
import type { StoreTx } from '../store/store.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

// Names are validated by checkRuleSide in the operation (for a specific, audited error);
// the schema only bounds their size.
const NAME = { type: 'string', maxLength: 100 } as const
const SERVICE_QUERY = { service: { type: 'string', maxLength: 100, optional: true } } as const
const PAIRS_QUERY = { ...SERVICE_QUERY, all: { type: 'boolean', optional: true } } as const
/** The longest grace a removal may keep a rule working: 30 days. */
const MAX_GRACE_MS = 30 * 24 * 3600_000
const REMOVE_QUERY = { graceMs: { type: 'integer', min: 0, max: MAX_GRACE_MS, optional: true }, now: { type: 'boolean', optional: true } } as const

/** Audit target of an intention: `intention:src->dst` (names may be invalid, so they are bounded and quoted when odd). */
const intentionTarget = (src: string, dst: string): string => `intention:${safe(src)}->${safe(dst)}`
const pairTarget = (a: string, b: string): string => {
  try {
    return `pair:${pairOf(a, b).pairId}`
  } catch {
    return `pair:${safe(a)}:${safe(b)}`
  }
}
function safe(s: string): string {
  return /^([a-z0-9-]{1,63}|\*)$/.test(s) ? s : JSON.stringify(s.slice(0, 64))
}

/** Both sides checked; a rule names two distinct services, or `*` on either side or both. */
function ruleSides(rawSrc: string, rawDst: string): { src: string; dst: string } {
  const src = checkRuleSide(rawSrc, 'src')
  const dst = checkRuleSide(rawDst, 'dst')
  if (src === dst && src !== ANY_SERVICE) throw cpError('CP_ERR_SAME_SERVICE', `${src} → ${dst}`)
  return { src, dst }
}

/** A rule change's outcome: its impact goes to the answer, the audit details and the events. */
function outcome<R extends object>(result: R, reason: string, impact: PolicyEffect, action: string): OperationOutcome<R & { impact: PolicyEffect }> {
  const impactJson = JSON.parse(JSON.stringify(impact)) as { [k: string]: never }
  return {
    result: { ...result, impact },
    reason: `${reason}; ${describeEffect(impact)}`,
    details: { ...(result as Record<string, never>), impact: impactJson },
    events: impact.services.length > 0 ? [{ kind: 'services', services: impact.services, reason: action }] : [],
  }
}

/** Why `src → dst` is still not allowed (a deny that wins over it), or null. */
async function deniedBy(tx: StoreTx, src: string, dst: string, now: number): Promise<string | null> {
  if (src === ANY_SERVICE || dst === ANY_SERVICE) return null
  const d = mayConnect(activeIntentions(await tx.listIntentions(), now), src, dst)
  return d.allow ? null : d.reason
}

export function intentionsRoutes(ctx: CpContext): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'POST',
      path: '/v1/intentions',
      operation: 'intention.allow',
      auth: 'token',
      body: { fields: { src: NAME, dst: NAME } },
      handler: async ({ body, principal }) => {
        const result = await perform(ctx, {
          actor: operatorActor(principal),
          action: 'intention.allow',
          target: intentionTarget(body.src, body.dst),
          run: async (tx) => {
            const { src, dst } = ruleSides(body.src, body.dst)
            if (src === ANY_SERVICE && dst === ANY_SERVICE) throw cpError('CP_ERR_POLICY_TOO_BROAD', 'allow * → * would pair every service with every other')
            const now = ctx.clock.now()
            const before = await allowedPairs(tx, now)
            const existing = await tx.getIntention(src, dst)
            if (existing?.effect === 'deny') throw cpError('CP_ERR_INTENTION_DENIED', `deny ${src} → ${dst} exists; remove it first`)
            const created = existing === null && (await tx.addIntention({ src, dst, createdAt: now }))
            // Allowing again during a removal's grace cancels the removal.
            const restored = existing !== null && existing.expiresAt !== null && (await tx.updateIntention(src, dst, { expiresAt: null, expiresAtObserved: null }))
            const effect = await reconcilePairs(ctx, tx, before, now)
            const blocked = await deniedBy(tx, src, dst, now)
            const createdAt = existing?.createdAt ?? now
            // A named pair's key, when the rule names both sides and no deny blocks it.
            const key = src !== ANY_SERVICE && dst !== ANY_SERVICE ? await tx.findPairKey(src, dst) : null
            const pair = key !== null && blocked === null ? { pairId: key.name, pairVersion: key.primaryVersion } : { pairId: null, pairVersion: null }
            const what = created ? `allowed ${src} → ${dst}` : restored ? `kept ${src} → ${dst}; its removal is cancelled` : `${src} → ${dst} was already allowed`
            return outcome({ src, dst, effect: 'allow' as const, createdAt, created, restored, deniedBy: blocked, ...pair }, blocked === null ? what : `${what}, but ${blocked}`, effect, 'intention.allow')
          },
        })
        return { status: result.created ? 201 : 200, body: result }
      },
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/intentions/deny',
      operation: 'intention.deny',
      auth: 'token',
      body: { fields: { src: NAME, dst: NAME } },
      handler: async ({ body, principal }) => {
        const result = await perform(ctx, {
          actor: operatorActor(principal),
          action: 'intention.deny',
          target: intentionTarget(body.src, body.dst),
          run: async (tx) => {
            const { src, dst } = ruleSides(body.src, body.dst)
            const now = ctx.clock.now()
            const before = await allowedPairs(tx, now)
            const existing = await tx.getIntention(src, dst)
            const created = existing === null
            if (created) await tx.addIntention({ src, dst, createdAt: now, effect: 'deny' })
            else if (existing.effect !== 'deny' || existing.expiresAt !== null) await tx.updateIntention(src, dst, { effect: 'deny', expiresAt: null, expiresAtObserved: null, createdAt: now })
            const effect = await reconcilePairs(ctx, tx, before, now)
            const replaced = existing?.effect === 'allow'
            const what = created ? `denied ${src} → ${dst}` : replaced ? `denied ${src} → ${dst}, replacing its allow` : `${src} → ${dst} was already denied`
            return outcome({ src, dst, effect: 'deny' as const, created, replacedAllow: replaced }, what, effect, 'intention.deny')
          },
        })
        return { status: result.created ? 201 : 200, body: result }
      },
    }),
    operatorRoute({
      method: 'DELETE',
      path: '/v1/intentions/:src/:dst',
      operation: 'intention.remove',
      auth: 'token',
      query: REMOVE_QUERY,
      handler: async ({ params, query, principal }) => {
        const rawSrc = params['src'] ?? ''
        const rawDst = params['dst'] ?? ''
        const result = await perform(ctx, {
          actor: operatorActor(principal),
          action: 'intention.remove',
          target: intentionTarget(rawSrc, rawDst),
          run: async (tx) => {
            const { src, dst } = ruleSides(rawSrc, rawDst)
            const now = ctx.clock.now()
            const before = await allowedPairs(tx, now)
            const existing = await tx.getIntention(src, dst)
            if (existing === null) throw cpError('CP_ERR_INTENTION_NOT_FOUND', `${src} → ${dst}`)
            const graceMs = query.now === true ? 0 : query.graceMs ?? ctx.settings.lifecycle.pairGraceMs
            // Lifting a deny only lets more through, so it needs no grace.
            const atOnce = existing.effect === 'deny' || graceMs === 0
            let removesAt: number | null = null
            if (atOnce) await tx.deleteIntention(src, dst)
            else {
              // A second removal never pushes the end further out.
              removesAt = existing.expiresAt === null ? now + graceMs : Math.min(existing.expiresAt, now + graceMs)
              // The removal destroys pair keys: it waits for its elapsed time too (elapsed-ledger.ts).
              if (removesAt !== existing.expiresAt) await tx.updateIntention(src, dst, { expiresAt: removesAt, expiresAtObserved: await ctx.elapsed.guard(tx, removesAt) })
            }
            const effect = await reconcilePairs(ctx, tx, before, now)
            const rule = `${existing.effect} ${src} → ${dst}`
            const what = atOnce ? `removed ${rule}` : `${rule} is removed at ${new Date(removesAt as number).toISOString()}; it works until then`
            return outcome({ src, dst, effect: existing.effect, removed: atOnce, removesAt }, what, effect, 'intention.remove')
          },
        })
        return { status: 200, body: result }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/intentions',
      operation: 'intention.list',
      auth: 'token',
      query: SERVICE_QUERY,
      handler: async ({ query }) => {
        const service = query.service === undefined ? undefined : checkService(query.service)
        const rows = await ctx.store.read((r) => r.listIntentions(service === undefined ? {} : { service }))
        return { status: 200, body: rows.map((i) => ({ src: i.src, dst: i.dst, effect: i.effect, createdAt: i.createdAt, removesAt: i.expiresAt })) }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/pairs',
      operation: 'pair.list',
      auth: 'token',
      query: PAIRS_QUERY,
      handler: async ({ query }) => {
        const service = query.service === undefined ? undefined : checkService(query.service)
        const pairs = await ctx.store.read((r) => listPairs(r, ctx.clock.now(), service))
        return { status: 200, body: query.all === true ? pairs : pairs.filter((p) => p.state === 'live') }
      },
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/pairs/:a/:b/rotate',
      operation: 'pair.rotate',
      auth: 'token',
      handler: async ({ params, principal }) => {
        const a = params['a'] ?? ''
        const b = params['b'] ?? ''
        const result = await perform(ctx, {
          actor: operatorActor(principal),
          action: 'pair.rotate',
          target: pairTarget(a, b),
          run: async (tx) => {
            const { lo, hi, pairId } = pairOf(a, b)
            const key = await tx.findPairKey(lo, hi)
            if (key === null) throw cpError('CP_ERR_PAIR_NOT_FOUND', pairId)
            const r = await rotatePairKey(ctx, tx, key, ctx.clock.now(), ctx.settings.lifecycle.pairGraceMs)
            const out = { pairId, version: r.version, previousVersion: r.previousVersion, previousNotAfter: r.previousNotAfter }
            return {
              result: out,
              reason: `rotated ${pairId} to v${r.version} on request`,
              details: { ...out },
              events: [{ kind: 'services', services: [lo, hi], reason: 'pair.rotate' }],
            }
          },
        })
        return { status: 200, body: result }
      },
    }),
  ]
}
