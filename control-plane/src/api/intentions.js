import { cpError } from '../errors.js';
import { perform } from '../operation.js';
import { checkService, ensurePairKey, listPairs, pairOf, retirePairKey, rotatePairKey } from '../services/pairs.js';
import { operatorActor, operatorRoute } from './principal.js';
// Names are validated by checkService in the operation (for a specific, audited error);
// the schema only bounds their size.
const NAME = { type: 'string', maxLength: 100 };
const SERVICE_QUERY = { service: { type: 'string', maxLength: 100, optional: true } };
/** Audit target of an intention: `intention:src->dst` (names may be invalid, so they are bounded and quoted when odd). */
const intentionTarget = (src, dst) => `intention:${safe(src)}->${safe(dst)}`;
const pairTarget = (a, b) => {
    try {
        return `pair:${pairOf(a, b).pairId}`;
    }
    catch {
        return `pair:${safe(a)}:${safe(b)}`;
    }
};
function safe(s) {
    return /^[a-z0-9-]{1,63}$/.test(s) ? s : JSON.stringify(s.slice(0, 64));
}
export function intentionsRoutes(ctx) {
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
                        const src = checkService(body.src, 'src');
                        const dst = checkService(body.dst, 'dst');
                        if (src === dst)
                            throw cpError('CP_ERR_SAME_SERVICE', `${src} → ${src}`);
                        const now = ctx.clock.now();
                        const created = await tx.addIntention({ src, dst, createdAt: now });
                        const pair = await ensurePairKey(ctx, tx, src, dst, now);
                        const intention = await tx.getIntention(src, dst);
                        const changed = created || pair.outcome !== 'existing';
                        return {
                            result: { src, dst, createdAt: intention?.createdAt ?? now, created, pairId: pair.pairId, pairVersion: pair.version },
                            reason: created ? `allowed ${src} → ${dst}` : `${src} → ${dst} was already allowed`,
                            details: { src, dst, created, pairId: pair.pairId, keyVersion: pair.version, pairChange: pair.outcome },
                            events: changed ? [{ kind: 'services', services: [src, dst], reason: 'intention.allow' }] : [],
                        };
                    },
                });
                return { status: result.created ? 201 : 200, body: result };
            },
        }),
        operatorRoute({
            method: 'DELETE',
            path: '/v1/intentions/:src/:dst',
            operation: 'intention.deny',
            auth: 'token',
            handler: async ({ params, principal }) => {
                const rawSrc = params['src'] ?? '';
                const rawDst = params['dst'] ?? '';
                const result = await perform(ctx, {
                    actor: operatorActor(principal),
                    action: 'intention.deny',
                    target: intentionTarget(rawSrc, rawDst),
                    run: async (tx) => {
                        const src = checkService(rawSrc, 'src');
                        const dst = checkService(rawDst, 'dst');
                        if (src === dst)
                            throw cpError('CP_ERR_SAME_SERVICE', `${src} → ${src}`);
                        if (!(await tx.deleteIntention(src, dst)))
                            throw cpError('CP_ERR_INTENTION_NOT_FOUND', `${src} → ${dst}`);
                        const { pairId } = pairOf(src, dst);
                        // The pair key lives while either direction is allowed.
                        const reverse = await tx.getIntention(dst, src);
                        const key = reverse === null ? await tx.findPairKey(src, dst) : null;
                        const destroyed = key !== null ? await retirePairKey(tx, key, ctx.clock.now()) : [];
                        return {
                            result: { src, dst, deleted: true, pairId, pairRetired: reverse === null, destroyedVersions: destroyed },
                            reason: reverse === null ? `denied ${src} → ${dst}; no intention left, pair key destroyed` : `denied ${src} → ${dst}; ${dst} → ${src} keeps the pair key`,
                            details: { src, dst, pairId, destroyedVersions: destroyed },
                            events: [{ kind: 'services', services: [src, dst], reason: 'intention.deny' }],
                        };
                    },
                });
                return { status: 200, body: result };
            },
        }),
        operatorRoute({
            method: 'GET',
            path: '/v1/intentions',
            operation: 'intention.list',
            auth: 'token',
            query: SERVICE_QUERY,
            handler: async ({ query }) => {
                const service = query.service === undefined ? undefined : checkService(query.service);
                const rows = await ctx.store.read((r) => r.listIntentions(service === undefined ? {} : { service }));
                return { status: 200, body: rows.map((i) => ({ src: i.src, dst: i.dst, createdAt: i.createdAt })) };
            },
        }),
        operatorRoute({
            method: 'GET',
            path: '/v1/pairs',
            operation: 'pair.list',
            auth: 'token',
            query: SERVICE_QUERY,
            handler: async ({ query }) => {
                const service = query.service === undefined ? undefined : checkService(query.service);
                return { status: 200, body: await ctx.store.read((r) => listPairs(r, service)) };
            },
        }),
        operatorRoute({
            method: 'POST',
            path: '/v1/pairs/:a/:b/rotate',
            operation: 'pair.rotate',
            auth: 'token',
            handler: async ({ params, principal }) => {
                const a = params['a'] ?? '';
                const b = params['b'] ?? '';
                const result = await perform(ctx, {
                    actor: operatorActor(principal),
                    action: 'pair.rotate',
                    target: pairTarget(a, b),
                    run: async (tx) => {
                        const { lo, hi, pairId } = pairOf(a, b);
                        const key = await tx.findPairKey(lo, hi);
                        if (key === null)
                            throw cpError('CP_ERR_PAIR_NOT_FOUND', pairId);
                        const r = await rotatePairKey(ctx, tx, key, ctx.clock.now(), ctx.settings.lifecycle.pairGraceMs);
                        const out = { pairId, version: r.version, previousVersion: r.previousVersion, previousNotAfter: r.previousNotAfter };
                        return {
                            result: out,
                            reason: `rotated ${pairId} to v${r.version} on request`,
                            details: { ...out },
                            events: [{ kind: 'services', services: [lo, hi], reason: 'pair.rotate' }],
                        };
                    },
                });
                return { status: 200, body: result };
            },
        }),
    ];
}
//# sourceMappingURL=intentions.js.map