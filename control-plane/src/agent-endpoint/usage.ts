// Usage batches from agents: each (agent, seq) is recorded exactly once, in one
// transaction with its audit entry; a batch seen before is acknowledged again
// without a second record (agents resend until they see the ack). The audit entry
// summarises the batch — counts, bytes, pairs and key versions, reasons — and
// never carries key material. The same transaction adds the batch's tunnel opens
// and closes to the key-usage buckets of their pair-key versions (services/key-usage.ts),
// and to the agent's count of open tunnels per pair (the console's graph, ui/views.ts).
// A batch that carries a loss report (usage it could not recover from a damaged
// spool, agent/src/usage/spool-salvage.ts) is audited as `usage.loss`, outcome
// error, in the same transaction: what an agent lost is in the audit log exactly
// once, beside what it delivered.
import type { UsageBatchMessage, UsageLoss } from '../../../protocol/src/index.js'
import type { AuditInput } from '../audit.js'
import type { AuditDetails } from '../audit-chain.js'
import { actorName, type Actor, type CpContext } from '../context.js'
import { auditFailure } from '../operation.js'
import { usageOfEvents } from '../services/key-usage.js'
import type { AgentRecord } from '../store/records.js'

/** True when the batch was new and is now recorded; false for a duplicate. */
export async function recordUsageBatch(ctx: CpContext, agent: AgentRecord, batch: UsageBatchMessage): Promise<boolean> {
  const actor: Actor = { kind: 'agent', id: agent.id, service: agent.service }
  const target = `agent:${agent.id}`
  try {
    return await ctx.store.transaction(async (tx) => {
      const now = ctx.clock.now()
      const fresh = await tx.recordUsageBatch({ agentId: agent.id, seq: batch.seq, receivedAt: now })
      if (!fresh) return false
      if (batch.events.length > 0) {
        await tx.addKeyUsage(usageOfEvents(agent.service, batch.events, now))
        await tx.addAgentTunnels(agent.id, tunnelDeltas(agent.service, batch), now)
        const details = summarizeUsage(agent, batch)
        await ctx.audit.append(tx, {
          actor: actorName(actor),
          action: 'agent.usage',
          target,
          outcome: 'ok',
          reason: usageReason(batch.seq, details),
          details,
        })
      }
      if (batch.loss) await ctx.audit.append(tx, lossEntry(actor, target, agent, batch.seq, batch.loss))
      return true
    })
  } catch (err) {
    await auditFailure(ctx, actor, 'agent.usage', target, err)
    throw err
  }
}

/** The batch in one line for `audit tail`: what happened how often, and the bytes carried. */
function usageReason(seq: number, d: AuditDetails): string {
  const kinds = Object.entries(d['kinds'] as Record<string, number>).map(([kind, n]) => `${n} ${kind}`).join(', ')
  const reasons = Object.keys(d['reasons'] as Record<string, number>)
  return `usage batch ${seq}: ${kinds}; ${String(d['bytesIn'])} B in, ${String(d['bytesOut'])} B out${reasons.length > 0 ? `; reasons: ${reasons.join(', ')}` : ''}`
}

/** Per pair of the agent's own service: tunnels opened minus tunnels closed in the batch (the console's open tunnels). */
export function tunnelDeltas(service: string, batch: UsageBatchMessage): Map<string, number> {
  const out = new Map<string, number>()
  for (const e of batch.events) {
    if ((e.kind !== 'conn.open' && e.kind !== 'conn.close') || e.pairId === undefined || !e.pairId.split(':').includes(service)) continue
    out.set(e.pairId, (out.get(e.pairId) ?? 0) + (e.kind === 'conn.open' ? 1 : -1))
  }
  return out
}

export function summarizeUsage(agent: AgentRecord, batch: UsageBatchMessage): AuditDetails {
  const kinds: Record<string, number> = {}
  const reasons: Record<string, number> = {}
  const keyVersions = new Set<string>()
  const peers = new Set<string>()
  let bytesIn = 0
  let bytesOut = 0
  let from = Number.POSITIVE_INFINITY
  let to = 0
  for (const e of batch.events) {
    kinds[e.kind] = (kinds[e.kind] ?? 0) + 1
    if (e.reason !== undefined) reasons[e.reason] = (reasons[e.reason] ?? 0) + 1
    if (e.pairId !== undefined && e.keyVersion !== undefined) keyVersions.add(`${e.pairId}@${e.keyVersion}`)
    if (e.peerAgent !== undefined) peers.add(e.peerAgent)
    else if (e.peerService !== undefined) peers.add(e.peerService)
    bytesIn += e.bytesIn ?? 0
    bytesOut += e.bytesOut ?? 0
    from = Math.min(from, e.at)
    to = Math.max(to, e.at)
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
  }
}

/** The audit entry of a loss report: what the agent could not read back, and the seqs it could still name. */
function lossEntry(actor: Actor, target: string, agent: AgentRecord, seq: number, loss: UsageLoss): AuditInput {
  const named = loss.seqs.length > 0 ? ` (seq ${loss.seqs.join(', ')}${loss.batches > loss.seqs.length ? ', and more' : ''})` : ''
  return {
    actor: actorName(actor),
    action: 'usage.loss',
    target,
    outcome: 'error',
    reason: `the agent's usage spool was damaged: ${loss.batches} unacknowledged batch(es) could not be read${named}; ${loss.lines} line(s), ${loss.bytes} bytes unreadable`,
    details: { agentId: agent.id, service: agent.service, seq, foundAt: loss.at, lines: loss.lines, bytes: loss.bytes, batches: loss.batches, lostSeqs: [...loss.seqs] },
  }
}
