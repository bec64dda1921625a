// kill -9 of a replica in the middle of a rotation. Two replicas run in child
// processes on one PostgreSQL schema; the replica that is rotating is stopped
// inside its write transaction (after its last statement, before COMMIT: the
// trap of cp-child.ts) and killed there. The end state must be one new pair-key
// version, never two and never a half-made one, and every agent holding it —
// the agent of the dead replica after failing over to the other. Killed right
// after COMMIT instead, the rotation stands and still reaches the other replica.
import t, { type Test } from 'tap'

import { createAuditLog } from '../../control-plane/src/index.js'
import { openPgStore, type PgStore } from '../../control-plane/src/index.js'
import { DAY } from '../../platform/src/index.js'
import { startTestAgent, untilKeySet, type TestAgent } from '../kit/agent.js'
import { until } from '../kit/wait.js'
import { installation, leaseHolders, startCluster, type ChildReplica, type Installation } from './replicas.js'

const PAIR = 'api:web'
const version = (a: TestAgent): number | undefined => a.agent.keyset.current(PAIR)?.version
/** The agent's live control session is with `r` (status shows the ws:// form of its URL). */
const on = (a: TestAgent, r: ChildReplica): boolean => a.agent.status().controlPlane.url?.startsWith(r.url.replace(/^http/, 'ws') + '/') === true

async function readStore(t: Test, i: Installation): Promise<PgStore> {
  const store = await openPgStore({ url: i.db.url, readOnly: true, poolSize: 1 })
  t.teardown(() => store.close())
  return store
}

/** The pair's versions, its successful rotations in the audit log, and whether the chain verifies. */
async function outcome(t: Test, i: Installation) {
  const store = await readStore(t, i)
  const { versions, rotations, all } = await store.read(async (r) => ({
    versions: (await r.listKeyVersions({ keyName: PAIR })).map((v) => v.version),
    rotations: await r.listAuditEntries({ action: 'pair.rotate', target: `pair:${PAIR}`, outcome: 'ok', limit: 100 }),
    all: await r.listAuditEntries({ limit: 10_000 }),
  }))
  const seqs = all.map((e) => e.seq).sort((a, b) => a - b)
  return {
    versions,
    // A rotation's entry names its version (a pass that found nothing due says so without one).
    rotations: rotations.filter((e) => 'version' in (JSON.parse(e.detailsJson) as object)).map((e) => e.actor),
    contiguous: seqs.every((s, n) => s === n + 1),
    verify: await createAuditLog().verify(store),
  }
}

/** A web agent on `first` and an api agent on `second`, each listing both URLs, both holding v1. */
async function agents(t: Test, c: Awaited<ReturnType<typeof startCluster>>, first: ChildReplica, second: ChildReplica) {
  const web = await startTestAgent(t, c.handle(first), { service: 'web', cpUrls: [first.url, second.url] })
  const api = await startTestAgent(t, c.handle(second), { service: 'api', cpUrls: [second.url, first.url] })
  await untilKeySet(web.agent, () => version(web) === 1, 'web to hold v1')
  await untilKeySet(api.agent, () => version(api) === 1, 'api to hold v1')
  return { web, api }
}

t.test('kill -9 of the replica committing an admin rotation: nothing half-made, one new version after the retry, both agents get it', async (t) => {
  const i = await installation(t)
  if (!i) return
  const c = await startCluster(t, i, ['a', 'b'])
  const [a, b] = c.replicas as [ChildReplica, ChildReplica]
  t.equal((await c.handle(a).api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const { web, api } = await agents(t, c, a, b)

  await a.ask('hold', 'armed')
  const rotating = c.handle(a).api('POST', `/v1/pairs/api/web/rotate`).then(
    (r) => ({ answered: r.status }),
    (e: Error) => ({ failed: e.message }),
  )
  await a.next('holding')
  await a.kill()
  t.match(await rotating, { failed: String }, 'the admin request got no answer: its replica died mid-transaction')

  const during = await outcome(t, i)
  t.same(during.versions, [1], 'the rotation that never committed left nothing: no version 2')
  t.same(during.rotations, [], 'and no audit entry for it')

  // What an operator does after a lost answer: look, then retry on a live replica.
  const retried = await c.handle(b).api('POST', '/v1/pairs/api/web/rotate')
  t.equal(retried.status, 200, 'the retry on b rotates')
  t.equal(retried.body.version, 2)
  await untilKeySet(web.agent, () => version(web) === 2 && on(web, b), 'web to fail over to b and hold v2')
  await untilKeySet(api.agent, () => version(api) === 2, 'api to hold v2')

  const after = await outcome(t, i)
  t.same(after.versions, [1, 2], 'exactly one new version')
  t.equal(after.rotations.length, 1, 'one pair.rotate in the audit log')
  t.ok(after.contiguous, 'audit seq has no gap')
  t.match(after.verify, { ok: true }, 'the audit chain verifies')
})

t.test('kill -9 of the replica right after its rotation committed: the agent on the other replica still receives the new version', async (t) => {
  const i = await installation(t)
  if (!i) return
  const c = await startCluster(t, i, ['a', 'b'])
  const [a, b] = c.replicas as [ChildReplica, ChildReplica]
  t.equal((await c.handle(a).api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const { web, api } = await agents(t, c, a, b)

  // a commits the rotation and dies before it could publish anything after COMMIT:
  // only the notice that left with the commit itself can tell b.
  await a.ask('commit', 'armed')
  const rotating = c.handle(a).api('POST', `/v1/pairs/api/web/rotate`).then(
    (r) => ({ answered: r.status }),
    (e: Error) => ({ failed: e.message }),
  )
  await a.next('committed')
  await a.kill()
  t.match(await rotating, { failed: String }, 'the admin request got no answer')

  await untilKeySet(api.agent, () => version(api) === 2, 'api (on b all along) to hold v2')
  t.ok(on(api, b), 'api never left b')
  await untilKeySet(web.agent, () => version(web) === 2 && on(web, b), 'web to fail over to b and hold v2')

  const after = await outcome(t, i)
  t.same(after.versions, [1, 2], 'the committed rotation stands: exactly one new version')
  t.equal(after.rotations.length, 1, 'one pair.rotate in the audit log')
  t.match(after.verify, { ok: true }, 'the audit chain verifies')
})

t.test('kill -9 of the scheduler lease holder in the middle of a due rotation: the other replica takes the lease and rotates once', async (t) => {
  const i = await installation(t)
  if (!i) return
  const c = await startCluster(t, i, ['a', 'b'], { runScheduler: true, schedulerIntervalMs: 200 })
  const [holderName] = await until(async () => {
    const h = await leaseHolders(i)
    return h.length > 0 ? h : undefined
  }, 'a replica to take the scheduler lease', { everyMs: 50 })
  const holder = c.replicas.find((r) => r.name === holderName) as ChildReplica
  const other = c.replicas.find((r) => r !== holder) as ChildReplica
  t.equal((await c.handle(other).api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const { web, api } = await agents(t, c, holder, other)

  // A day later the pair is due. The holder's pass stops inside the rotation's
  // transaction; the other replica, without the lease, leaves it alone.
  await holder.ask('hold', 'armed')
  await other.ask(`jump ${DAY}`, 'now')
  await holder.ask(`jump ${DAY}`, 'now')
  await holder.next('holding')
  t.same((await outcome(t, i)).versions, [1], 'nothing committed while the holder is stuck')
  await holder.kill()

  await untilKeySet(api.agent, () => version(api) === 2, 'api (on the survivor) to hold v2')
  await untilKeySet(web.agent, () => version(web) === 2 && on(web, other), 'web to fail over and hold v2')
  t.same(await leaseHolders(i), [other.name], 'the survivor holds the lease now')

  const after = await outcome(t, i)
  t.same(after.versions, [1, 2], 'exactly one new version')
  t.same(after.rotations, ['system:scheduler'], 'one scheduled pair.rotate')
  t.ok(after.contiguous, 'audit seq has no gap')
  t.match(after.verify, { ok: true }, 'the audit chain verifies')
})
