// Intentions as rules: an explicit deny that wins, `*` wildcards, removal through a
// grace, and `?dryRun=true`, which changes nothing on any changing route.
import t from 'tap'

import type { ChangeEvent } from '../../../control-plane/src/events.js'
import { buildKeySet, wipeKeySet } from '../../../control-plane/src/services/keyset.js'
import { MAX_WILDCARD_PAIRS } from '../../../control-plane/src/services/intentions.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { HOUR, MINUTE } from '../../kit/fake-clock.js'

type Cp = TestControlPlane

/** Everything an intention change may touch: rules, keys, versions (material as present or not), join tokens and the audit head. */
async function snapshot(cp: Cp): Promise<string> {
  return cp.cp.ctx.store.read(async (r) =>
    JSON.stringify({
      i: await r.listIntentions(),
      k: await r.listKeys(),
      v: (await r.listKeyVersions()).map((v) => ({ ...v, sealedMaterial: v.sealedMaterial !== null })),
      j: (await r.listJoinTokens()).map((x) => ({ ...x, tokenHash: Buffer.from(x.tokenHash).toString('hex') })),
      a: await r.getAuditHead().then((h) => ({ seq: h.seq, hash: Buffer.from(h.hash).toString('hex') })),
    }),
  )
}

function record(cp: Cp): ChangeEvent[] {
  const events: ChangeEvent[] = []
  cp.cp.ctx.bus.subscribe((e) => events.push(e))
  return events
}

/** What the key set of `service` lets it do, per peer: `i` initiate, `a` accept. */
async function keyset(cp: Cp, service: string): Promise<Record<string, string>> {
  const entries = await cp.cp.ctx.store.read((r) => buildKeySet(cp.cp.ctx, r, service))
  wipeKeySet(entries)
  return Object.fromEntries(entries.map((e) => [e.peerService, `${e.mayInitiate ? 'i' : ''}${e.mayAccept ? 'a' : ''}`]))
}

const livePairs = async (cp: Cp): Promise<string[]> => (await cp.api('GET', '/v1/pairs')).body.map((p: { pairId: string }) => p.pairId)

t.test('a deny is a rule of its own and wins over any allow, wildcards included', async (t) => {
  const cp = await startTestControlPlane(t)
  for (const service of ['api', 'db']) t.equal((await cp.api('POST', '/v1/join-tokens', { service })).status, 201)
  const wide = await cp.api('POST', '/v1/intentions', { src: 'web', dst: '*' })
  t.equal(wide.status, 201)
  t.match(wide.body, { src: 'web', dst: '*', effect: 'allow', pairId: null, impact: { pairs: [{ pairId: 'api:web', change: 'created' }, { pairId: 'db:web', change: 'created' }] } })
  t.same(await livePairs(cp), ['api:web', 'db:web'], 'web * pairs web with every service the control plane knows')

  const events = record(cp)
  const deny = await cp.api('POST', '/v1/intentions/deny', { src: 'web', dst: 'db' })
  t.equal(deny.status, 201)
  t.match(deny.body, { effect: 'deny', created: true, impact: { pairs: [{ pairId: 'db:web', before: { 'web->db': true }, after: null, change: 'destroyed' }], services: ['db', 'web'] } })
  t.same(await livePairs(cp), ['api:web'], 'the denied pair key is destroyed')
  t.same(events, [{ kind: 'services', services: ['db', 'web'], reason: 'intention.deny' }])
  t.same(await keyset(cp, 'web'), { api: 'i' })

  // An allow that a deny covers is kept as a rule but grants nothing.
  await cp.api('POST', '/v1/intentions/deny', { src: '*', dst: 'db' })
  const shadowed = await cp.api('POST', '/v1/intentions', { src: 'api', dst: 'db' })
  t.equal(shadowed.status, 201)
  t.match(shadowed.body, { created: true, pairId: null, deniedBy: 'intention deny * → db denies api → db' })
  t.same(await livePairs(cp), ['api:web'])

  // Allowing over the same deny is refused rather than silently undoing it.
  const over = await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'db' })
  t.equal(over.status, 409)
  t.equal(over.body.error.code, 'CP_ERR_INTENTION_DENIED')

  // Lifting the denies acts at once: the allows they covered apply again.
  t.match((await cp.api('DELETE', '/v1/intentions/*/db')).body, { removed: true, effect: 'deny' })
  t.match((await cp.api('DELETE', '/v1/intentions/web/db')).body, { removed: true, impact: { pairs: [{ pairId: 'db:web', change: 'revived' }] } })
  t.same(await livePairs(cp), ['api:db', 'api:web', 'db:web'])
  t.same(await keyset(cp, 'db'), { api: 'a', web: 'a' })

  const list = (await cp.api('GET', '/v1/intentions?service=db')).body
  t.same(list.map((i: { effect: string; src: string; dst: string }) => `${i.effect} ${i.src} ${i.dst}`), ['allow api db', 'allow web *'], 'a service sees the wildcard rules that concern it')
})

t.test('a new service joins the wildcard rules that match it; the number of wildcard pairs is bounded', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: '*', dst: 'logs' })
  t.same(await livePairs(cp), [], 'no other service is known yet')
  const events = record(cp)
  await cp.api('POST', '/v1/join-tokens', { service: 'web' })
  t.same(await livePairs(cp), ['logs:web'])
  t.same(events, [{ kind: 'services', services: ['logs', 'web'], reason: 'join-token.create' }])
  t.same(await keyset(cp, 'web'), { logs: 'i' })

  const everything = await cp.api('POST', '/v1/intentions', { src: '*', dst: '*' })
  t.equal(everything.body.error.code, 'CP_ERR_POLICY_TOO_BROAD')
  t.equal((await cp.api('POST', '/v1/intentions/deny', { src: '*', dst: '*' })).status, 201, 'denying everything is allowed: a kill switch')
  t.same(await livePairs(cp), [])
  t.equal((await cp.api('DELETE', '/v1/intentions/*/*')).status, 200)

  // Past the bound, a wildcard rule is refused and nothing changes.
  await cp.api('DELETE', '/v1/intentions/*/logs?now=true')
  const { ctx } = cp.cp
  await ctx.store.transaction(async (tx) => {
    for (let i = 0; i <= MAX_WILDCARD_PAIRS; i++) {
      const tokenHash = new Uint8Array(32)
      new DataView(tokenHash.buffer).setUint32(0, i + 1)
      await tx.insertJoinToken({ id: `tok_${String(i).padStart(26, '0')}`, tokenHash, service: `s${i}`, createdAt: 0, expiresAt: ctx.clock.now() + HOUR, usedAt: null, usedByAgent: null })
    }
  })
  const before = await livePairs(cp)
  const broad = await cp.api('POST', '/v1/intentions', { src: 'web', dst: '*' })
  t.equal(broad.body.error.code, 'CP_ERR_POLICY_TOO_BROAD')
  t.same(await livePairs(cp), before)
})

t.test('removing an allow keeps it and its pair key through the grace; the scheduler then destroys the key', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const start = cp.clock.now()
  const removed = await cp.api('DELETE', '/v1/intentions/web/api')
  t.equal(removed.status, 200)
  t.match(removed.body, { removed: false, effect: 'allow', removesAt: start + HOUR, impact: { pairs: [] } })
  t.same(await livePairs(cp), ['api:web'], 'the pair key lives on')
  t.same(await keyset(cp, 'web'), { api: 'i' }, 'agents keep the pair: live tunnels are not cut')
  t.match((await cp.api('GET', '/v1/intentions')).body, [{ src: 'web', dst: 'api', removesAt: start + HOUR }])

  // A second removal never pushes the end out; a shorter grace brings it in.
  await cp.api('DELETE', '/v1/intentions/web/api?graceMs=7200000')
  t.match((await cp.api('GET', '/v1/intentions')).body, [{ removesAt: start + HOUR }])
  await cp.api('DELETE', `/v1/intentions/web/api?graceMs=${30 * MINUTE}`)
  t.match((await cp.api('GET', '/v1/intentions')).body, [{ removesAt: start + 30 * MINUTE }])

  const events = record(cp)
  cp.clock.advance(30 * MINUTE - 1)
  await cp.cp.scheduler.tick()
  t.same(await livePairs(cp), ['api:web'], 'not yet')
  cp.clock.advance(1)
  await cp.cp.scheduler.tick()
  t.same(await livePairs(cp), [], 'grace over: the key is destroyed')
  t.same((await cp.api('GET', '/v1/intentions')).body, [])
  t.same(await keyset(cp, 'web'), {})
  t.same(events, [{ kind: 'services', services: ['api', 'web'], reason: 'intention.expire' }])
  const expiry = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'intention.expire' })
  t.match(expiry, [{ actor: 'system:scheduler', outcome: 'ok', target: 'intention:web->api', reason: /1 pair key\(s\) destroyed/ }])
  const all = (await cp.api('GET', '/v1/pairs?all=true')).body
  t.match(all, [{ pairId: 'api:web', state: 'destroyed', versions: [{ version: 1, state: 'destroyed' }] }], 'listed as destroyed only when asked')
})

t.test('allowing again during the grace cancels the removal; --now removes at once', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  await cp.api('DELETE', '/v1/intentions/web/api')
  const again = await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  t.match(again.body, { created: false, restored: true, pairId: 'api:web', pairVersion: 1 })
  cp.clock.advance(2 * HOUR)
  await cp.cp.scheduler.tick()
  t.same(await livePairs(cp), ['api:web'], 'the cancelled removal does not happen')

  const now = await cp.api('DELETE', '/v1/intentions/web/api?now=true')
  t.match(now.body, { removed: true, removesAt: null, impact: { pairs: [{ pairId: 'api:web', change: 'destroyed' }] } })
  t.same(await livePairs(cp), [])
  t.equal((await cp.api('DELETE', '/v1/intentions/web/api?graceMs=-1')).body.error.code, 'CP_ERR_INVALID_FIELD')
})

t.test('?dryRun=true runs a change, reports it, and keeps nothing: no row, no audit entry, no event', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/join-tokens', { service: 'api' })
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const before = await snapshot(cp)
  const events = record(cp)

  const allow = await cp.api('POST', '/v1/intentions?dryRun=true', { src: 'web', dst: '*' })
  t.equal(allow.status, 200)
  t.match(allow.body, { dryRun: true, result: { created: true }, changes: [{ action: 'intention.allow', target: 'intention:web->*', details: { impact: { pairs: [] } } }] })
  const remove = await cp.api('DELETE', '/v1/intentions/web/api?now=true&dryRun=true')
  t.match(remove.body, {
    dryRun: true,
    changes: [{ action: 'intention.remove', reason: /1 pair key\(s\) destroyed/, details: { impact: { pairs: [{ pairId: 'api:web', change: 'destroyed' }], services: ['api', 'web'], agents: 0 } }, notifications: [{ kind: 'services', services: ['api', 'web'] }] }],
  })
  const deny = await cp.api('POST', '/v1/intentions/deny?dryRun=true', { src: '*', dst: 'api' })
  t.match(deny.body, { changes: [{ action: 'intention.deny', details: { impact: { pairs: [{ pairId: 'api:web', change: 'destroyed' }] } } }] })
  const key = await cp.api('POST', '/v1/keys?dryRun=true', { name: 'orders', type: 'aead' })
  t.match(key.body, { dryRun: true, result: { name: 'orders' }, changes: [{ action: 'key.create', target: 'key:orders' }] })
  t.match((await cp.api('POST', '/v1/join-tokens?dryRun=true', { service: 'db' })).body, { changes: [{ action: 'join-token.create' }] })

  const failed = await cp.api('DELETE', '/v1/intentions/x/y?dryRun=true')
  t.equal(failed.body.error.code, 'CP_ERR_INTENTION_NOT_FOUND', 'a dry run that would fail says why')
  t.equal((await cp.api('POST', '/v1/intentions?dryRun=maybe', { src: 'a', dst: 'b' })).body.error.code, 'CP_ERR_BAD_REQUEST')
  t.equal((await cp.api('GET', '/v1/pairs?dryRun=true')).body.error.code, 'CP_ERR_UNKNOWN_FIELD', 'reads take no dryRun')

  const after = JSON.parse(await snapshot(cp))
  const expected = JSON.parse(before)
  t.same(after.k, expected.k, 'no key was created or destroyed')
  t.same(after.v, expected.v)
  t.same(after.j, expected.j, 'no join token was created')
  t.same(after.i, expected.i, 'the rules are as they were')
  const dryEntries = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'key.create' })
  t.same(dryEntries, [], 'a dry run writes no audit entry')
  t.notOk(events.some((e) => e.kind === 'services' && e.services.includes('db')), 'no agent heard of a dry run')
  t.equal((await cp.cp.ctx.audit.verify(cp.cp.ctx.store)).ok, true)
  t.match((await cp.api('POST', '/v1/intentions?dryRun=false', { src: 'a', dst: 'b' })).body, { created: true }, 'dryRun=false is a real change')
})

t.test('dry runs leave the store and the audit log byte for byte as they were', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const before = await snapshot(cp)
  await cp.api('POST', '/v1/intentions/deny?dryRun=true', { src: 'web', dst: 'api' })
  await cp.api('DELETE', '/v1/intentions/web/api?dryRun=true')
  await cp.api('POST', '/v1/pairs/web/api/rotate?dryRun=true')
  await cp.api('POST', '/v1/keys?dryRun=true', { name: 'k', type: 'aead' })
  t.equal(await snapshot(cp), before)
})
