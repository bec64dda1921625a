import { perform } from './operation.js';
import { expireIfDue, rotateIfDue } from './services/pairs.js';
import { VERSION_STATES } from './store/records.js';
import { destroyDueVersions, rotateDueKeys } from './services/keys.js';
const ACTOR = { kind: 'system', task: 'scheduler' };
const LIVE_STATES = VERSION_STATES.filter((s) => s !== 'destroyed');
export function createScheduler(ctx, options = {}) {
    const { lease } = options;
    let timer;
    let running;
    let queued;
    let started = false;
    let stopped = false;
    const tick = () => {
        if (running === undefined) {
            running = guardedPass(ctx, lease).finally(() => {
                running = undefined;
            });
            return running;
        }
        // Coalesce: however many ticks arrive during a pass, one more pass follows it.
        queued ??= running.then(() => {
            queued = undefined;
            return tick();
        });
        return queued;
    };
    const arm = () => {
        if (stopped)
            return;
        timer = ctx.clock.setTimer(ctx.settings.schedulerIntervalMs, () => {
            timer = undefined;
            tick()
                .catch((err) => ctx.logger.error({ err }, 'scheduler pass failed'))
                .finally(arm);
        });
    };
    return {
        start() {
            if (started || stopped)
                return;
            started = true;
            arm();
        },
        tick,
        async stop() {
            stopped = true;
            timer?.();
            timer = undefined;
            await (queued ?? running);
        },
    };
}
async function guardedPass(ctx, lease) {
    if (lease && !(await lease.tryAcquire()))
        return;
    await runPass(ctx);
}
/** One pass over everything that is due at the pass's start time. */
async function runPass(ctx) {
    const now = ctx.clock.now();
    await step(ctx, 'pair rotation', () => rotateDuePairs(ctx, now));
    await step(ctx, 'pair expiry', () => expireDuePairVersions(ctx, now));
    await step(ctx, 'key rotation', () => rotateDueKeys(ctx, now));
    await step(ctx, 'key destruction', () => destroyDueVersions(ctx, now));
    await step(ctx, 'join-token cleanup', () => deleteExpiredJoinTokens(ctx, now));
}
/** `fn` returns how many changes it made, or the list of them (services/keys.ts does). */
async function step(ctx, what, fn) {
    try {
        const done = await fn();
        const n = typeof done === 'number' ? done : done.length;
        if (n > 0)
            ctx.logger.info({ task: what, count: n }, 'scheduler step done');
    }
    catch (err) {
        ctx.logger.error({ err, task: what }, 'scheduler step failed');
    }
}
/** Runs `fn` on each item; a failure is logged (perform already audited it) and the rest go on. */
async function each(ctx, items, what, fn) {
    let done = 0;
    for (const item of items) {
        try {
            if (await fn(item))
                done++;
        }
        catch (err) {
            ctx.logger.error({ err, item: what(item) }, 'scheduler item failed');
        }
    }
    return done;
}
export async function rotateDuePairs(ctx, now) {
    const due = await ctx.store.read((r) => r.listKeys({ type: 'pair', rotationDueBy: now }));
    return each(ctx, due, (k) => k.name, async (key) => {
        const r = await perform(ctx, {
            actor: ACTOR,
            action: 'pair.rotate',
            target: `pair:${key.name}`,
            run: async (tx) => {
                const rotated = await rotateIfDue(ctx, tx, key.name, now);
                if (rotated === null)
                    return { result: null, reason: 'not due any more; nothing changed' };
                const { pairId, version, previousVersion, previousNotAfter } = rotated;
                return {
                    result: rotated,
                    reason: `scheduled rotation of ${pairId} to v${version}`,
                    details: { pairId, version, previousVersion, previousNotAfter },
                    events: [{ kind: 'services', services: rotated.services, reason: 'pair.rotate' }],
                };
            },
        });
        return r !== null;
    });
}
export async function expireDuePairVersions(ctx, now) {
    // Destroyed versions keep their notAfter; leaving them out keeps each pass's read
    // proportional to what is due, not to the history of every rotation.
    const live = await ctx.store.read((r) => r.listKeyVersions({ notAfterBy: now, states: LIVE_STATES }));
    return each(ctx, live, (v) => `${v.keyName} v${v.version}`, async (v) => {
        const r = await perform(ctx, {
            actor: ACTOR,
            action: 'pair.expire',
            target: `pair:${v.keyName}`,
            run: async (tx) => {
                const gone = await expireIfDue(tx, v.keyName, v.version, now);
                if (gone === null)
                    return { result: null, reason: 'already destroyed or not due; nothing changed' };
                return {
                    result: gone,
                    reason: `grace of ${gone.pairId} v${gone.version} ended; material destroyed`,
                    details: { pairId: gone.pairId, keyVersion: gone.version },
                    events: [{ kind: 'services', services: gone.services, reason: 'pair.expire' }],
                };
            },
        });
        return r !== null;
    });
}
export async function deleteExpiredJoinTokens(ctx, now) {
    // Looked at first so that an idle control plane does not audit an empty cleanup every second.
    const tokens = await ctx.store.read((r) => r.listJoinTokens());
    if (!tokens.some((t) => t.expiresAt < now))
        return 0;
    return perform(ctx, {
        actor: ACTOR,
        action: 'join-token.expire',
        target: 'join-tokens',
        run: async (tx) => {
            const count = await tx.deleteJoinTokensExpiredBefore(now);
            return { result: count, reason: `removed ${count} expired join token(s)`, details: { count } };
        },
    });
}
//# sourceMappingURL=scheduler.js.map