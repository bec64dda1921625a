import { actorName } from '../context.js';
import { auditFailure } from '../operation.js';
/** True when the batch was new and is now recorded; false for a duplicate. */
export async function recordUsageBatch(ctx, agent, batch) {
    const actor = { kind: 'agent', id: agent.id, service: agent.service };
    const target = `agent:${agent.id}`;
    try {
        return await ctx.store.transaction(async (tx) => {
            const fresh = await tx.recordUsageBatch({ agentId: agent.id, seq: batch.seq, receivedAt: ctx.clock.now() });
            if (!fresh)
                return false;
            await ctx.audit.append(tx, {
                actor: actorName(actor),
                action: 'agent.usage',
                target,
                outcome: 'ok',
                reason: `usage batch ${batch.seq} with ${batch.events.length} event(s)`,
                details: summarizeUsage(agent, batch),
            });
            return true;
        });
    }
    catch (err) {
        await auditFailure(ctx, actor, 'agent.usage', target, err);
        throw err;
    }
}
export function summarizeUsage(agent, batch) {
    const kinds = {};
    const reasons = {};
    const keyVersions = new Set();
    const peers = new Set();
    let bytesIn = 0;
    let bytesOut = 0;
    let from = Number.POSITIVE_INFINITY;
    let to = 0;
    for (const e of batch.events) {
        kinds[e.kind] = (kinds[e.kind] ?? 0) + 1;
        if (e.reason !== undefined)
            reasons[e.reason] = (reasons[e.reason] ?? 0) + 1;
        if (e.pairId !== undefined && e.keyVersion !== undefined)
            keyVersions.add(`${e.pairId}@${e.keyVersion}`);
        if (e.peerAgent !== undefined)
            peers.add(e.peerAgent);
        else if (e.peerService !== undefined)
            peers.add(e.peerService);
        bytesIn += e.bytesIn ?? 0;
        bytesOut += e.bytesOut ?? 0;
        from = Math.min(from, e.at);
        to = Math.max(to, e.at);
    }
    return {
        agentId: agent.id,
        service: agent.service,
        seq: batch.seq,
        events: batch.events.length,
        kinds,
        reasons,
        keyVersions: [...keyVersions].sort(),
        peers: [...peers].sort(),
        bytesIn,
        bytesOut,
        from,
        to,
    };
}
//# sourceMappingURL=usage.js.map