// The console's pages' data (ui/views.ts through GET /ui/api/…): overview, graph,
// agents, keys, audit — one control plane with agents, rules of every kind, tunnels
// reported by the agents and keys in several states.
import t from 'tap'

import { HOUR } from '../../../platform/src/index.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { fillConsoleData } from '../../kit/console-data.js'
import { kmsAgent } from '../../kit/kms.js'

const h = await startTestControlPlane(t)
const { api, clock } = h
for (const [src, dst] of [['web', 'api'], ['api', 'db'], ['db', 'cache']]) await api('POST', '/v1/intentions', { src, dst })
await api('POST', '/v1/intentions/deny', { src: 'cache', dst: 'web' })
await api('POST', '/v1/intentions', { src: 'mon', dst: '*' })
await api('DELETE', '/v1/intentions/db/cache?graceMs=3600000')
await api('POST', '/v1/pairs/web/api/rotate')
await api('POST', '/v1/keys', { name: 'orders', type: 'aead', rotationPeriodMs: 30 * 24 * HOUR })
await api('POST', '/v1/keys/orders/rotate')
await api('POST', '/v1/keys/orders/versions/1/state', { state: 'disabled' })
await api('POST', '/v1/keys', { name: 'signer', type: 'ed25519' })

const web = await kmsAgent(h, t, 'web')
const api1 = await kmsAgent(h, t, 'api')
const gone = await kmsAgent(h, t, 'db')
const goneId = (await api('GET', '/v1/agents?service=db')).body[0].id
await api('POST', `/v1/agents/${goneId}/revoke`)
await gone.closed
const now = clock.now()
// web opened three tunnels to api and closed one; api saw one of them so far.
web.sendUsage(1, [
  { kind: 'conn.open', at: now, pairId: 'api:web', keyVersion: 2 },
  { kind: 'conn.open', at: now, pairId: 'api:web', keyVersion: 2 },
  { kind: 'conn.open', at: now, pairId: 'api:web', keyVersion: 2 },
  { kind: 'conn.close', at: now, pairId: 'api:web', keyVersion: 2 },
  { kind: 'conn.open', at: now, pairId: 'db:mon', keyVersion: 1 },
  { kind: 'handshake.fail', at: now, pairId: 'api:web', reason: 'PROTO_ERR_DECRYPT' },
])
await web.next('usage.ack')
api1.sendUsage(1, [{ kind: 'conn.open', at: now, pairId: 'api:web', keyVersion: 2 }, { kind: 'conn.close', at: now, pairId: 'api:db', keyVersion: 1 }])
await api1.next('usage.ack')
await api('GET', '/v1/keys', undefined, `kmo_${'A'.repeat(43)}`)

t.test('the overview counts agents, tunnels, services and keys, and shows the audit chain and recent refusals', async (t) => {
  await api('GET', '/v1/audit/verify')
  const o = (await api('GET', '/ui/api/overview')).body
  t.match(o, {
    store: 'sqlite',
    custody: { sealed: false },
    agents: { enrolled: 2, connected: 2 },
    tunnels: { open: 2 },
    counts: { services: 5, intentions: 5, keys: 2 },
    audit: { lastVerified: { ok: true, reason: /chain intact/ }, checkpoint: { seq: Number } },
  })
  t.equal(o.counts.pairs, 7, 'three named pairs (one in its grace) and four made by mon → *')
  t.match(o.replicas, [{ id: 'local', self: true, live: true, ready: true, sealed: false, agentsConnected: 2, url: h.cp.url }])
  t.equal(o.audit.head.seq, (await api('GET', '/v1/audit?limit=1')).body.entries[0].seq)
  t.match(o.refusals[0], { action: 'key.list', reason: /CP_ERR_UNAUTHENTICATED/ })
})

t.test('the graph has every known service, each named rule as an edge with its pair key and tunnels, and the rules for any service apart', async (t) => {
  const g = (await api('GET', '/ui/api/graph')).body
  t.same(g.nodes.map((n: { name: string }) => n.name), ['api', 'cache', 'db', 'mon', 'web'])
  t.match(g.nodes.find((n: { name: string }) => n.name === 'web'), { agents: 1, connected: 1 })
  t.match(g.nodes.find((n: { name: string }) => n.name === 'db'), { agents: 0, connected: 0 }, 'a revoked agent is not counted')
  const edge = (src: string, dst: string) => g.edges.find((e: { src: string; dst: string }) => e.src === src && e.dst === dst)
  t.match(edge('web', 'api'), {
    effect: 'allow', removesAt: null,
    pair: { pairId: 'api:web', state: 'live', version: 2, versionCreatedAt: h.clock.now(), nextRotationAt: Number, previous: [{ version: 1, notAfter: Number }], tunnels: 2 },
  }, 'the larger side\'s count: web says 2, api 1')
  t.match(edge('db', 'cache'), { effect: 'allow', removesAt: h.clock.now() + HOUR, pair: { pairId: 'cache:db', tunnels: 0 } }, 'a removal in its grace')
  t.match(edge('cache', 'web'), { effect: 'deny', pair: null }, 'a deny has no pair key')
  t.same(g.wildcards, [{ src: 'mon', dst: '*', effect: 'allow', removesAt: null }])
  t.same(g.implied.map((x: { pair: { pairId: string; tunnels: number } }) => [x.pair.pairId, x.pair.tunnels]), [['api:mon', 0], ['cache:mon', 0], ['db:mon', 0], ['mon:web', 0]],
    'pair keys only the wildcard accounts for; web\'s report of db:mon is not counted (not its pair)')
})

t.test('agents come a page at a time, with their key set, tunnels and last usage report', async (t) => {
  const all = (await api('GET', '/ui/api/agents')).body
  t.equal(all.total, 2)
  const w = all.items.find((a: { service: string }) => a.service === 'web')
  t.match(w, { connected: true, tunnels: 2, lastUsageBatch: 1, revokedAt: null, staticKey: /^x25519:/ })
  t.same(w.keySet.map((p: { pairId: string; version: number }) => `${p.pairId}@${p.version}`), ['api:web@2', 'mon:web@1'], 'its pair keys with their current versions')
  const second = (await api('GET', '/ui/api/agents?limit=1&offset=1')).body
  t.match(second, { total: 2, offset: 1 })
  t.equal(second.items.length, 1)
  t.equal((await api('GET', '/ui/api/agents?service=api')).body.items[0].service, 'api')
  t.equal((await api('GET', `/ui/api/agents?q=${w.id.slice(4, 14)}`)).body.total, 1, 'search by id')
  const revoked = (await api('GET', '/ui/api/agents?includeRevoked=true&service=db')).body.items[0]
  t.match(revoked, { id: goneId, connected: false, tunnels: 0, keySet: [], lastUsageBatch: null })
  t.equal((await api('GET', '/ui/api/agents?limit=500')).status, 400, 'a page holds at most 200')
})

t.test('keys come a page at a time, pair keys only when asked for, with states and last use', async (t) => {
  const page = (await api('GET', '/ui/api/keys')).body
  t.same(page.items.map((k: { name: string }) => k.name), ['orders', 'signer'])
  t.match(page.items[0], { primaryVersion: 2, states: { enabled: 1, disabled: 1 }, lastUsedAt: null, rotationPeriodMs: 30 * 24 * HOUR })
  t.same((await api('GET', '/ui/api/keys?q=sig')).body.items.map((k: { name: string }) => k.name), ['signer'])
  t.match((await api('GET', '/ui/api/keys?limit=1&offset=1')).body, { total: 2, offset: 1, items: [{ name: 'signer' }] })
  const pairs = (await api('GET', '/ui/api/keys?type=pair&q=api:web')).body.items
  t.match(pairs, [{ name: 'api:web', type: 'pair', states: { enabled: 1, 'decrypt-only': 1 }, lastUsedAt: h.clock.now() }], 'a pair key\'s last use is a tunnel')
})

t.test('the audit log comes newest first, a page at a time, filtered', async (t) => {
  const first = (await api('GET', '/ui/api/audit?limit=3')).body
  t.equal(first.entries.length, 3)
  t.ok(first.entries[0].seq > first.entries[2].seq, 'newest first')
  t.equal(first.next, first.entries[2].seq)
  const second = (await api('GET', `/ui/api/audit?limit=3&beforeSeq=${first.next}`)).body
  t.equal(second.entries[0].seq, first.next - 1, 'the next page goes on where the first stopped')
  const rotations = (await api('GET', '/ui/api/audit?action=key.rotate&outcome=ok&target=key:orders')).body
  t.equal(rotations.entries.length, 1)
  t.equal(rotations.next, null, 'the start of the log')
  const at = new Date(h.clock.now()).toISOString()
  t.ok((await api('GET', `/ui/api/audit?from=${encodeURIComponent(at)}&to=${h.clock.now() + 1}&actor=system:bootstrap`)).body.entries.length > 0)
  t.match((await api('GET', '/ui/api/audit?from=yesterday')).body, { error: { code: 'CP_ERR_AUDIT_TIME' } })
})

t.test('a filled control plane (the bench\'s generator, small) answers every page, a page at a time', async (t) => {
  const big = await startTestControlPlane(t)
  const { rules } = await fillConsoleData(big, { services: 12, keys: 4, agents: 40, auditEntries: 400 })
  const g = (await big.api('GET', '/ui/api/graph')).body
  t.equal(g.nodes.length, 12)
  t.equal(g.edges.length, rules.length + 1, 'every rule, and the deny')
  const agents = (await big.api('GET', '/ui/api/agents?limit=10')).body
  t.match(agents, { total: 38, offset: 0 }, 'revoked agents left out')
  t.equal(agents.items.length, 10)
  const audit = (await big.api('GET', '/ui/api/audit?limit=50')).body
  t.equal(audit.entries.length, 50)
  t.ok(audit.next > 350)
  const o = (await big.api('GET', '/ui/api/overview')).body
  t.equal(o.refusals.length, 10, 'the ten newest refusals')
  t.ok(o.tunnels.open > 0, `tunnels ${JSON.stringify(o.tunnels)}`)
})
