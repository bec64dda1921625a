import { cpError } from '../errors.js';
import { perform } from '../operation.js';
import { AUDIT_OUTCOMES } from '../store/records.js';
import { operatorActor, operatorRoute } from './principal.js';
export const DEFAULT_AUDIT_LIMIT = 100;
export const MAX_AUDIT_LIMIT = 1000;
const FILTERS = {
    from: { type: 'string', maxLength: 40, optional: true },
    to: { type: 'string', maxLength: 40, optional: true },
    actor: { type: 'string', minLength: 1, maxLength: 200, optional: true },
    action: { type: 'string', minLength: 1, maxLength: 200, optional: true },
    target: { type: 'string', minLength: 1, maxLength: 200, optional: true },
    outcome: { type: 'string', enum: AUDIT_OUTCOMES, optional: true },
};
/** A time bound: integer milliseconds since the epoch, or an ISO 8601 date-time. */
export function parseAuditTime(text, field) {
    if (/^\d{1,15}$/.test(text))
        return Number(text);
    const ms = /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) ? Date.parse(text) : NaN;
    if (!Number.isFinite(ms))
        throw cpError('CP_ERR_AUDIT_TIME', field);
    return ms;
}
function toFilter(q) {
    return {
        ...(q.from !== undefined ? { from: parseAuditTime(q.from, 'from') } : {}),
        ...(q.to !== undefined ? { to: parseAuditTime(q.to, 'to') } : {}),
        ...(q.actor !== undefined ? { actor: q.actor } : {}),
        ...(q.action !== undefined ? { action: q.action } : {}),
        ...(q.target !== undefined ? { target: q.target } : {}),
        ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
    };
}
/** The verify answer: hashes as hex, the head only when the chain is intact. */
export function verifyView(v) {
    return v.ok
        ? { ok: true, count: v.count, head: { seq: v.head.seq, hash: Buffer.from(v.head.hash).toString('hex') } }
        : { ok: false, count: v.count, firstBadSeq: v.firstBadSeq, reason: v.reason };
}
export function auditRoutes(ctx) {
    return [
        operatorRoute({
            method: 'GET',
            path: '/v1/audit',
            operation: 'audit.read',
            auth: 'token',
            query: { ...FILTERS, limit: { type: 'integer', min: 1, max: MAX_AUDIT_LIMIT, optional: true } },
            handler: async (req) => {
                const { limit = DEFAULT_AUDIT_LIMIT, ...rest } = req.query;
                const filter = toFilter(rest);
                const entries = Object.keys(filter).length === 0
                    ? await ctx.audit.tail(ctx.store, limit)
                    : await ctx.audit.query(ctx.store, { ...filter, limit });
                return { status: 200, body: { entries } };
            },
        }),
        operatorRoute({
            method: 'GET',
            path: '/v1/audit/export',
            operation: 'audit.export',
            auth: 'token',
            query: FILTERS,
            handler: async (req) => {
                const filter = toFilter(req.query);
                // Recorded before the first line is sent, so the export carries its own record.
                await perform(ctx, {
                    actor: operatorActor(req.principal),
                    action: 'audit.export',
                    target: 'audit',
                    run: async () => ({ result: undefined, reason: 'exported the audit log as JSON lines', details: { filter: { ...filter } } }),
                });
                const lines = async function* () {
                    for await (const entry of ctx.audit.export(ctx.store, filter))
                        yield `${JSON.stringify(entry)}\n`;
                };
                return {
                    status: 200,
                    headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-disposition': 'attachment; filename="keymesh-audit.jsonl"' },
                    stream: lines(),
                };
            },
        }),
        operatorRoute({
            method: 'GET',
            path: '/v1/audit/verify',
            operation: 'audit.verify',
            auth: 'token',
            handler: async (req) => {
                const v = await ctx.audit.verify(ctx.store);
                const details = v.ok
                    ? { ok: true, count: v.count }
                    : { ok: false, count: v.count, firstBadSeq: v.firstBadSeq, reason: v.reason };
                await perform(ctx, {
                    actor: operatorActor(req.principal),
                    action: 'audit.verify',
                    target: 'audit',
                    run: async () => ({
                        result: undefined,
                        reason: v.ok ? `chain intact: ${v.count} entries` : `chain broken at seq ${v.firstBadSeq} (${v.reason})`,
                        details,
                    }),
                });
                const view = verifyView(v);
                return { status: 200, body: view };
            },
        }),
    ];
}
//# sourceMappingURL=audit.js.map