// Two replicas on one PostgreSQL store (skipped without a server; failed under CI):
// each console shows both replicas, the agents connected to either, and a change
// made on the other within a poll.
import t from 'tap'
import { join } from 'node:path'

import { SECOND } from '../../../platform/src/index.js'
import { ReplicaBoard } from '../../../control-plane/src/ui/replicas.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { kmsAgent } from '../../kit/kms.js'
import { pgSchema } from '../../kit/pg.js'
import { until } from '../../kit/wait.js'
import { consoleClient } from './client.js'

t.test('each replica\'s console shows the other, its agents, and its changes', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const dir = t.testdir()
  const a = await startTestControlPlane(t, { dataDir: join(dir, 'a'), storeUrl: db.url })
  const b = await startTestControlPlane(t, { dataDir: join(dir, 'b'), storeUrl: db.url, masterKeyFile: a.masterKeyFile(), adminToken: a.adminToken })
  const overview = async () => (await a.api('GET', '/ui/api/overview')).body
  const first = await until(async () => ((await overview()).replicas.length === 2 ? overview() : null), 'both replicas listed', { everyMs: 50 })
  t.match(first.replicas, [{ self: true, live: true, ready: true, url: a.cp.url }, { self: false, live: true, ready: true, url: b.cp.url, agentsConnected: 0 }])

  // An agent on b: a's console sees it connected once b has said so (its next beat).
  await kmsAgent(b, t, 'web')
  b.clock.advance(5 * SECOND)
  const seen = await until(async () => {
    const o = await overview()
    return o.agents.connected === 1 ? o : null
  }, 'a sees b\'s agent', { everyMs: 50 })
  t.match(seen.replicas[1], { agentsConnected: 1 })
  t.match((await a.api('GET', '/ui/api/agents')).body.items, [{ service: 'web', connected: true }])

  // A change on b reaches an event stream on a at a's next poll.
  const session = await consoleClient(a.cp.url).signIn({ token: a.adminToken })
  const res = await fetch(`${a.cp.url}/ui/api/events`, { headers: { cookie: session.cookie } })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let text = ''
  const read = async (re: RegExp): Promise<void> => {
    while (!re.test(text)) text += new TextDecoder().decode((await reader.read()).value)
  }
  await read(/retry: 2000/)
  await b.api('POST', '/v1/keys', { name: 'made-on-b', type: 'aead' })
  a.clock.advance(500)
  await read(/key:made-on-b/)
  t.pass('the change made on b is on a\'s stream')
  await reader.cancel()

  a.clock.advance(25 * SECOND)
  t.match((await overview()).replicas[1], { live: false, ready: false, reason: /^silent for \d+ s$/, agentsConnected: 0 }, 'a replica not heard from for three beats is shown silent')
})

t.test('a replica whose status cannot be written says so once per outage, and a row it cannot read is shown so', async (t) => {
  const h = await startTestControlPlane(t)
  const logs: string[] = []
  let down = true
  const store = { ...h.cp.ctx.store, transaction: (fn: Parameters<typeof h.cp.ctx.store.transaction>[0]) => (down ? Promise.reject(new Error('store away')) : h.cp.ctx.store.transaction(fn)) }
  const logger = { warn: (_o: unknown, m: string) => logs.push(m) }
  const ctx = { ...h.cp.ctx, store: store as typeof h.cp.ctx.store, logger: logger as unknown as typeof h.cp.ctx.logger }
  const board = new ReplicaBoard(ctx, { id: 'r-test', url: () => 'https://r-test:7400', readiness: async () => ({ ready: true }), sealed: () => false, connectedAgents: () => ['agt_x'] })
  t.teardown(() => board.close())
  await board.beat()
  await board.beat()
  t.same(logs, ['console: could not write this replica\'s status; trying again every beat'], 'logged once')
  down = false
  await board.beat()
  const rows = await h.cp.ctx.store.read((r) => r.listConsoleReplicas())
  t.match(rows, [{ id: 'r-test', url: 'https://r-test:7400', statusJson: /"agents":\["agt_x"\]/ }])
  await h.cp.ctx.store.transaction((tx) => tx.putConsoleReplica({ id: 'r-odd', url: 'https://odd', startedAt: 0, seenAt: h.clock.now(), statusJson: 'not json' }))
  const listed = await board.list(await h.cp.ctx.store.read((r) => r.listConsoleReplicas()))
  t.match(listed.replicas.find((r) => r.id === 'r-odd'), { live: true, ready: false, reason: 'unreadable status', agentsConnected: 0 })
  t.same([...listed.connected], ['agt_x'])
})
