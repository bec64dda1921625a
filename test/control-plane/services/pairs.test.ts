import t from 'tap'

import type { ChangeEvent } from '../../../control-plane/src/events.js'
import { hashTokenBytes, newToken } from '../../../control-plane/src/policy.js'
import { openMaterial } from '../../../control-plane/src/services/material.js'
import { rotatePairsOfService } from '../../../control-plane/src/services/pairs.js'
import type { OperatorRole } from '../../../control-plane/src/store/records.js'
import { newTokenId } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { HOUR } from '../../kit/fake-clock.js'

type Cp = TestControlPlane

/** Every byte form of every pair version's material still in the store. */
async function materialForms(cp: Cp): Promise<string[]> {
  const versions = await cp.cp.ctx.store.read((r) => r.listKeyVersions())
  const forms: string[] = []
  for (const v of versions) {
    if (v.sealedMaterial === null) continue
    const m = openMaterial(cp.cp.ctx, v)
    forms.push(Buffer.from(m).toString('base64'), Buffer.from(m).toString('base64url'), Buffer.from(m).toString('hex'))
    m.fill(0)
  }
  return forms
}

async function auditText(cp: Cp): Promise<string> {
  const lines: string[] = []
  for await (const e of cp.cp.ctx.audit.export(cp.cp.ctx.store)) lines.push(JSON.stringify(e))
  return lines.join('\n')
}

async function snapshot(cp: Cp): Promise<string> {
  return cp.cp.ctx.store.read(async (r) =>
    JSON.stringify({ i: await r.listIntentions(), k: await r.listKeys(), v: (await r.listKeyVersions()).map((v) => ({ ...v, sealedMaterial: v.sealedMaterial !== null })) }),
  )
}

async function tokenFor(cp: Cp, role: OperatorRole): Promise<string> {
  const { ctx } = cp.cp
  const token = newToken(ctx.suite, role === 'admin' ? 'admin' : 'operator')
  await ctx.store.transaction((tx) =>
    tx.insertOperatorToken({ id: newTokenId(ctx.suite.randomBytes), name: `t-${role}`, tokenHash: hashTokenBytes(ctx.suite, token), role, createdAt: ctx.clock.now(), expiresAt: null, revokedAt: null }),
  )
  return token
}

function record(cp: Cp): ChangeEvent[] {
  const events: ChangeEvent[] = []
  cp.cp.ctx.bus.subscribe((e) => events.push(e))
  return events
}

t.test('allow creates the intention and pair key v1, sealed, never in a response, log or audit entry', async (t) => {
  const cp = await startTestControlPlane(t)
  const res = await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  t.equal(res.status, 201)
  t.match(res.body, { src: 'web', dst: 'api', created: true, pairId: 'api:web', pairVersion: 1 })
  const key = await cp.cp.ctx.store.read((r) => r.getKey('api:web'))
  t.match(key, { type: 'pair', pairServices: ['api', 'web'], primaryVersion: 1 })
  t.ok(key?.nextRotationAt, 'a pair key rotates on a schedule')
  const pairs = await cp.api('GET', '/v1/pairs')
  t.same(pairs.body, [{ pairId: 'api:web', services: ['api', 'web'], primaryVersion: 1, state: 'live', allows: { 'api->web': false, 'web->api': true }, versions: [{ version: 1, state: 'enabled', notAfter: null }] }])
  const again = await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  t.equal(again.status, 200, 'allowing twice is idempotent')
  t.equal(again.body.created, false)
  const list = await cp.api('GET', '/v1/intentions?service=web')
  t.match(list.body, [{ src: 'web', dst: 'api' }])
  t.same((await cp.api('GET', '/v1/intentions?service=other')).body, [])

  const forms = await materialForms(cp)
  t.equal(forms.length, 3)
  const everything = [JSON.stringify(res.body), JSON.stringify(again.body), JSON.stringify(pairs.body), cp.logs.join(''), await auditText(cp)].join('\n')
  for (const f of forms) t.notOk(everything.includes(f), 'material is nowhere outside the sealed row')
})

t.test('both directions share one pair key; removing one keeps it, removing the last at once destroys it; re-allow gives a fresh version', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  const back = await cp.api('POST', '/v1/intentions', { src: 'b', dst: 'a' })
  t.match(back.body, { created: true, pairVersion: 1 })
  t.equal((await cp.api('GET', '/v1/pairs')).body.length, 1, 'one pair key for both directions')

  const first = await cp.api('DELETE', '/v1/intentions/a/b?now=true')
  t.match(first.body, { removed: true, impact: { pairs: [{ pairId: 'a:b', before: { 'a->b': true, 'b->a': true }, after: { 'a->b': false, 'b->a': true }, change: 'kept' }] } })
  const kept = await cp.cp.ctx.store.read((r) => r.getKeyVersion('a:b', 1))
  t.equal(kept?.state, 'enabled')

  const last = await cp.api('DELETE', '/v1/intentions/b/a?now=true')
  t.match(last.body, { removed: true, impact: { pairs: [{ pairId: 'a:b', after: null, change: 'destroyed' }], services: ['a', 'b'] } })
  const gone = await cp.cp.ctx.store.read((r) => r.getKeyVersion('a:b', 1))
  t.match(gone, { state: 'destroyed', sealedMaterial: null })
  t.equal((await cp.cp.ctx.store.read((r) => r.getKey('a:b')))?.nextRotationAt, null, 'a dead pair key is not rotated')
  t.equal((await cp.api('POST', '/v1/pairs/a/b/rotate')).status, 404, 'a dead pair key cannot be rotated')
  t.equal((await cp.api('DELETE', '/v1/intentions/b/a')).body.error.code, 'CP_ERR_INTENTION_NOT_FOUND')

  const revived = await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  t.match(revived.body, { created: true, pairVersion: 2 })
  const pairs = await cp.api('GET', '/v1/pairs')
  t.equal(pairs.body[0].state, 'live')
  t.same(pairs.body[0].versions, [{ version: 1, state: 'destroyed', notAfter: gone?.notAfter ?? null }, { version: 2, state: 'enabled', notAfter: null }])
})

t.test('manual rotation keeps the previous version decrypt-only until now + grace', async (t) => {
  const cp = await startTestControlPlane(t)
  t.equal((await cp.api('POST', '/v1/pairs/a/b/rotate')).body.error.code, 'CP_ERR_PAIR_NOT_FOUND')
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  const events = record(cp)
  const now = cp.clock.now()
  const res = await cp.api('POST', '/v1/pairs/b/a/rotate')
  t.equal(res.status, 200)
  t.same(res.body, { pairId: 'a:b', version: 2, previousVersion: 1, previousNotAfter: now + HOUR })
  t.same((await cp.api('GET', '/v1/pairs')).body[0].versions, [
    { version: 1, state: 'decrypt-only', notAfter: now + HOUR },
    { version: 2, state: 'enabled', notAfter: null },
  ])
  t.same(events, [{ kind: 'services', services: ['a', 'b'], reason: 'pair.rotate' }])
  const entries = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'pair.rotate' })
  t.match(entries[0], { outcome: 'error', reason: /^CP_ERR_PAIR_NOT_FOUND/ }, 'the refused rotation is audited')
  t.match(entries[1], { target: 'pair:a:b', outcome: 'ok', details: { version: 2, previousVersion: 1 } })
})

t.test('rotatePairsOfService rotates every live pair of a service inside the caller\'s transaction', async (t) => {
  const cp = await startTestControlPlane(t)
  for (const [src, dst] of [['a', 'b'], ['c', 'a'], ['b', 'c'], ['a', 'd']] as const) await cp.api('POST', '/v1/intentions', { src, dst })
  await cp.api('DELETE', '/v1/intentions/a/d?now=true')
  const { ctx } = cp.cp
  const now = ctx.clock.now()
  const rotated = await ctx.store.transaction((tx) => rotatePairsOfService(ctx, tx, 'a', now, { graceMs: 0, reason: 'agent revoked' }))
  t.same(rotated, ['a:b', 'a:c'], 'the dead pair a:d is left alone')
  const v1 = await ctx.store.read((r) => r.getKeyVersion('a:b', 1))
  t.match(v1, { state: 'destroyed', sealedMaterial: null }, 'grace 0: the old version goes at once')
  t.equal((await ctx.store.read((r) => r.getKey('b:c')))?.primaryVersion, 1, 'other pairs are untouched')

  // A second rotation with grace cuts older versions still in their grace to the same end.
  await cp.api('POST', '/v1/pairs/a/c/rotate')
  await ctx.store.transaction((tx) => rotatePairsOfService(ctx, tx, 'c', now, { graceMs: 0, reason: 'agent revoked' }))
  const versions = await ctx.store.read((r) => r.listKeyVersions({ keyName: 'a:c' }))
  t.same(versions.map((v) => v.state), ['destroyed', 'destroyed', 'destroyed', 'enabled'], 'v2 was in its grace and is cut off too')

  await t.rejects(ctx.store.transaction((tx) => rotatePairsOfService(ctx, tx, 'Bad_Name', now, { graceMs: 0, reason: 'x' })), { code: 'CP_ERR_SERVICE_NAME' })
})

t.test('events go out after commit, and not at all when the operation failed', async (t) => {
  const cp = await startTestControlPlane(t)
  const seen: { event: ChangeEvent; committed: boolean }[] = []
  cp.cp.ctx.bus.subscribe((event) => {
    // Read synchronously scheduled: the store must already show the intention.
    void cp.cp.ctx.store.read((r) => r.getIntention('web', 'api')).then((i) => seen.push({ event, committed: i !== null }))
  })
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'web' })
  await cp.api('DELETE', '/v1/intentions/web/nope')
  await cp.api('POST', '/v1/pairs/x/y/rotate')
  await new Promise((r) => setImmediate(r))
  t.same(seen, [{ event: { kind: 'services', services: ['api', 'web'], reason: 'intention.allow' }, committed: true }], 'one event, for the one change')
})

t.test('bad input leaves the store unchanged and is audited', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  const before = await snapshot(cp)
  const cases: [string, string, unknown, string][] = [
    ['POST', '/v1/intentions', { src: 'Bad_Name', dst: 'b' }, 'CP_ERR_SERVICE_NAME'],
    ['POST', '/v1/intentions', { src: '-a', dst: 'b' }, 'CP_ERR_SERVICE_NAME'],
    ['POST', '/v1/intentions', { src: 'a', dst: 'a' }, 'CP_ERR_SAME_SERVICE'],
    ['POST', '/v1/intentions', { src: 'a', dst: 'b', extra: 1 }, 'CP_ERR_UNKNOWN_FIELD'],
    ['POST', '/v1/intentions', { src: 'a' }, 'CP_ERR_INVALID_FIELD'],
    ['POST', '/v1/intentions', { src: 'a', dst: 7 }, 'CP_ERR_INVALID_FIELD'],
    ['DELETE', '/v1/intentions/a/B', undefined, 'CP_ERR_SERVICE_NAME'],
    ['DELETE', '/v1/intentions/a/a', undefined, 'CP_ERR_SAME_SERVICE'],
    ['POST', '/v1/pairs/a/a/rotate', undefined, 'CP_ERR_SAME_SERVICE'],
    ['POST', '/v1/pairs/a/b%20c/rotate', undefined, 'CP_ERR_SERVICE_NAME'],
    ['GET', '/v1/intentions?service=NO', undefined, 'CP_ERR_SERVICE_NAME'],
    ['GET', '/v1/pairs?nope=1', undefined, 'CP_ERR_UNKNOWN_FIELD'],
  ]
  for (const [method, path, body, code] of cases) {
    const res = await cp.api(method, path, body)
    t.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)} → 400`)
    t.equal(res.body.error.code, code)
  }
  t.equal(await snapshot(cp), before, 'nothing changed')
  const failures = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { outcome: 'error' })
  const changes = cases.filter(([method]) => method !== 'GET')
  for (const [, , , code] of changes) t.ok(failures.some((e) => e.reason.startsWith(code)), `${code} is audited`)
  t.ok(failures.length >= changes.length - 3, 'every refused change has an audit entry')
  t.equal((await cp.cp.ctx.audit.verify(cp.cp.ctx.store)).ok, true)
})

t.test('role matrix: auditors list, operators and admins change', async (t) => {
  const cp = await startTestControlPlane(t)
  await cp.api('POST', '/v1/intentions', { src: 'a', dst: 'b' })
  const tokens = { admin: cp.adminToken, operator: await tokenFor(cp, 'operator'), auditor: await tokenFor(cp, 'auditor') }
  const routes: [string, string, unknown, boolean][] = [
    ['GET', '/v1/intentions', undefined, true],
    ['GET', '/v1/pairs', undefined, true],
    ['POST', '/v1/intentions', { src: 'c', dst: 'd' }, false],
    ['POST', '/v1/pairs/a/b/rotate', undefined, false],
    ['DELETE', '/v1/intentions/c/d', undefined, false],
  ]
  for (const role of ['auditor', 'operator', 'admin'] as const) {
    for (const [method, path, body, auditorMay] of routes) {
      const res = await cp.api(method, path, body, tokens[role])
      const allowed = role !== 'auditor' || auditorMay
      t.equal(res.status < 300, allowed, `${role} ${method} ${path} → ${res.status}`)
      if (!allowed) t.equal(res.status, 403)
    }
  }
  const denials = await cp.cp.ctx.audit.query(cp.cp.ctx.store, { outcome: 'deny' })
  t.equal(denials.length, 3, 'each refusal is audited as a denial')
  t.equal((await cp.api('GET', '/v1/pairs', undefined, null)).status, 401)
})
