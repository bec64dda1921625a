// The database restarts while agents are connected. Two replicas run in this
// process (nothing is killed here) on one schema; the machine's PostgreSQL server
// is shared with other tests and is never restarted. Two ways stand in for it:
//   - every session of this installation is ended with pg_terminate_backend
//     (what a restart does to the connections), the server answering again at once;
//   - a TCP proxy between the replicas and the server is cut and later restored:
//     connections die AND new ones are refused for the duration (an outage).
// Either way the replicas must answer CP_ERR_STORE while the database is away,
// keep their agents' sessions, recover by themselves, and leave one audit chain
// with no entry lost or twice (usage batches resent meanwhile are recorded once).
import t, { type Test } from 'tap'
import { join } from 'node:path'

import { createAuditLog } from '../../control-plane/src/index.js'
import type { MessageOf } from '../../protocol/src/index.js'
import { pairId } from '../../protocol/src/index.js'
import { until } from '../kit/wait.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import type { FakeAgent } from '../kit/fake-agent.js'
import { bytes, kmsAgent } from '../kit/kms.js'
import { pgExec, pgProxy } from '../kit/pg.js'
import { installation, terminateSessions, type Installation } from './replicas.js'

const PAIR = pairId('web', 'api')
const isV = (v: number) => (m: MessageOf<'pair.update'>) => m.pair.pairId === PAIR && m.pair.versions.some((x) => x.state === 'current' && x.version === v)

async function replicas(t: Test, i: Installation, storeUrl: string): Promise<[TestControlPlane, TestControlPlane]> {
  const r1 = await startTestControlPlane(t, { storeUrl, masterKeyFile: i.masterKeyFile, dataDir: join(i.base, 'r1') })
  const r2 = await startTestControlPlane(t, { storeUrl, masterKeyFile: i.masterKeyFile, dataDir: join(i.base, 'r2'), clock: r1.clock, adminToken: r1.adminToken })
  return [r1, r2]
}

/** web on r1 and api on r2, allowed web -> api, web granted encrypt on the key 'orders'. */
async function mesh(t: Test, r1: TestControlPlane, r2: TestControlPlane) {
  t.equal((await r1.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  t.equal((await r1.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).status, 201)
  t.equal((await r1.api('POST', '/v1/keys/orders/grants', { service: 'web', rights: ['encrypt'] })).status, 200)
  return { web: await kmsAgent(r1, t, 'web'), api: await kmsAgent(r2, t, 'api') }
}

const usage = (agent: FakeAgent, seq: number) => {
  const acked = agent.next('usage.ack', (m) => m.seq === seq)
  agent.sendUsage(seq, [{ kind: 'conn.open', at: Date.now(), pairId: PAIR, keyVersion: 1 }])
  return acked
}

/** The audit log read through `h`: contiguous seq, a verified chain, and the usage batches recorded per agent. */
async function auditState(h: TestControlPlane) {
  const { store } = h.cp.ctx
  const entries = await store.read((r) => r.listAuditEntries({ limit: 10_000 }))
  const batches = entries
    .filter((e) => e.action === 'agent.usage' && e.outcome === 'ok')
    .map((e) => {
      const d = JSON.parse(e.detailsJson) as { agentId: string; seq: number }
      return `${d.agentId}#${d.seq}`
    })
  return {
    contiguous: entries.every((e, n) => e.seq === n + 1),
    batches: batches.sort(),
    verify: await createAuditLog().verify(store),
  }
}

t.test('every database session ended (as by a restart): the next operations succeed and changes still cross replicas', async (t) => {
  const i = await installation(t)
  if (!i) return
  const [r1, r2] = await replicas(t, i, i.storeUrl)
  const { web, api } = await mesh(t, r1, r2)
  await usage(web, 1)

  const ended = await terminateSessions(i)
  t.ok(ended >= 4, `${ended} sessions ended (each replica's pool and LISTEN connection)`)
  const keys = await r1.api('GET', '/v1/keys')
  t.equal(keys.status, 200, 'the next admin request is served: a dead pooled connection is replaced, not reported')
  await usage(web, 2)
  t.match(await web.request({ op: 'encrypt', key: 'orders', plaintext: bytes('x') }), { ok: true }, 'KMS calls work')

  // The rotation is made on r1; r2's LISTEN connection comes back by itself, and
  // whatever it missed meanwhile reaches its agents by a resync.
  const pushed = api.next('pair.update', isV(2))
  t.equal((await r1.api('POST', '/v1/pairs/api/web/rotate')).status, 200)
  await pushed
  t.pass('the agent on r2 got the rotation made on r1')
  await until(() => r2.logs.some((l) => l.includes('LISTEN connection restored')), 'r2 to log its LISTEN connection back')

  const audit = await auditState(r2)
  t.ok(audit.contiguous, 'audit seq has no gap')
  t.same(audit.batches, [`${web.agentId}#1`, `${web.agentId}#2`], 'each usage batch recorded once')
  t.match(audit.verify, { ok: true }, 'the audit chain verifies')
})

t.test('an outage while agents are connected: CP_ERR_STORE for its duration, recovery by itself, no audit entry lost or twice', async (t) => {
  const i = await installation(t)
  if (!i) return
  const proxy = await pgProxy(t)
  const [r1, r2] = await replicas(t, i, proxy.via(i.storeUrl))
  const { web, api } = await mesh(t, r1, r2)
  await usage(web, 1)
  const before = await auditState(r1)

  await proxy.cut()
  for (const [name, h] of [['r1', r1], ['r2', r2]] as const) {
    const res = await h.api('GET', '/v1/keys')
    t.equal(res.status, 503, `${name}: the admin API answers 503`)
    t.match(res.body, { error: { code: 'CP_ERR_STORE', message: /database unreachable at postgres:\/\/\S*127\.0\.0\.1:\d+\/test\b/ } }, `${name}: with CP_ERR_STORE naming the database`)
    t.equal((await fetch(`${h.cp.url}/readyz`)).status, 503, `${name}: /readyz says not ready`)
  }
  t.match((await r2.api('POST', '/v1/pairs/api/web/rotate')).body, { error: { code: 'CP_ERR_STORE' } }, 'a change is refused, not half-made')
  // A KMS call is refused when its audit line cannot be committed (fail closed).
  const kms = await web.request({ op: 'encrypt', key: 'orders', plaintext: bytes('x') })
  t.match(kms, { ok: false, error: { code: /^CP_ERR_(STORE|AUDIT)$/ } }, `a KMS call is refused: ${JSON.stringify(kms.error)}`)
  web.sendUsage(2, [{ kind: 'conn.close', at: Date.now(), pairId: PAIR, keyVersion: 1 }])
  await until(() => r1.logs.some((l) => l.includes('usage batch not recorded')), 'r1 to refuse usage batch 2')
  t.equal(web.ws.readyState, web.ws.OPEN, "the agents' sessions stay up")
  t.equal(api.ws.readyState, api.ws.OPEN)

  await proxy.restore()
  await until(async () => {
    const [a, b] = await Promise.all([r1.api('GET', '/v1/keys'), r2.api('GET', '/v1/keys')])
    return a.status === 200 && b.status === 200
  }, 'both replicas to serve again', { everyMs: 50 })
  // The writes refused meanwhile flipped readiness (health/write-health.ts): the probe's write clears it.
  r1.clock.advance(r1.cp.ctx.settings.writeProbeIntervalMs)
  await r1.cp.health.writes.idle()
  t.equal((await fetch(`${r1.cp.url}/readyz`)).status, 200, 'ready again, without a restart')
  // The agent resends its unacknowledged batch, and once more as if the ack were lost.
  await usage(web, 2)
  await usage(web, 2)
  t.match(await web.request({ op: 'encrypt', key: 'orders', plaintext: bytes('x') }), { ok: true }, 'KMS calls work again')
  const pushed = api.next('pair.update', isV(2))
  const rotated = await r1.api('POST', '/v1/pairs/api/web/rotate')
  t.match(rotated, { status: 200, body: { version: 2 } }, 'the rotation refused during the outage left no version behind')
  await pushed
  t.pass('a rotation made on r1 reaches the agent on r2 again')

  const after = await auditState(r2)
  t.ok(after.contiguous, 'audit seq has no gap')
  t.same(after.batches, [`${web.agentId}#1`, `${web.agentId}#2`], 'usage batch 2, sent three times, is recorded once')
  t.match(after.verify, { ok: true }, 'the audit chain verifies')
  t.ok(after.verify.count > before.verify.count, 'and grew past the outage')
})

t.test('a database that refuses writes, or loses its schema, is not ready; it is again once a write works', async (t) => {
  const i = await installation(t)
  if (!i) return
  const h = await startTestControlPlane(t, { storeUrl: i.storeUrl, masterKeyFile: i.masterKeyFile, dataDir: join(i.base, 'r1') })
  const readyz = async () => {
    const res = await fetch(`${h.cp.url}/readyz`)
    return { status: res.status, body: (await res.json()) as Record<string, any> }
  }
  const s = i.db.schema
  // Disk full, as the server reports it, on every write that appends to the audit log or the meta table.
  await pgExec(`CREATE FUNCTION ${s}.km_full() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END$$`)
  for (const table of ['meta', 'audit_log']) await pgExec(`CREATE TRIGGER km_full BEFORE INSERT OR UPDATE ON ${s}.${table} FOR EACH ROW EXECUTE FUNCTION ${s}.km_full()`)
  t.equal((await h.api('POST', '/v1/keys', { name: 'refused', type: 'aead' })).status, 503)
  let r = await readyz()
  t.equal(r.status, 503)
  t.match(r.body, { code: 'CP_ERR_STORE_WRITE', reason: /: disk full \(SQLSTATE 53100\)$/, checks: { store: { status: 'ready' }, writes: { status: 'not-ready' } } })
  h.clock.advance(h.cp.ctx.settings.writeProbeIntervalMs)
  await h.cp.health.writes.idle()
  t.equal((await readyz()).status, 503, 'the probe is refused too')
  for (const table of ['meta', 'audit_log']) await pgExec(`DROP TRIGGER km_full ON ${s}.${table}`)
  h.clock.advance(h.cp.ctx.settings.writeProbeIntervalMs)
  await h.cp.health.writes.idle()
  t.equal((await readyz()).status, 200, 'the probe succeeds: ready again')

  // Sessions ended under it are replaced by the pool: no write fails, no alarm.
  t.ok((await terminateSessions(i)) >= 1)
  t.equal((await h.api('POST', '/v1/keys', { name: 'after-restart', type: 'aead' })).status, 201)
  t.equal((await readyz()).status, 200)

  // The schema dropped: reads and writes fail, each check says why.
  await pgExec(`DROP SCHEMA ${s} CASCADE`)
  t.equal((await h.api('POST', '/v1/keys', { name: 'gone', type: 'aead' })).status, 503, 'refused at its first read (the token)')
  r = await readyz()
  t.equal(r.status, 503)
  t.match(r.body, { code: 'CP_ERR_STORE', reason: 'the store failed a read (CP_ERR_STORE)', checks: { store: { status: 'not-ready' } } })
  await t.rejects(h.cp.ctx.store.transaction((tx) => tx.putMeta('gone', new Uint8Array(1))), { code: 'CP_ERR_STORE' })
  r = await readyz()
  t.match(r.body.checks, { writes: { code: 'CP_ERR_STORE_WRITE', reason: /the schema or a table is gone \(SQLSTATE (42P01|3F000)\)/ } }, 'a write says why it failed')
})
