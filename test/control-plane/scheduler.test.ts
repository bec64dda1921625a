import t from 'tap'

import type { AuditInput } from '../../control-plane/src/audit.js'
import type { ChangeEvent } from '../../control-plane/src/events.js'
import { createScheduler } from '../../control-plane/src/scheduler.js'
import { openMaterial } from '../../control-plane/src/services/material.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import { DAY, HOUR, MINUTE, SECOND } from '../kit/fake-clock.js'

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
  scheduler.start()
  scheduler.start()
  t.equal(cp.clock.pendingTimers, 1, 'one timer, however often start() is called')
  cp.clock.advance(SECOND)
  t.equal(cp.clock.pendingTimers, 0, 'not re-armed while the pass runs')
  t.match(await rotated, { kind: 'services', reason: 'pair.rotate' })
  await new Promise((r) => setImmediate(r))
  await scheduler.tick()
  t.equal(cp.clock.pendingTimers, 1, 're-armed after the pass')
  await scheduler.stop()
  t.equal(cp.clock.pendingTimers, 0, 'stop() cancels the timer')
  scheduler.start()
  t.equal(cp.clock.pendingTimers, 0, 'a stopped scheduler stays stopped')
})
