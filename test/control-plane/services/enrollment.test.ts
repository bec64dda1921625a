// Enrolment over the agent endpoint: join tokens (create, use once, expiry,
// forgery), reconnects by static key, refusals with typed close codes, revocation,
// and the audit entry each decision leaves.
import t from 'tap'

import { CP_ERRORS } from '../../../control-plane/src/errors.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FakeAgent, type FakeAgentOptions } from '../../kit/fake-agent.js'
import { MINUTE } from '../../kit/fake-clock.js'
import { until } from '../../kit/wait.js'

const close = (code: keyof typeof CP_ERRORS): number => CP_ERRORS[code].closeCode

function agent(h: TestControlPlane, o: Partial<FakeAgentOptions> & { service: string }): FakeAgent {
  const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, ...o })
  t.teardown(() => void a.close().catch(() => {}))
  return a
}

async function joinToken(h: TestControlPlane, service: string, ttlMs?: number): Promise<string> {
  const res = await h.api('POST', '/v1/join-tokens', { service, ...(ttlMs !== undefined ? { ttlMs } : {}) })
  if (res.status !== 201) throw new Error(`join token: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.token as string
}

async function audit(h: TestControlPlane, action: string) {
  return h.cp.ctx.store.read((r) => r.listAuditEntries({ action, limit: 100 }))
}

/** Waits for the refusal: the error message (when the channel opened) and the close code. */
async function refused(a: FakeAgent) {
  const [err, closed] = await Promise.all([a.next('error').catch(() => undefined), a.closed])
  return { code: err?.code, closeCode: closed.code, reason: closed.reason }
}

t.test('a join token is created once, shown once and stored as a hash', async (t) => {
  const h = await startTestControlPlane(t)
  const res = await h.api('POST', '/v1/join-tokens', { service: 'orders', ttlMs: 5 * MINUTE })
  t.equal(res.status, 201)
  t.match(res.body, { id: /^tok_[a-z2-7]{26}$/, token: /^kmj_[A-Za-z0-9_-]{43}$/, service: 'orders', expiresAt: h.clock.now() + 5 * MINUTE })
  const stored = await h.cp.ctx.store.read((r) => r.listJoinTokens({}))
  t.equal(stored.length, 1)
  t.notOk(JSON.stringify(stored).includes(res.body.token.slice(4)), 'the token itself is not stored')
  const entries = await audit(h, 'join-token.create')
  t.equal(entries.length, 1)
  t.notOk(entries[0]?.detailsJson.includes(res.body.token.slice(4)), 'the audit entry names the token id, not the token')
  t.notOk(h.logs.join('').includes(res.body.token.slice(4)), 'the token is not logged')

  const dflt = await h.api('POST', '/v1/join-tokens', { service: 'orders' })
  t.equal(dflt.body.expiresAt, h.clock.now() + h.cp.ctx.settings.joinTokenTtlMs, 'default TTL from settings')
})

t.test('join token requests with bad input are refused', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/join-tokens', { service: 'Bad_Name' })).body.error.code, 'CP_ERR_SERVICE_NAME')
  t.equal((await h.api('POST', '/v1/join-tokens', {})).status, 400)
  t.equal((await h.api('POST', '/v1/join-tokens', { service: 'a', ttlMs: h.cp.ctx.settings.joinTokenMaxTtlMs + 1 })).status, 400)
  t.equal((await h.api('POST', '/v1/join-tokens', { service: 'a', extra: 1 })).body.error.code, 'CP_ERR_UNKNOWN_FIELD')
  t.equal((await h.api('POST', '/v1/join-tokens', { service: 'a' }, null)).status, 401)
  t.same(await h.cp.ctx.store.read((r) => r.listJoinTokens({})), [], 'nothing stored')
})

t.test('an agent enrols with a join token and gets welcome and its key set', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders')
  const a = agent(h, { service: 'orders', joinToken: token, endpoint: 'ws://10.0.0.1:7500' })
  const welcome = await a.welcome()
  t.match(welcome, { agentId: /^agt_/, service: 'orders', serverTime: h.clock.now() })
  t.same((await a.keyset()).pairs, [], 'no pairs yet')
  const list = await h.api('GET', '/v1/agents')
  t.equal(list.status, 200)
  t.match(list.body, [{ id: welcome.agentId, service: 'orders', endpoint: 'ws://10.0.0.1:7500', connected: true, revokedAt: null, enrolledAt: h.clock.now() }])
  t.match(list.body[0].staticKey, /^x25519:/)
  const [enroll] = await audit(h, 'agent.enroll')
  t.match(enroll, { outcome: 'ok', target: `agent:${welcome.agentId}` })
  t.match(JSON.parse(enroll?.detailsJson ?? '{}'), { agentId: welcome.agentId, service: 'orders' })
  const tokens = await h.cp.ctx.store.read((r) => r.listJoinTokens({}))
  t.match(tokens, [{ usedByAgent: welcome.agentId }])
  t.equal(h.cp.endpoint.connectedCount(), 1)
  t.same((await h.api('GET', '/v1/agents?service=billing')).body, [], 'service filter')
})

t.test('a used join token is refused for a second agent', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders')
  const first = agent(h, { service: 'orders', joinToken: token })
  await first.welcome()
  const second = agent(h, { service: 'orders', joinToken: token })
  t.same(await refused(second), { code: 'CP_ERR_JOIN_TOKEN', closeCode: close('CP_ERR_JOIN_TOKEN'), reason: 'CP_ERR_JOIN_TOKEN' })
  const denies = (await audit(h, 'agent.enroll')).filter((e) => e.outcome === 'deny')
  t.equal(denies.length, 1, 'the refusal is audited as a deny')
  t.match(denies[0]?.reason, /CP_ERR_JOIN_TOKEN: .*already used/)
  t.equal((await h.cp.ctx.store.read((r) => r.listAgents({}))).length, 1, 'no second agent')
})

t.test('an expired join token is refused', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders', MINUTE)
  const expiresAt = h.clock.now() + MINUTE
  h.clock.advance(2 * MINUTE)
  await h.cp.scheduler.tick()
  const a = agent(h, { service: 'orders', joinToken: token })
  const r = await refused(a)
  t.equal(r.closeCode, close('CP_ERR_JOIN_TOKEN'))
  t.match((await audit(h, 'agent.enroll'))[0], { outcome: 'deny', reason: new RegExp(`expired at ${new Date(expiresAt).toISOString()}`) }, 'expired, and when, even after a cleanup pass')
})

t.test('a forged or malformed join token is refused', async (t) => {
  const h = await startTestControlPlane(t)
  await joinToken(h, 'orders')
  for (const forged of ['kmj_' + 'A'.repeat(43), 'kmj_not-a-real-token-at-all', 'kmo_' + 'B'.repeat(43)]) {
    const a = agent(h, { service: 'orders', joinToken: forged })
    t.same(await refused(a), { code: 'CP_ERR_JOIN_TOKEN', closeCode: close('CP_ERR_JOIN_TOKEN'), reason: 'CP_ERR_JOIN_TOKEN' }, forged.slice(0, 8))
  }
  const denies = await audit(h, 'agent.enroll')
  t.equal(denies.filter((e) => e.outcome === 'deny').length, 3)
  t.notOk(denies.some((e) => e.reason.includes('A'.repeat(43))), 'the presented token is not echoed')
})

t.test('a join token for another service is refused', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders')
  const a = agent(h, { service: 'billing', joinToken: token })
  t.equal((await refused(a)).closeCode, close('CP_ERR_SERVICE_MISMATCH'))
  const b = agent(h, { service: 'orders', joinToken: token })
  await b.welcome()
  t.pass('the token was not consumed by the refused attempt')
})

t.test('an enrolled agent reconnects with its static key alone', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders')
  const first = agent(h, { service: 'orders', joinToken: token })
  const { agentId } = await first.welcome()
  await first.close()
  h.clock.advance(MINUTE)
  const again = agent(h, { service: 'orders', staticKey: first.staticKey, endpoint: 'ws://10.0.0.2:7500' })
  t.equal((await again.welcome()).agentId, agentId)
  const [row] = await h.cp.ctx.store.read((r) => r.listAgents({}))
  t.match(row, { id: agentId, lastSeenAt: h.clock.now(), endpoint: 'ws://10.0.0.2:7500' })
  t.match(await audit(h, 'agent.connect'), [{ outcome: 'ok', actor: `agent:${agentId}` }])

  const withToken = agent(h, { service: 'orders', staticKey: first.staticKey, joinToken: await joinToken(h, 'orders') })
  t.equal((await withToken.welcome()).agentId, agentId, 'a known key with a token is the same agent')
  t.equal((await again.closed).code, close('CP_ERR_AGENT_REPLACED'), 'the newer session replaces the older one')
})

t.test('an unknown key without a token is refused', async (t) => {
  const h = await startTestControlPlane(t)
  const a = agent(h, { service: 'orders' })
  t.same(await refused(a), { code: 'CP_ERR_AGENT_UNKNOWN', closeCode: close('CP_ERR_AGENT_UNKNOWN'), reason: 'CP_ERR_AGENT_UNKNOWN' })
  t.match(await audit(h, 'agent.connect'), [{ outcome: 'deny', actor: /^anonymous/, target: 'service:orders', reason: /CP_ERR_AGENT_UNKNOWN/ }])
})

t.test('a known key naming another service is refused', async (t) => {
  const h = await startTestControlPlane(t)
  const first = agent(h, { service: 'orders', joinToken: await joinToken(h, 'orders') })
  const { agentId } = await first.welcome()
  await first.close()
  const wrong = agent(h, { service: 'billing', staticKey: first.staticKey })
  t.same(await refused(wrong), { code: 'CP_ERR_SERVICE_MISMATCH', closeCode: close('CP_ERR_SERVICE_MISMATCH'), reason: 'CP_ERR_SERVICE_MISMATCH' })
  t.match(await audit(h, 'agent.connect'), [{ outcome: 'deny', actor: `agent:${agentId}`, reason: /belongs to orders/ }])
})

t.test('revoking an agent closes its session at once and refuses its reconnects', async (t) => {
  const h = await startTestControlPlane(t)
  const a = agent(h, { service: 'orders', joinToken: await joinToken(h, 'orders') })
  const { agentId } = await a.welcome()
  await a.keyset()
  const res = await h.api('POST', `/v1/agents/${agentId}/revoke`)
  t.equal(res.status, 200)
  t.match(res.body, { id: agentId, service: 'orders', revokedAt: h.clock.now(), rotatedPairs: [] })
  t.same(await refused(a), { code: 'CP_ERR_AGENT_REVOKED', closeCode: close('CP_ERR_AGENT_REVOKED'), reason: 'CP_ERR_AGENT_REVOKED' })
  t.equal(h.cp.endpoint.connectedCount(), 0)

  const again = agent(h, { service: 'orders', staticKey: a.staticKey, joinToken: await joinToken(h, 'orders') })
  t.equal((await refused(again)).closeCode, close('CP_ERR_AGENT_REVOKED'), 'a fresh token does not revive a revoked key')
  t.same((await h.api('GET', '/v1/agents')).body, [], 'revoked agents are hidden by default')
  t.match((await h.api('GET', '/v1/agents?includeRevoked=true')).body, [{ id: agentId, revokedAt: h.clock.now(), connected: false }])
  t.equal((await h.api('POST', `/v1/agents/${agentId}/revoke`)).status, 409, 'a second revoke conflicts')
  t.equal((await h.api('POST', '/v1/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/revoke')).status, 404)
  t.equal((await h.api('POST', '/v1/agents/nope/revoke')).status, 400)
  t.match(await audit(h, 'agent.revoke'), [{ outcome: 'ok' }, { outcome: 'error' }, { outcome: 'error' }])
  t.match((await audit(h, 'agent.connect')).at(-1), { outcome: 'deny', reason: /CP_ERR_AGENT_REVOKED/ })
})

t.test('an auditor may list agents but not create join tokens or revoke', async (t) => {
  const h = await startTestControlPlane(t)
  const made = await h.api('POST', '/v1/tokens', { name: 'aud', role: 'auditor' })
  t.equal(made.status, 201)
  const tok = made.body.token as string
  t.equal((await h.api('GET', '/v1/agents', undefined, tok)).status, 200)
  t.equal((await h.api('POST', '/v1/join-tokens', { service: 'a' }, tok)).status, 403)
  t.equal((await h.api('POST', '/v1/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/revoke', undefined, tok)).status, 403)
})

t.test('join tokens are listed without the token, and a revoked one enrols nothing', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders')
  const list = await h.api('GET', '/v1/join-tokens')
  t.equal(list.status, 200)
  t.match(list.body, [{ id: /^tok_/, service: 'orders', expiresAt: h.clock.now() + 60 * MINUTE, usedAt: null, revokedAt: null }])
  t.notOk(JSON.stringify(list.body).includes(token), 'the token is never listed')
  t.notOk('tokenHash' in list.body[0], 'nor its hash')
  const id = list.body[0].id as string
  const revoked = await h.api('POST', `/v1/join-tokens/${id}/revoke`)
  t.match(revoked.body, { id, service: 'orders', revokedAt: h.clock.now() })
  t.notOk('tokenHash' in revoked.body)
  const late = agent(h, { service: 'orders', joinToken: token })
  t.same(await refused(late), { code: 'CP_ERR_JOIN_TOKEN', closeCode: close('CP_ERR_JOIN_TOKEN'), reason: 'CP_ERR_JOIN_TOKEN' })
  t.match((await audit(h, 'agent.enroll'))[0], { outcome: 'deny', reason: /revoked/ })
  t.match(await audit(h, 'join-token.revoke'), [{ outcome: 'ok', target: `join-token:${id}`, actor: /^operator:/ }])
  t.equal((await h.api('GET', '/v1/join-tokens?service=billing')).body.length, 0)
  t.equal((await h.api('POST', '/v1/join-tokens/tok_nope/revoke')).body.error.code, 'CP_ERR_INVALID_FIELD')

  const used = await joinToken(h, 'orders')
  const first = agent(h, { service: 'orders', joinToken: used })
  await first.welcome()
  const usedId = (await h.api('GET', '/v1/join-tokens')).body.find((x: { usedAt: number | null }) => x.usedAt !== null).id as string
  t.equal((await h.api('POST', `/v1/join-tokens/${usedId}/revoke`)).body.error.code, 'CP_ERR_CONFLICT', 'a used token is the agent\'s to revoke')
})

t.test('last seen: now while connected, the disconnect time after, one write per session', async (t) => {
  const h = await startTestControlPlane(t)
  const a = agent(h, { service: 'orders', joinToken: await joinToken(h, 'orders') })
  const { agentId } = await a.welcome()
  const enrolledAt = h.clock.now()
  h.clock.advance(1000) // well inside the idle timeout: the session stays
  const live = await h.api('GET', '/v1/agents')
  t.match(live.body, [{ id: agentId, connected: true, enrolledAt, lastSeenAt: h.clock.now() }], 'a live session is seen now, not at enrolment')
  const stored = async () => (await h.cp.ctx.store.read((r) => r.getAgent(agentId)))?.lastSeenAt
  t.equal(await stored(), enrolledAt, 'no write while the session merely lives')
  await a.close()
  const goneAt = h.clock.now()
  await until(async () => (await stored()) === goneAt, 'the disconnect to be recorded')
  h.clock.advance(1000)
  const after = await h.api('GET', '/v1/agents')
  t.match(after.body, [{ id: agentId, connected: false, lastSeenAt: goneAt }])
})
