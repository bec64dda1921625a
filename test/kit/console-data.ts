// A control plane filled the way a large installation looks from the console:
// services in a ring of rules (each allows the next one and the one seven on, some
// denies), application keys with rotated versions, enrolled agents (some revoked,
// some with open tunnels) and a long audit log. The rules and keys go through the
// admin API, as an operator would make them; agents and the audit log are written
// into the store directly (enrolling a thousand agents or making a hundred thousand
// changes one request at a time would take minutes and measure nothing the console
// does). Used by the console's tests (small) and by `npm run bench:ui` (200
// services, 1,000 agents, 100,000 audit entries).
import { newAgentId } from '../../protocol/src/index.js'
import type { TestControlPlane } from './cp.js'
import { seededRandom } from './seeded-random.js'

export interface ConsoleDataSizes {
  readonly services: number
  readonly keys: number
  readonly agents: number
  readonly auditEntries: number
}

export const BENCH_SIZES: ConsoleDataSizes = { services: 200, keys: 100, agents: 1_000, auditEntries: 100_000 }

const ACTIONS = ['key.rotate', 'pair.rotate', 'agent.usage', 'agent.connect', 'intention.allow', 'key.state', 'kms.encrypt', 'kms.decrypt', 'audit.verify', 'token.create']
const AUDIT_BATCH = 5_000
const IN_FLIGHT = 8

export const serviceName = (i: number): string => `svc-${String(i).padStart(3, '0')}`

/** Runs `fn` over `items` with at most IN_FLIGHT at once; throws on the first refusal. */
async function each<T>(items: readonly T[], fn: (item: T) => Promise<{ status: number; body: unknown }>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      const res = await fn(item)
      if (res.status >= 300) throw new Error(`console data: ${JSON.stringify(item)} refused: ${res.status} ${JSON.stringify(res.body)}`)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

/** Fills `h` with `sizes` of everything; returns the rules made (src, dst). */
export async function fillConsoleData(h: Pick<TestControlPlane, 'api' | 'cp'>, sizes: ConsoleDataSizes, seed = 'console'): Promise<{ rules: readonly [string, string][] }> {
  const { ctx } = h.cp
  const random = seededRandom(seed)
  const n = sizes.services
  const rules: [string, string][] = []
  for (let i = 0; i < n; i++) {
    for (const step of [1, 7]) {
      const j = (i + step) % n
      if (j !== i && !rules.some(([a, b]) => a === serviceName(i) && b === serviceName(j))) rules.push([serviceName(i), serviceName(j)])
    }
  }
  await each(rules, ([src, dst]) => h.api('POST', '/v1/intentions', { src, dst }))
  const denies = rules.filter((_, k) => k % 40 === 0).map(([a, b]) => [b, a] as const).filter(([a, b]) => !rules.some(([x, y]) => x === a && y === b))
  await each(denies, ([src, dst]) => h.api('POST', '/v1/intentions/deny', { src, dst }))

  const keys = Array.from({ length: sizes.keys }, (_, i) => `app-key-${String(i).padStart(3, '0')}`)
  await each(keys, (name) => h.api('POST', '/v1/keys', { name, type: 'aead', rotationPeriodMs: 90 * 86_400_000 }))
  await each(keys.filter((_, i) => i % 2 === 0), (name) => h.api('POST', `/v1/keys/${name}/rotate`))

  const now = ctx.clock.now()
  const agents = Array.from({ length: sizes.agents }, (_, i) => ({
    id: newAgentId(random),
    service: serviceName(i % n),
    staticKey: random(32),
    enrolledAt: now - (sizes.agents - i) * 60_000,
    revokedAt: i % 20 === 19 ? now - 3_600_000 : null,
    lastSeenAt: now - (i % 50) * 60_000,
    endpoint: `ws://10.${(i >> 8) & 255}.${i & 255}.1:7401`,
  }))
  await ctx.store.transaction(async (tx) => {
    for (const a of agents) await tx.insertAgent(a)
    for (const [k, a] of agents.entries()) {
      if (k % 3 !== 0 || a.revokedAt !== null) continue
      const i = k % n
      const peer = serviceName((i + 1) % n)
      const pair = a.service < peer ? `${a.service}:${peer}` : `${peer}:${a.service}`
      await tx.addAgentTunnels(a.id, new Map([[pair, 1 + (k % 4)]]), now)
    }
  })

  const agentIds = agents.map((a) => a.id)
  for (let done = 0; done < sizes.auditEntries; done += AUDIT_BATCH) {
    await ctx.store.transaction(async (tx) => {
      for (let k = done; k < Math.min(sizes.auditEntries, done + AUDIT_BATCH); k++) {
        const action = ACTIONS[k % ACTIONS.length] as string
        const outcome = k % 37 === 0 ? 'deny' : k % 53 === 0 ? 'error' : 'ok'
        const target = action.startsWith('key') || action.startsWith('kms') ? `key:${keys[k % Math.max(keys.length, 1)] ?? 'none'}` : action.startsWith('agent') ? `agent:${agentIds[k % Math.max(agentIds.length, 1)] ?? 'none'}` : `pair:${serviceName(k % n)}`
        await ctx.audit.append(tx, {
          actor: k % 3 === 0 ? 'operator:tok_bench' : `agent:${agentIds[k % Math.max(agentIds.length, 1)] ?? 'none'}`,
          action,
          target,
          outcome,
          reason: outcome === 'ok' ? `generated entry ${k}` : `CP_ERR_FORBIDDEN: generated refusal ${k}`,
          details: { generated: k },
        })
      }
    })
  }
  return { rules }
}
