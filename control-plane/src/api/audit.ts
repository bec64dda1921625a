// Admin API over the audit log (admin and auditor roles; policy.ts decides):
//   GET /v1/audit?limit&from&to&actor&action&target&outcome → {entries: [...]}, oldest first.
//       Without any filter it is a tail: the newest `limit` entries. With a filter it
//       pages forward from the oldest match (narrow with `from` to move on).
//   GET /v1/audit/export[?from&to&actor&action&target&outcome] → JSON lines
//       (application/x-ndjson), every matching entry, streamed page by page.
//   GET /v1/audit/verify[?expectSeq&expectHash] → {ok, count, head?, macs?, checkpoints?, firstBadSeq?, reason?}
//       MACs and the stored checkpoints are checked; with expectSeq and expectHash
//       the chain must also pass through that head (a checkpoint the caller holds).
//   GET /v1/audit/checkpoint → the newest signed checkpoint (audit-checkpoint.ts), or 404.
// Exports and verifications are themselves audited (who took the log away, who
// checked it and what they found); plain queries are not, or reading would flood it.
import type { AuditQuery } from '../audit.js'
import type { AuditDetails, AuditVerifyResult } from '../audit-chain.js'
import { checkpointJson } from '../audit-checkpoint.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { Route } from '../http/router.js'
import type { QuerySchema } from '../http/body.js'
import { perform } from '../operation.js'
import { AUDIT_OUTCOMES, type AuditOutcome } from '../store/records.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

export const DEFAULT_AUDIT_LIMIT = 100
export const MAX_AUDIT_LIMIT = 1000

const FILTERS = {
  from: { type: 'string', maxLength: 40, optional: true },
  to: { type: 'string', maxLength: 40, optional: true },
  actor: { type: 'string', minLength: 1, maxLength: 200, optional: true },
  action: { type: 'string', minLength: 1, maxLength: 200, optional: true },
  target: { type: 'string', minLength: 1, maxLength: 200, optional: true },
  outcome: { type: 'string', enum: AUDIT_OUTCOMES, optional: true },
} as const satisfies QuerySchema

interface FilterQuery {
  readonly from?: string | undefined
  readonly to?: string | undefined
  readonly actor?: string | undefined
  readonly action?: string | undefined
  readonly target?: string | undefined
  readonly outcome?: AuditOutcome | undefined
}

/** A time bound: integer milliseconds since the epoch, or an ISO 8601 date-time. */
export function parseAuditTime(text: string, field: string): number {
  if (/^\d{1,15}$/.test(text)) return Number(text)
  const ms = /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) ? Date.parse(text) : NaN
  if (!Number.isFinite(ms)) throw cpError('CP_ERR_AUDIT_TIME', field)
  return ms
}

function toFilter(q: FilterQuery): Omit<AuditQuery, 'limit'> {
  return {
    ...(q.from !== undefined ? { from: parseAuditTime(q.from, 'from') } : {}),
    ...(q.to !== undefined ? { to: parseAuditTime(q.to, 'to') } : {}),
    ...(q.actor !== undefined ? { actor: q.actor } : {}),
    ...(q.action !== undefined ? { action: q.action } : {}),
    ...(q.target !== undefined ? { target: q.target } : {}),
    ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
  }
}

/** The verify answer: hashes as hex, the head only when the chain is intact. */
export function verifyView(v: AuditVerifyResult): Record<string, unknown> {
  return v.ok
    ? { ok: true, count: v.count, head: { seq: v.head.seq, hash: Buffer.from(v.head.hash).toString('hex') }, macs: v.macs, checkpoints: v.checkpoints }
    : { ok: false, count: v.count, firstBadSeq: v.firstBadSeq, reason: v.reason }
}

export function auditRoutes(ctx: CpContext): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'GET',
      path: '/v1/audit',
      operation: 'audit.read',
      auth: 'token',
      query: { ...FILTERS, limit: { type: 'integer', min: 1, max: MAX_AUDIT_LIMIT, optional: true } },
      handler: async (req) => {
        const { limit = DEFAULT_AUDIT_LIMIT, ...rest } = req.query
        const filter = toFilter(rest)
        const entries = Object.keys(filter).length === 0
          ? await ctx.audit.tail(ctx.store, limit)
          : await ctx.audit.query(ctx.store, { ...filter, limit })
        return { status: 200, body: { entries } }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/audit/export',
      operation: 'audit.export',
      auth: 'token',
      query: FILTERS,
      handler: async (req) => {
        const filter = toFilter(req.query)
        // Recorded before the first line is sent, so the export carries its own record.
        await perform(ctx, {
          actor: operatorActor(req.principal),
          action: 'audit.export',
          target: 'audit',
          run: async () => ({ result: undefined, reason: 'exported the audit log as JSON lines', details: { filter: { ...filter } } }),
        })
        const lines = async function* (): AsyncGenerator<string> {
          for await (const entry of ctx.audit.export(ctx.store, filter)) yield `${JSON.stringify(entry)}\n`
        }
        return {
          status: 200,
          headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-disposition': 'attachment; filename="keymesh-audit.jsonl"' },
          stream: lines(),
        }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/audit/verify',
      operation: 'audit.verify',
      auth: 'token',
      query: {
        expectSeq: { type: 'integer', min: 1, max: Number.MAX_SAFE_INTEGER, optional: true },
        expectHash: { type: 'string', pattern: /^[0-9a-f]{64}$/, optional: true },
      },
      handler: async (req) => {
        const { expectSeq, expectHash } = req.query
        if ((expectSeq === undefined) !== (expectHash === undefined)) throw cpError('CP_ERR_INVALID_FIELD', 'expectSeq and expectHash go together')
        const expect = expectSeq !== undefined && expectHash !== undefined ? [{ seq: expectSeq, hash: new Uint8Array(Buffer.from(expectHash, 'hex')) }] : []
        const v = await ctx.audit.verify(ctx.store, { expect })
        const details: AuditDetails = v.ok
          ? { ok: true, count: v.count }
          : { ok: false, count: v.count, firstBadSeq: v.firstBadSeq, reason: v.reason }
        await perform(ctx, {
          actor: operatorActor(req.principal),
          action: 'audit.verify',
          target: 'audit',
          run: async () => ({
            result: undefined,
            reason: v.ok ? `chain intact: ${v.count} entries` : `chain broken at seq ${v.firstBadSeq} (${v.reason})`,
            details,
          }),
        })
        const view = verifyView(v)
        return { status: 200, body: view }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/audit/checkpoint',
      operation: 'audit.read',
      auth: 'token',
      handler: async () => {
        const c = await ctx.audit.latestCheckpoint(ctx.store)
        if (!c || !ctx.audit.publicKey) throw cpError('CP_ERR_NO_CHECKPOINT')
        return { status: 200, body: checkpointJson(c, ctx.audit.publicKey) }
      },
    }),
  ]
}
