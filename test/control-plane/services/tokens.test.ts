import t from 'tap'

import { hashToken } from '../../../control-plane/src/policy.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { DAY, HOUR } from '../../kit/fake-clock.js'

async function mint(h: TestControlPlane, name: string, role: string, extra: Record<string, unknown> = {}, as?: string) {
  const res = await h.api('POST', '/v1/tokens', { name, role, ...extra }, as)
  if (res.status !== 201) throw new Error(`mint ${name}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body as { id: string; name: string; role: string; token: string; expiresAt: number | null }
}

async function lastEntry(h: TestControlPlane) {
  const [e] = await h.cp.ctx.audit.tail(h.cp.ctx.store, 1)
  return e
}

t.test('an admin creates tokens of each role; the token is shown once and stored only as a hash', async (t) => {
  const h = await startTestControlPlane(t)
  const op = await mint(h, 'ci', 'operator', { ttlMs: 90 * DAY })
  t.match(op, { name: 'ci', role: 'operator', token: /^kmo_[A-Za-z0-9_-]{43}$/, id: /^tok_/ })
  t.equal(op.expiresAt, h.clock.now() + 90 * DAY)
  const aud = await mint(h, 'alice', 'auditor')
  t.equal(aud.expiresAt, null, 'no ttl: the token does not expire')

  const rec = await h.cp.ctx.store.read((r) => r.getOperatorToken(op.id))
  t.equal(Buffer.from(rec!.tokenHash).toString('hex'), hashToken(h.cp.ctx.suite, op.token), 'the store keeps the SHA-256')

  const list = await h.api('GET', '/v1/tokens')
  t.equal(list.status, 200)
  t.same(list.body.tokens.map((x: { name: string }) => x.name).sort(), ['alice', 'bootstrap-admin', 'ci'])
  const text = JSON.stringify(list.body)
  t.notOk(text.includes(op.token) || text.includes(hashToken(h.cp.ctx.suite, op.token)), 'no token and no hash in the listing')
  t.notOk(/tokenHash|token"/.test(text))
  t.match(list.body.tokens.find((x: { id: string }) => x.id === op.id), { role: 'operator', status: 'active', revokedAt: null })

  t.equal((await h.api('GET', '/v1/audit?limit=1', undefined, aud.token)).status, 200, 'the new auditor token authenticates')
  const entry = await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'token.create', target: `token:${op.id}` })
  t.match(entry[0], { outcome: 'ok', details: { tokenId: op.id, role: 'operator', name: 'ci' } })
})

t.test('only an admin manages tokens: operator and auditor get 403, audited as deny', async (t) => {
  const h = await startTestControlPlane(t)
  const op = await mint(h, 'op', 'operator')
  const aud = await mint(h, 'aud', 'auditor')
  const victim = await mint(h, 'victim', 'operator')
  for (const who of [op, aud]) {
    const calls: Array<[string, string, unknown]> = [
      ['POST', '/v1/tokens', { name: 'x', role: 'admin' }],
      ['GET', '/v1/tokens', undefined],
      ['POST', `/v1/tokens/${victim.id}/revoke`, undefined],
    ]
    for (const [method, path, body] of calls) {
      const res = await h.api(method, path, body, who.token)
      t.equal(res.status, 403, `${who.role} ${method} ${path}`)
      t.equal(res.body.error.code, 'CP_ERR_FORBIDDEN')
      t.match(await lastEntry(h), { outcome: 'deny', actor: `operator:${who.id}`, reason: /CP_ERR_FORBIDDEN/ })
    }
  }
  const rec = await h.cp.ctx.store.read((r) => r.getOperatorToken(victim.id))
  t.equal(rec?.revokedAt, null, 'the denied revocation changed nothing')
  t.equal((await h.api('GET', '/v1/tokens')).body.tokens.length, 4, 'the denied creations made nothing')
})

t.test('revoked and expired tokens get 401', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await mint(h, 'short', 'operator', { ttlMs: HOUR })
  const b = await mint(h, 'gone', 'auditor')
  t.equal((await h.api('GET', '/v1/audit?limit=1', undefined, a.token)).status, 200)
  h.clock.advance(HOUR - 1)
  t.equal((await h.api('GET', '/v1/audit?limit=1', undefined, a.token)).status, 200, 'valid until its expiry')
  h.clock.advance(1)
  const expired = await h.api('GET', '/v1/audit?limit=1', undefined, a.token)
  t.equal(expired.status, 401)
  t.equal(expired.body.error.code, 'CP_ERR_UNAUTHENTICATED')
  t.match(await lastEntry(h), { outcome: 'deny', reason: /CP_ERR_UNAUTHENTICATED/ })

  const revoked = await h.api('POST', `/v1/tokens/${b.id}/revoke`)
  t.equal(revoked.status, 200)
  t.match(revoked.body, { id: b.id, status: 'revoked', revokedAt: h.clock.now() })
  t.equal((await h.api('GET', '/v1/audit?limit=1', undefined, b.token)).status, 401, 'a revoked token is refused at once')

  const list = (await h.api('GET', '/v1/tokens')).body.tokens as Array<{ id: string; status: string }>
  t.equal(list.find((x) => x.id === a.id)?.status, 'expired')
  t.notOk(list.some((x) => x.id === b.id), 'revoked tokens are left out by default')
  const all = (await h.api('GET', '/v1/tokens?includeRevoked=true')).body.tokens as Array<{ id: string; status: string }>
  t.equal(all.find((x) => x.id === b.id)?.status, 'revoked')
  t.match(await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'token.revoke' }), [{ outcome: 'ok', target: `token:${b.id}` }])
})

t.test('the last active admin token cannot be revoked, so nobody is locked out', async (t) => {
  const h = await startTestControlPlane(t)
  const boot = (await h.api('GET', '/v1/tokens')).body.tokens[0] as { id: string }
  const self = await h.api('POST', `/v1/tokens/${boot.id}/revoke`)
  t.equal(self.status, 409)
  t.equal(self.body.error.code, 'CP_ERR_LAST_ADMIN')
  t.match(await lastEntry(h), { action: 'token.revoke', outcome: 'error', reason: /CP_ERR_LAST_ADMIN/ })

  // An admin token that has expired does not count as a way back in.
  const stale = await mint(h, 'stale-admin', 'admin', { ttlMs: HOUR })
  h.clock.advance(HOUR)
  t.equal((await h.api('POST', `/v1/tokens/${boot.id}/revoke`)).body.error.code, 'CP_ERR_LAST_ADMIN')
  t.equal((await h.api('GET', '/v1/tokens', undefined, stale.token)).status, 401)

  const second = await mint(h, 'second-admin', 'admin')
  const ok = await h.api('POST', `/v1/tokens/${boot.id}/revoke`)
  t.equal(ok.status, 200, 'with another admin, the bootstrap token can revoke itself')
  t.match(await lastEntry(h), { outcome: 'ok', reason: /revoked own admin token/ })
  t.equal((await h.api('GET', '/v1/tokens')).status, 401, 'and is refused afterwards')
  const again = await h.api('POST', `/v1/tokens/${second.id}/revoke`, undefined, second.token)
  t.equal(again.body.error.code, 'CP_ERR_LAST_ADMIN', 'now the second admin is the last one')
  t.equal((await h.api('GET', '/v1/tokens', undefined, second.token)).status, 200)
})

t.test('bad revocations and bad input are refused with typed errors, audited, and change nothing', async (t) => {
  const h = await startTestControlPlane(t)
  const before = await h.cp.ctx.store.read((r) => r.listOperatorTokens({ includeRevoked: true }))
  const unknown = await h.api('POST', '/v1/tokens/tok_aaaaaaaaaaaaaaaaaaaaaaaaaa/revoke')
  t.equal(unknown.status, 404)
  t.match(await lastEntry(h), { outcome: 'error', reason: /CP_ERR_NOT_FOUND/ })
  const malformed = await h.api('POST', '/v1/tokens/not-an-id/revoke')
  t.equal(malformed.status, 400)
  t.equal(malformed.body.error.code, 'PROTO_ERR_INVALID_ID')

  const bodies: Array<[unknown, string]> = [
    [{ name: 'x', role: 'root' }, 'CP_ERR_INVALID_FIELD'],
    [{ name: 'x', role: 'admin', extra: 1 }, 'CP_ERR_UNKNOWN_FIELD'],
    [{ name: 'x', role: 'admin', ttlMs: 1000 }, 'CP_ERR_INVALID_FIELD'],
    [{ name: 'x', role: 'admin', ttlMs: '1d' }, 'CP_ERR_INVALID_FIELD'],
    [{ name: 'has space', role: 'admin' }, 'CP_ERR_INVALID_FIELD'],
    [{ name: '', role: 'admin' }, 'CP_ERR_INVALID_FIELD'],
    [{ role: 'admin' }, 'CP_ERR_INVALID_FIELD'],
  ]
  for (const [body, code] of bodies) {
    const res = await h.api('POST', '/v1/tokens', body)
    t.equal(res.status, 400, JSON.stringify(body))
    t.equal(res.body.error.code, code)
  }
  t.match(await lastEntry(h), { outcome: 'error', reason: /CP_ERR_INVALID_FIELD/ })

  const gone = await mint(h, 'gone', 'operator')
  t.equal((await h.api('POST', `/v1/tokens/${gone.id}/revoke`)).status, 200)
  const twice = await h.api('POST', `/v1/tokens/${gone.id}/revoke`)
  t.equal(twice.status, 409)
  t.equal(twice.body.error.code, 'CP_ERR_TOKEN_REVOKED')
  const after = await h.cp.ctx.store.read((r) => r.listOperatorTokens({ includeRevoked: true }))
  t.same(after.filter((x) => x.id !== gone.id), before, 'the refused requests changed no token')
  t.match(await h.cp.ctx.audit.verify(h.cp.ctx.store), { ok: true })
})

t.test('a token never appears in the logs or the audit log', async (t) => {
  const h = await startTestControlPlane(t)
  const made = await mint(h, 'secretive', 'operator')
  await h.api('GET', '/v1/audit?limit=5', undefined, made.token)
  await h.api('GET', '/v1/tokens', undefined, made.token) // a 403 with the token in the header
  await h.api('POST', `/v1/tokens/${made.id}/revoke`)
  await h.api('GET', '/v1/tokens', undefined, made.token) // a 401 with the revoked token
  const res = await fetch(`${h.cp.url}/v1/audit/export`, { headers: { authorization: `Bearer ${h.adminToken}` } })
  const exported = await res.text()
  const logs = h.logs.join('')
  for (const secret of [made.token, h.adminToken, made.token.slice(4), Buffer.from(made.token.slice(4), 'base64url').toString('hex')]) {
    t.notOk(logs.includes(secret), 'not in the logs')
    t.notOk(exported.includes(secret), 'not in the audit export')
  }
  t.ok(exported.includes(made.id), 'the export names the token by its id')
})
