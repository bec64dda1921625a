import t from 'tap'

import type { AuditInput } from '../../control-plane/src/audit.js'
import type { ChangeEvent } from '../../control-plane/src/events.js'
import { createScheduler } from '../../control-plane/src/scheduler.js'
import { openMaterial } from '../../control-plane/src/services/material.js'
import { CLOCK_WATCH_EVERY_MS } from '../../platform/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import { DAY, FakeClock, HOUR, MINUTE, SECOND } from '../kit/fake-clock.js'
import { metric, parseMetrics } from '../kit/metrics.js'
import { until } from '../kit/wait.js'

type Cp = TestControlPlane

const versions = (cp: Cp, keyName: string) => cp.cp.ctx.store.read((r) => r.listKeyVersions({ keyName }))
const states = async (cp: Cp, keyName: string) => (await versions(cp, keyName)).map((v) => `${v.version}:${v.state}`)

function record(cp: Cp): ChangeEvent[] {
  const events: ChangeEvent[] = []
  cp.cp.ctx.bus.subscribe((e) => events.push(e))
  return events
}

t.test('a version past its grace is destroyed: material gone, services told, audited', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  await cp.api('POST', '/v1/pairs/a/b/rotate')
  const events = record(cp)
  cp.clock.advance(HOUR - SECOND)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'a:b'), ['1:decrypt-only', '2:enabled'], 'still usable within the grace')
  t.same(events, [])

  cp.clock.advance(SECOND)
  await cp.cp.scheduler.tick()
  const [v1] = await versions(cp, 'a:b')
  t.match(v1, { state: 'destroyed', sealedMaterial: null })
  t.same(events, [{ kind: 'services', services: ['a', 'b'], reason: 'pair.expire' }])
  const [entry] = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'pair.expire' })
  t.match(entry, { actor: 'system:scheduler', outcome: 'ok', target: 'pair:a:b', details: { pairId: 'a:b', keyVersion: 1 } })

  await cp.cp.scheduler.tick()
  t.equal(events.length, 1, 'nothing left to do on the next pass')
})

t.test('pair keys rotate every 24 h, once per due time even when ticks run together', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const events = record(cp)
  cp.clock.advance(DAY - SECOND)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'api:web'), ['1:enabled'], 'not due before 24 h')

  cp.clock.advance(SECOND)
  const rotatedAt = cp.clock.now()
  await Promise.all([cp.cp.scheduler.tick(), cp.cp.scheduler.tick(), cp.cp.scheduler.tick()])
  t.same(await states(cp, 'api:web'), ['1:decrypt-only', '2:enabled'], 'rotated exactly once')
  t.equal((await versions(cp, 'api:web'))[0]?.notAfter, rotatedAt + HOUR)
  t.same(events, [{ kind: 'services', services: ['api', 'web'], reason: 'pair.rotate' }])
  const rotations = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'pair.rotate', actor: 'system:scheduler' })
  t.equal(rotations.length, 1)
  t.equal((await cp.cp.ctx.store.read((r) => r.getKey('api:web')))?.nextRotationAt, rotatedAt + DAY)

  // A control plane that was down for three days rotates once, not three times.
  cp.clock.advance(3 * DAY)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'api:web'), ['1:destroyed', '2:decrypt-only', '3:enabled'])

  const audit: string[] = []
  for await (const e of cp.cp.ctx.audit.export(cp.cp.ctx.store)) audit.push(JSON.stringify(e))
  const seen = cp.logs.join('') + audit.join('')
  for (const v of await versions(cp, 'api:web')) {
    if (v.sealedMaterial === null) continue
    const m = Buffer.from(openMaterial(cp.cp.ctx, v))
    for (const form of [m.toString('base64'), m.toString('base64url'), m.toString('hex')]) t.notOk(seen.includes(form), `v${v.version} material is in no log or audit entry`)
    m.fill(0)
  }
})

t.test('a failing item is logged and audited, rolls back, and does not stop the pass', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  await cp.api('POST', '/v1/intentions', { src: 'c', dst: 'd' })
  const audit = cp.cp.ctx.audit as { append: (tx: unknown, input: AuditInput) => Promise<unknown> }
  const append = audit.append
  audit.append = (tx, input) => {
    if (input.target === 'pair:a:b' && input.outcome === 'ok') return Promise.reject(new Error('disk full'))
    return append.call(cp.cp.ctx.audit, tx, input)
  }
  t.teardown(() => {
    audit.append = append
  })
  const events = record(cp)
  cp.clock.advance(DAY)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'a:b'), ['1:enabled'], 'the failed rotation left nothing behind')
  t.same(await states(cp, 'c:d'), ['1:decrypt-only', '2:enabled'], 'the next item still ran')
  t.same(events, [{ kind: 'services', services: ['c', 'd'], reason: 'pair.rotate' }], 'no event for the failed one')
  t.ok(cp.logs.some((l) => l.includes('scheduler item failed') && l.includes('a:b')))
  const failed = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { target: 'pair:a:b', outcome: 'error' })
  t.equal(failed.length, 1, 'the failure has its own audit entry')
})

t.test('expired join tokens are removed in one audited operation; an idle pass audits nothing', async (t) => {
  const cp = await startTestControlPlane(t)
  const { ctx } = cp.cp
  const now = ctx.clock.now()
  await ctx.store.transaction(async (tx) => {
    for (const [id, expiresAt] of [['jt1', now + MINUTE], ['jt2', now + HOUR]] as const) {
      await tx.insertJoinToken({ id, tokenHash: ctx.suite.sha256(new TextEncoder().encode(id)), service: 'web', createdAt: now, expiresAt, usedAt: null, usedByAgent: null })
    }
  })
  const head = await ctx.store.read((r) => r.getAuditHead())
  await cp.cp.scheduler.tick()
  t.same(await ctx.store.read((r) => r.getAuditHead()), head, 'nothing due: no audit entry')
  cp.clock.advance(2 * MINUTE)
  await cp.cp.scheduler.tick()
  t.same(await ctx.store.read((r) => r.getAuditHead()), head, 'an expired token is kept a day, to be named as expired')
  cp.clock.advance(DAY)
  await cp.cp.scheduler.tick()
  t.same((await ctx.store.read((r) => r.listJoinTokens())).map((j) => j.id), ['jt2'])
  const [entry] = await ctx.audit.query(ctx.store, { action: 'join-token.expire' })
  t.match(entry, { actor: 'system:scheduler', details: { count: 1 } })
})

t.test('due aead keys are rotated and due destructions carried out (services/keys.ts)', async (t) => {
  const cp = await startTestControlPlane(t)
  const made = await cp.api('POST', '/v1/keys', { name: 'orders', type: 'aead', rotationPeriodMs: HOUR })
  t.equal(made.status, 201)
  cp.clock.advance(HOUR)
  await cp.cp.scheduler.tick()
  t.equal((await cp.cp.ctx.store.read((r) => r.getKey('orders')))?.primaryVersion, 2)
})

t.test('start() ticks on the clock, re-arms after each pass; stop() cancels', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  const scheduler = createScheduler(cp.cp.ctx)
  cp.clock.advance(DAY)
  const rotated = new Promise<ChangeEvent>((resolve) => {
    const off = cp.cp.ctx.bus.subscribe((e) => {
      off()
      resolve(e)
    })
  })
  await new Promise((r) => setImmediate(r))
  const others = cp.clock.pendingTimers // the control plane's own (its clock watch)
  scheduler.start()
  scheduler.start()
  t.equal(cp.clock.pendingTimers, others + 1, 'one timer, however often start() is called')
  cp.clock.advance(SECOND)
  t.equal(cp.clock.pendingTimers, others, 'not re-armed while the pass runs')
  t.match(await rotated, { kind: 'services', reason: 'pair.rotate' })
  await new Promise((r) => setImmediate(r))
  await scheduler.tick()
  t.equal(cp.clock.pendingTimers, others + 1, 're-armed after the pass')
  await scheduler.stop()
  t.equal(cp.clock.pendingTimers, others, 'stop() cancels the timer')
  scheduler.start()
  t.equal(cp.clock.pendingTimers, others, 'a stopped scheduler stays stopped')
})

// Clock jumps (issue 17): what destroys material needs its wall time and its elapsed
// time (control-plane/src/elapsed-ledger.ts).
const destroyIn = (cp: Cp, windowMs: number) => cp.api('POST', '/v1/keys/orders/versions/1/state', { state: 'scheduled-destruction', windowMs })
async function keyWithOldVersion(cp: Cp): Promise<void> {
  await cp.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })
  await cp.api('POST', '/v1/keys/orders/rotate')
}
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const clockJumps = (cp: Cp) => cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'clock.jump' })

t.test('+3 h on the control plane\'s wall clock does not destroy a version before its window is observed, across a restart too', async (t) => {
  const dataDir = t.testdir()
  const first = await startTestControlPlane(t, { dataDir })
  await keyWithOldVersion(first)
  t.equal((await destroyIn(first, HOUR)).status, 200)
  first.clock.advance(10 * MINUTE)
  await first.cp.scheduler.tick()
  first.clock.jump(3 * HOUR)
  await turn() // the clock watch re-arms a turn after each check
  first.clock.advance(CLOCK_WATCH_EVERY_MS)
  await until(async () => (await clockJumps(first)).length === 1, 'the step to be audited')
  t.match((await clockJumps(first))[0], { actor: 'system:clock', target: 'clock', outcome: 'ok', details: { stepMs: 3 * HOUR }, reason: /stepped 3h0m0s forward/ })
  await first.cp.scheduler.tick()
  t.same(await states(first, 'orders'), ['1:scheduled-destruction', '2:enabled'], 'the wall clock is past destroyAt, yet nothing is destroyed')
  t.ok(first.logs.some((l) => /key:orders v1 destruction: its wall time has come but not the elapsed time/.test(l)), 'the hold is logged')
  first.clock.advance(20 * MINUTE)
  await first.cp.scheduler.tick()
  t.same(await states(first, 'orders'), ['1:scheduled-destruction', '2:enabled'], '30 min observed of 60')
  await first.cp.close()

  // Restarted with the clock still 3 h ahead: the 30 minutes observed were kept, the downtime is not counted.
  const second = await startTestControlPlane(t, { dataDir, clock: new FakeClock(first.clock.now() + 5 * MINUTE) })
  await second.cp.scheduler.tick()
  second.clock.advance(29 * MINUTE)
  await second.cp.scheduler.tick()
  t.same(await states(second, 'orders'), ['1:scheduled-destruction', '2:enabled'], '59 min observed over two runs: still held')
  second.clock.advance(MINUTE)
  await second.cp.scheduler.tick()
  t.match((await versions(second, 'orders'))[0], { state: 'destroyed', sealedMaterial: null }, 'destroyed once the hour has been observed')
})

t.test('-3 h on the control plane\'s wall clock delays destruction until the wall clock reaches the time shown again, no longer', async (t) => {
  const cp = await startTestControlPlane(t)
  await keyWithOldVersion(cp)
  const scheduled = await destroyIn(cp, HOUR)
  const destroyAt = scheduled.body.destroyAt as number
  await cp.cp.scheduler.tick()
  cp.clock.jump(-3 * HOUR)
  cp.clock.advance(HOUR)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'orders'), ['1:scheduled-destruction', '2:enabled'], 'the hour has passed, but the wall clock shows 2 h before destroyAt')
  await until(async () => (await clockJumps(cp)).length === 1, 'the step to be audited')
  t.match((await clockJumps(cp))[0], { details: { stepMs: -3 * HOUR } }, 'the step back is audited')
  const series = parseMetrics((await cp.cp.metrics.text()).body)
  t.equal(metric(series, 'keymesh_cp_clock_jumps_total', { direction: 'backward' }), 1, 'and counted')
  t.equal(metric(series, 'keymesh_cp_clock_jumps_total', { direction: 'forward' }), 0)
  cp.clock.advance(3 * HOUR - SECOND)
  await cp.cp.scheduler.tick()
  t.equal((await versions(cp, 'orders'))[0]?.state, 'scheduled-destruction')
  cp.clock.advance(SECOND)
  t.equal(cp.clock.now(), destroyAt)
  await cp.cp.scheduler.tick()
  t.equal((await versions(cp, 'orders'))[0]?.state, 'destroyed', 'destroyed when the wall clock reads destroyAt: 3 h late, not stalled')
})

t.test('+3 h: a destruction held by its elapsed time can still be cancelled', async (t) => {
  const cp = await startTestControlPlane(t)
  await keyWithOldVersion(cp)
  await destroyIn(cp, HOUR)
  await cp.cp.scheduler.tick()
  cp.clock.jump(3 * HOUR)
  await cp.cp.scheduler.tick()
  t.equal((await cp.api('POST', '/v1/keys/orders/versions/1/cancel-destruction')).status, 200, 'not due: the hour has not passed')
  t.same(await states(cp, 'orders'), ['1:enabled', '2:enabled'])
  await destroyIn(cp, HOUR)
  cp.clock.advance(HOUR)
  await cp.cp.scheduler.tick()
  t.equal((await versions(cp, 'orders'))[0]?.state, 'destroyed')
  t.equal((await destroyIn(cp, HOUR)).status, 409, 'destroyed is final')
})

t.test('+3 h: pair versions in their grace and intentions in their removal grace keep their material until the grace is observed', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  await cp.api('POST', '/v1/intentions', { src: 'c', dst: 'd' })
  await cp.api('POST', '/v1/pairs/a/b/rotate')
  t.equal((await cp.api('DELETE', '/v1/intentions/c/d')).status, 200)
  await cp.cp.scheduler.tick()
  cp.clock.jump(3 * HOUR)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'a:b'), ['1:decrypt-only', '2:enabled'], 'v1 of a:b is past notAfter on the wall clock, not destroyed')
  t.same(await states(cp, 'c:d'), ['1:enabled'], 'the removed rule still holds its pair key')
  t.equal((await cp.cp.ctx.store.read((r) => r.listIntentions({ src: 'c' }))).length, 1)
  cp.clock.advance(30 * MINUTE)
  await cp.cp.scheduler.tick()
  t.equal((await cp.api('POST', '/v1/pairs/a/b/rotate')).status, 200, 'a manual rotation meanwhile...')
  t.same(await states(cp, 'a:b'), ['1:decrypt-only', '2:decrypt-only', '3:enabled'], '...leaves v1 to the scheduler too')
  cp.clock.advance(30 * MINUTE)
  await cp.cp.scheduler.tick()
  t.same(await states(cp, 'a:b'), ['1:destroyed', '2:decrypt-only', '3:enabled'], 'v1 destroyed once its hour of grace was observed')
  t.same(await states(cp, 'c:d'), ['1:destroyed'], 'the removal took effect')
  t.equal((await cp.cp.ctx.store.read((r) => r.listIntentions({ src: 'c' }))).length, 0)
  t.equal((await cp.api('DELETE', '/v1/intentions/a/b?now=true')).status, 200)
  t.same(await states(cp, 'a:b'), ['1:destroyed', '2:destroyed', '3:destroyed'], 'an operator\'s cut at once is not held')
})
