// The keys API end to end: every version transition (allowed and refused) through
// HTTP, every role × key operation, and bad input that must leave the store as it was
// and still be audited.
import t from 'tap'

import { newTokenId } from '../../../protocol/src/index.js'
import { hashTokenBytes, newToken } from '../../../control-plane/src/policy.js'
import { destroyDueVersions } from '../../../control-plane/src/services/keys.js'
import type { OperatorRole, VersionState } from '../../../control-plane/src/store/records.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { DAY, SECOND } from '../../kit/fake-clock.js'

async function snapshot(tcp: TestControlPlane): Promise<unknown> {
  return tcp.cp.ctx.store.read(async (r) => ({ keys: await r.listKeys(), versions: await r.listKeyVersions(), grants: await r.listGrants() }))
}

async function lastAudit(tcp: TestControlPlane) {
  const [entry] = await tcp.cp.ctx.audit.tail(tcp.cp.ctx.store, 1)
  return entry
}

async function mintToken(tcp: TestControlPlane, role: OperatorRole): Promise<string> {
  const { ctx } = tcp.cp
  const token = newToken(ctx.suite, 'operator')
  await ctx.store.transaction((tx) =>
    tx.insertOperatorToken({
      id: newTokenId(ctx.suite.randomBytes),
      name: `${role}-test`,
      tokenHash: hashTokenBytes(ctx.suite, token),
      role,
      createdAt: ctx.clock.now(),
      expiresAt: null,
      revokedAt: null,
    }),
  )
  return token
}

t.test('create, show, list, rotate and update a key', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  const created = await api('POST', '/v1/keys', { name: 'orders', type: 'aead', rotationPeriodMs: 30 * DAY })
  t.equal(created.status, 201)
  t.match(created.body, { name: 'orders', type: 'aead', primaryVersion: 1, minDecryptVersion: 1, rotationPeriodMs: 30 * DAY })
  t.equal(created.body.nextRotationAt, tcp.clock.now() + 30 * DAY)
  t.same(Object.keys(created.body.versions[0]).sort(), ['createdAt', 'destroyAt', 'notAfter', 'state', 'stateChangedAt', 'version'])
  t.notOk('pairServices' in created.body, 'no pairServices on an aead key')

  t.equal((await api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).body.error.code, 'CP_ERR_KEY_EXISTS')
  await api('POST', '/v1/keys', { name: 'agree', type: 'x25519' })

  const rotated = await api('POST', '/v1/keys/orders/rotate')
  t.same(rotated.body, { name: 'orders', version: 2, previousVersion: 1 })
  const shown = await api('GET', '/v1/keys/orders')
  t.equal(shown.body.primaryVersion, 2)
  t.same(shown.body.versions.map((v: { version: number; state: string }) => [v.version, v.state]), [[1, 'enabled'], [2, 'enabled']])

  const list = await api('GET', '/v1/keys')
  t.same(list.body.keys.map((k: { name: string }) => k.name), ['agree', 'orders'])
  t.same((await api('GET', '/v1/keys?type=x25519')).body.keys.map((k: { name: string }) => k.name), ['agree'])
  t.same((await api('GET', '/v1/keys?type=pair')).body.keys, [])

  const patched = await api('PATCH', '/v1/keys/orders', { minDecryptVersion: 2, noRotation: true })
  t.equal(patched.status, 200)
  t.match(patched.body, { minDecryptVersion: 2, rotationPeriodMs: null, nextRotationAt: null })
  t.equal((await api('PATCH', '/v1/keys/orders', { rotationPeriodMs: DAY })).body.nextRotationAt, tcp.clock.now() + DAY)
  t.equal((await api('PATCH', '/v1/keys/orders', { minDecryptVersion: 3 })).body.error.code, 'CP_ERR_MIN_VERSION')
  t.equal((await api('PATCH', '/v1/keys/orders', {})).body.error.code, 'CP_ERR_INVALID_FIELD')
  t.equal((await api('PATCH', '/v1/keys/orders', { noRotation: true, rotationPeriodMs: DAY })).status, 400)
  t.equal((await api('PATCH', '/v1/keys/orders', { noRotation: false })).status, 400)
  t.equal((await api('GET', '/v1/keys/missing')).status, 404)
  t.equal((await api('GET', '/v1/keys/missing')).body.error.code, 'CP_ERR_KEY_NOT_FOUND')

  const json = JSON.stringify([created.body, shown.body, list.body])
  t.notMatch(json, /material|sealed/i, 'no view carries material')
  t.equal((await tcp.cp.ctx.audit.verify(tcp.cp.ctx.store)).ok, true)
})

t.test('every version transition through the API, allowed and refused', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  const FROM: VersionState[] = ['enabled', 'decrypt-only', 'disabled', 'scheduled-destruction', 'destroyed']
  const TO = ['enabled', 'decrypt-only', 'disabled', 'scheduled-destruction'] as const
  const ALLOWED: Record<VersionState, readonly string[]> = {
    enabled: ['decrypt-only', 'disabled', 'scheduled-destruction'],
    'decrypt-only': ['enabled', 'disabled', 'scheduled-destruction'],
    disabled: ['enabled', 'decrypt-only', 'scheduled-destruction'],
    'scheduled-destruction': [],
    destroyed: [],
  }
  let n = 0
  // Version 1 of a fresh key, moved to `from` behind a newer primary.
  const prepare = async (from: VersionState): Promise<string> => {
    const name = `k${++n}`
    await api('POST', '/v1/keys', { name, type: 'aead' })
    await api('POST', `/v1/keys/${name}/rotate`)
    if (from === 'scheduled-destruction' || from === 'destroyed') {
      t.equal((await api('POST', `/v1/keys/${name}/versions/1/state`, { state: 'scheduled-destruction', windowMs: SECOND })).status, 200)
      if (from === 'destroyed') {
        tcp.clock.advance(SECOND)
        await destroyDueVersions(tcp.cp.ctx, tcp.clock.now())
      }
    } else if (from !== 'enabled') {
      t.equal((await api('POST', `/v1/keys/${name}/versions/1/state`, { state: from })).status, 200)
    }
    t.equal((await api('GET', `/v1/keys/${name}`)).body.versions[0].state, from, `prepared ${from}`)
    return name
  }
  for (const from of FROM) {
    for (const to of TO) {
      const name = await prepare(from)
      const before = await snapshot(tcp)
      const res = await api('POST', `/v1/keys/${name}/versions/1/state`, { state: to })
      const entry = await lastAudit(tcp)
      if (ALLOWED[from].includes(to)) {
        t.equal(res.status, 200, `${from} → ${to} allowed`)
        t.equal(res.body.state, to)
        t.match(entry, { action: 'key.state', target: `key:${name}`, outcome: 'ok', details: { from, to, keyVersion: 1 } })
      } else {
        t.equal(res.status, 409, `${from} → ${to} refused`)
        t.equal(res.body.error.code, 'CP_ERR_KEY_STATE')
        t.same(await snapshot(tcp), before, 'store unchanged')
        t.match(entry, { action: 'key.state', outcome: 'error', reason: /CP_ERR_KEY_STATE/ })
      }
    }
    // cancel-destruction is allowed only from scheduled-destruction, back to the state before it.
    const name = await prepare(from)
    const res = await api('POST', `/v1/keys/${name}/versions/1/cancel-destruction`)
    if (from === 'scheduled-destruction') {
      t.equal(res.status, 200)
      t.equal(res.body.state, 'enabled', 'back to the state it had')
    } else {
      t.equal(res.status, 409, `cancel from ${from} refused`)
      t.equal(res.body.error.code, 'CP_ERR_KEY_STATE')
    }
  }
  t.equal((await tcp.cp.ctx.audit.verify(tcp.cp.ctx.store)).ok, true)
})

t.test('lifecycle refusals: primary, windows, late cancels, undo of disable, missing versions', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  await api('POST', '/v1/keys', { name: 'k', type: 'aead' })
  const primary = await api('POST', '/v1/keys/k/versions/1/state', { state: 'scheduled-destruction' })
  t.equal(primary.status, 409)
  t.equal(primary.body.error.code, 'CP_ERR_KEY_PRIMARY')
  // The primary may be disabled (an emergency stop), and enabled again (the undo of a disable).
  t.equal((await api('POST', '/v1/keys/k/versions/1/state', { state: 'disabled' })).body.state, 'disabled')
  t.equal((await api('POST', '/v1/keys/k/versions/1/state', { state: 'enabled' })).body.state, 'enabled')
  await api('POST', '/v1/keys/k/rotate')
  const tooLong = await api('POST', '/v1/keys/k/versions/1/state', { state: 'scheduled-destruction', windowMs: 121 * DAY })
  t.equal(tooLong.body.error.code, 'CP_ERR_DESTROY_WINDOW')
  t.equal((await api('POST', '/v1/keys/k/versions/1/state', { state: 'disabled', windowMs: DAY })).body.error.code, 'CP_ERR_INVALID_FIELD')

  const scheduled = await api('POST', '/v1/keys/k/versions/1/state', { state: 'scheduled-destruction' })
  t.equal(scheduled.body.destroyAt, tcp.clock.now() + tcp.cp.ctx.settings.lifecycle.destroyWindowMs, 'default window')
  tcp.clock.advance(tcp.cp.ctx.settings.lifecycle.destroyWindowMs)
  const late = await api('POST', '/v1/keys/k/versions/1/cancel-destruction')
  t.equal(late.status, 409, 'a destruction whose time has come cannot be cancelled')

  t.equal((await api('POST', '/v1/keys/k/versions/9/state', { state: 'disabled' })).body.error.code, 'CP_ERR_KEY_VERSION_NOT_FOUND')
  t.equal((await api('POST', '/v1/keys/k/versions/0/state', { state: 'disabled' })).body.error.code, 'CP_ERR_INVALID_FIELD')
  t.equal((await api('POST', '/v1/keys/k/versions/x/cancel-destruction')).body.error.code, 'CP_ERR_INVALID_FIELD')
  t.equal((await api('POST', '/v1/keys/nope/versions/1/cancel-destruction')).body.error.code, 'CP_ERR_KEY_NOT_FOUND')
})

t.test('grants: add merges, revoke removes, read lists', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  await api('POST', '/v1/keys', { name: 'k', type: 'aead' })
  t.same((await api('POST', '/v1/keys/k/grants', { service: 'billing', rights: ['decrypt'] })).body, { name: 'k', service: 'billing', rights: ['decrypt'] })
  const merged = await api('POST', '/v1/keys/k/grants', { service: 'billing', rights: ['encrypt', 'decrypt', 'generate-data-key'] })
  t.same(merged.body.rights, ['encrypt', 'decrypt', 'generate-data-key'], 'merged, in canonical order')
  await api('POST', '/v1/keys/k/grants', { service: 'audit-svc', rights: ['manage'] })
  t.same((await api('GET', '/v1/keys/k/grants')).body, {
    name: 'k',
    grants: [{ service: 'audit-svc', rights: ['manage'] }, { service: 'billing', rights: ['encrypt', 'decrypt', 'generate-data-key'] }],
  })
  t.same((await api('POST', '/v1/keys/k/grants/revoke', { service: 'billing', rights: ['encrypt'] })).body.rights, ['decrypt', 'generate-data-key'])
  t.same((await api('POST', '/v1/keys/k/grants/revoke', { service: 'audit-svc', rights: ['manage'] })).body.rights, [])
  const none = await api('POST', '/v1/keys/k/grants/revoke', { service: 'audit-svc', rights: ['manage'] })
  t.equal(none.status, 409, 'revoking what is not held changes nothing and says so')
  t.same((await api('GET', '/v1/keys/k/grants')).body.grants.map((g: { service: string }) => g.service), ['billing'])
  t.equal((await api('POST', '/v1/keys/k/grants', { service: 'Bad_Name', rights: ['decrypt'] })).body.error.code, 'CP_ERR_GRANT')
  t.equal((await api('POST', '/v1/keys/k/grants', { service: 'ok', rights: ['fly'] })).status, 400)
  t.equal((await api('POST', '/v1/keys/k/grants', { service: 'ok', rights: [] })).status, 400)
  t.equal((await api('GET', '/v1/keys/none/grants')).status, 404)
  t.match(await lastAudit(tcp), { action: 'key.grant', outcome: 'error' })
})

t.test('public keys: x25519 only, primary by default, ?version=N', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  await api('POST', '/v1/keys', { name: 'agree', type: 'x25519' })
  const v1 = await api('GET', '/v1/keys/agree/public')
  t.match(v1.body, { name: 'agree', version: 1, publicKey: /^x25519:[A-Za-z0-9_-]{43}$/ })
  await api('POST', '/v1/keys/agree/rotate')
  const v2 = await api('GET', '/v1/keys/agree/public')
  t.equal(v2.body.version, 2)
  t.not(v2.body.publicKey, v1.body.publicKey)
  t.same((await api('GET', '/v1/keys/agree/public?version=1')).body, v1.body)
  t.equal((await api('GET', '/v1/keys/agree/public?version=7')).status, 404)
  t.equal((await api('GET', '/v1/keys/agree/public?version=zero')).status, 400)
  await api('POST', '/v1/keys', { name: 'sym', type: 'aead' })
  t.equal((await api('GET', '/v1/keys/sym/public')).body.error.code, 'CP_ERR_KEY_TYPE')
  await api('POST', '/v1/keys/agree/versions/1/state', { state: 'scheduled-destruction', windowMs: SECOND })
  tcp.clock.advance(SECOND)
  await destroyDueVersions(tcp.cp.ctx, tcp.clock.now())
  t.equal((await api('GET', '/v1/keys/agree/public?version=1')).body.error.code, 'CP_ERR_VERSION_DESTROYED')
})

t.test('pair keys are shown but not created, rotated, reconfigured or granted here', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api, cp } = tcp
  const refused = await api('POST', '/v1/keys', { name: 'a-b', type: 'pair' })
  t.equal(refused.body.error.code, 'CP_ERR_KEY_TYPE')
  t.match(refused.body.error.message, /intention allow/)
  // A pair key as the intentions service stores it.
  await cp.ctx.store.transaction(async (tx) => {
    await tx.insertKey({ name: 'api:web', type: 'pair', createdAt: 0, rotationPeriodMs: DAY, nextRotationAt: DAY, primaryVersion: 1, minDecryptVersion: 1, pairServices: ['api', 'web'] })
    await tx.insertKeyVersion({ keyName: 'api:web', version: 1, state: 'enabled', sealedMaterial: new Uint8Array(60), createdAt: 0, stateChangedAt: 0, destroyAt: null, notAfter: null, previousState: null })
  })
  t.same((await api('GET', '/v1/keys/api:web')).body.pairServices, ['api', 'web'])
  t.equal((await api('GET', '/v1/keys/api%3Aweb')).status, 200)
  t.same((await api('GET', '/v1/keys?type=pair')).body.keys.map((k: { name: string }) => k.name), ['api:web'])
  const rot = await api('POST', '/v1/keys/api:web/rotate')
  t.equal(rot.body.error.code, 'CP_ERR_KEY_TYPE')
  t.match(rot.body.error.message, /pair rotate api web/)
  t.equal((await api('PATCH', '/v1/keys/api:web', { minDecryptVersion: 1 })).body.error.code, 'CP_ERR_KEY_TYPE')
  t.equal((await api('POST', '/v1/keys/api:web/grants', { service: 'api', rights: ['encrypt'] })).body.error.code, 'CP_ERR_KEY_TYPE')
  // An emergency disable of a pair version is allowed and reaches both services' agents.
  const events: unknown[] = []
  cp.ctx.bus.subscribe((e) => events.push(e))
  t.equal((await api('POST', '/v1/keys/api:web/versions/1/state', { state: 'disabled' })).status, 200)
  t.match(events, [{ kind: 'services', services: ['api', 'web'] }])
})

t.test('roles × key operations: admin and operator may change, auditor only reads, grants are admin-only; denials are audited', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  const tokens = { admin: tcp.adminToken, operator: await mintToken(tcp, 'operator'), auditor: await mintToken(tcp, 'auditor') }
  let n = 0
  const cases: { op: string; writes: boolean; adminOnly: boolean; call: (token: string) => Promise<{ status: number; body: any }> }[] = []
  const add = (op: string, writes: boolean, call: (name: string, token: string) => Promise<{ status: number; body: any }>): void => {
    cases.push({
      op,
      writes,
      adminOnly: op.startsWith('key.grant'),
      call: async (token) => {
        const name = `r${++n}`
        await api('POST', '/v1/keys', { name, type: 'x25519' })
        await api('POST', `/v1/keys/${name}/rotate`)
        await api('POST', `/v1/keys/${name}/grants`, { service: 'svc', rights: ['decrypt'] })
        await api('POST', `/v1/keys/${name}/versions/1/state`, { state: 'scheduled-destruction', windowMs: DAY })
        return call(name, token)
      },
    })
  }
  add('key.create', true, (name, tok) => api('POST', '/v1/keys', { name: `${name}-new`, type: 'aead' }, tok))
  add('key.list', false, (_name, tok) => api('GET', '/v1/keys', undefined, tok))
  add('key.get', false, (name, tok) => api('GET', `/v1/keys/${name}`, undefined, tok))
  add('key.get (grants)', false, (name, tok) => api('GET', `/v1/keys/${name}/grants`, undefined, tok))
  add('key.public', false, (name, tok) => api('GET', `/v1/keys/${name}/public`, undefined, tok))
  add('key.rotate', true, (name, tok) => api('POST', `/v1/keys/${name}/rotate`, undefined, tok))
  add('key.update', true, (name, tok) => api('PATCH', `/v1/keys/${name}`, { minDecryptVersion: 2 }, tok))
  add('key.state', true, (name, tok) => api('POST', `/v1/keys/${name}/versions/2/state`, { state: 'decrypt-only' }, tok))
  add('key.state (cancel)', true, (name, tok) => api('POST', `/v1/keys/${name}/versions/1/cancel-destruction`, undefined, tok))
  add('key.grant', true, (name, tok) => api('POST', `/v1/keys/${name}/grants`, { service: 'svc', rights: ['encrypt'] }, tok))
  add('key.grant (revoke)', true, (name, tok) => api('POST', `/v1/keys/${name}/grants/revoke`, { service: 'svc', rights: ['decrypt'] }, tok))
  for (const c of cases) {
    for (const role of ['admin', 'operator', 'auditor'] as const) {
      const res = await c.call(tokens[role])
      if (role === 'auditor' && c.writes) {
        t.equal(res.status, 403, `${role} × ${c.op} → 403`)
        t.equal(res.body.error.code, 'CP_ERR_FORBIDDEN')
        t.match(await lastAudit(tcp), { outcome: 'deny', actor: /^operator:tok_/, reason: /auditors are read-only/ })
      } else if (role === 'operator' && c.adminOnly) {
        t.equal(res.status, 403, `${role} × ${c.op} → 403`)
        t.equal(res.body.error.code, 'CP_ERR_FORBIDDEN')
        t.match(await lastAudit(tcp), { outcome: 'deny', actor: /^operator:tok_/, reason: /grants and join tokens are admin-only/ })
      } else {
        t.ok(res.status >= 200 && res.status < 300, `${role} × ${c.op} → ${res.status}`)
      }
    }
  }
})

t.test('bad input leaves the store unchanged and is audited', async (t) => {
  const tcp = await startTestControlPlane(t, { limits: { bodyBytes: 4096 } })
  const { api, cp } = tcp
  await api('POST', '/v1/keys', { name: 'k', type: 'aead' })
  await api('POST', '/v1/keys/k/rotate')
  const bad: [string, string, unknown, string][] = [
    ['POST', '/v1/keys', { name: 'Bad Name', type: 'aead' }, 'CP_ERR_KEY_NAME'],
    ['POST', '/v1/keys', { name: 'a:b', type: 'aead' }, 'CP_ERR_KEY_NAME'],
    ['POST', '/v1/keys', { name: '-dash', type: 'aead' }, 'CP_ERR_KEY_NAME'],
    ['POST', '/v1/keys', { name: 'x'.repeat(64), type: 'aead' }, 'CP_ERR_KEY_NAME'],
    ['POST', '/v1/keys', { name: 'ok', type: 'aead', extra: 1 }, 'CP_ERR_UNKNOWN_FIELD'],
    ['POST', '/v1/keys', { name: 'ok', type: 'rsa' }, 'CP_ERR_INVALID_FIELD'],
    ['POST', '/v1/keys', { name: 42, type: 'aead' }, 'CP_ERR_INVALID_FIELD'],
    ['POST', '/v1/keys', { name: 'ok', type: 'aead', rotationPeriodMs: '30d' }, 'CP_ERR_INVALID_FIELD'],
    ['POST', '/v1/keys', { name: 'ok', type: 'aead', rotationPeriodMs: 0 }, 'CP_ERR_ROTATION_PERIOD'],
    ['POST', '/v1/keys', { name: 'ok', type: 'aead', pad: 'x'.repeat(5000) }, 'CP_ERR_BODY_TOO_LARGE'],
    ['POST', '/v1/keys', [1, 2], 'CP_ERR_INVALID_FIELD'],
    ['PATCH', '/v1/keys/k', { minDecryptVersion: 1.5 }, 'CP_ERR_INVALID_FIELD'],
    ['PATCH', '/v1/keys/k', { rotationPeriodMs: -1 }, 'CP_ERR_ROTATION_PERIOD'],
    ['POST', '/v1/keys/k/versions/1/state', { state: 'destroyed' }, 'CP_ERR_INVALID_FIELD'],
    ['POST', '/v1/keys/k/versions/1/state', { state: 'disabled', why: 'x' }, 'CP_ERR_UNKNOWN_FIELD'],
    ['POST', '/v1/keys/k/rotate', { force: true }, 'CP_ERR_BAD_REQUEST'],
    ['POST', '/v1/keys/k/grants', { service: 'svc', rights: 'decrypt' }, 'CP_ERR_INVALID_FIELD'],
  ]
  for (const [method, path, body, code] of bad) {
    const before = await snapshot(tcp)
    const seqBefore = (await lastAudit(tcp))?.seq ?? 0
    const res = await api(method, path, body)
    t.equal(res.body?.error?.code, code, `${method} ${path} ${JSON.stringify(body).slice(0, 60)} → ${code}`)
    t.ok(res.status >= 400 && res.status < 500)
    t.same(await snapshot(tcp), before, 'store unchanged')
    const entry = await lastAudit(tcp)
    t.equal(entry?.seq, seqBefore + 1, 'one audit entry')
    t.match(entry, { outcome: 'error', reason: new RegExp(code) })
  }
  // Malformed JSON and the wrong media type, sent raw.
  for (const [type, text, code] of [['application/json', '{"name":', 'CP_ERR_BAD_JSON'], ['text/plain', '{}', 'CP_ERR_UNSUPPORTED_MEDIA_TYPE']] as const) {
    const before = await snapshot(tcp)
    const res = await fetch(`${cp.url}/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${tcp.adminToken}`, 'content-type': type }, body: text })
    t.equal(((await res.json()) as { error: { code: string } }).error.code, code)
    t.same(await snapshot(tcp), before)
    t.match(await lastAudit(tcp), { outcome: 'error', action: 'key.create', reason: new RegExp(code) })
  }
  // A name that breaks the rules is not echoed into the audit log.
  const all = (await cp.ctx.audit.query(cp.ctx.store, {})).map((e) => JSON.stringify(e)).join('\n')
  t.notMatch(all, /Bad Name/)
  t.equal((await cp.ctx.audit.verify(cp.ctx.store)).ok, true)
})
