// Usage-aware destruction: KMS calls and tunnel reports fill the per-version usage,
// `key show` reports it, scheduling the destruction of a recently used version is
// refused unless forced with a reason, and a destruction whose version was used
// after it was scheduled is postponed (audit entry and metric). All on the fake clock.
import t from 'tap'

import { recordUsageBatch } from '../../../control-plane/src/agent-endpoint/usage.js'
import type { Actor } from '../../../control-plane/src/context.js'
import { dayOf, pruneKeyUsage, usageOfCalls, usageOfEvents } from '../../../control-plane/src/services/key-usage.js'
import * as keys from '../../../control-plane/src/services/keys.js'
import type { KmsCallRecord } from '../../../control-plane/src/services/kms-audit.js'
import type { AgentRecord } from '../../../control-plane/src/store/records.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { DAY, HOUR } from '../../kit/fake-clock.js'
import { bytes, createKey, kmsAgent } from '../../kit/kms.js'
import { metric, scrape } from '../../kit/metrics.js'

const admin: Actor = { kind: 'operator', id: 'tok_test', name: 'test', role: 'admin' }

const schedule = (h: TestControlPlane, name: string, version: number, extra: Record<string, unknown> = {}) =>
  h.api('POST', `/v1/keys/${name}/versions/${version}/state`, { state: 'scheduled-destruction', windowMs: HOUR, ...extra })

/** A key `k` with v1 (holding a ciphertext) and primary v2, used by service app. */
async function usedKey(t: Parameters<typeof startTestControlPlane>[0]) {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const sealed = await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('row') })
  const ciphertext = sealed.result?.ciphertext as string
  await keys.rotateKey(h.cp.ctx, admin, 'k')
  const decrypt = async (): Promise<string> => {
    const r = await app.request({ op: 'decrypt', ciphertext })
    return r.ok ? 'ok' : (r.error?.code ?? '?')
  }
  return { h, app, decrypt }
}

t.test('key show reports per version the last use, the uses of 30 days and the services', async (t) => {
  const { h, decrypt } = await usedKey(t)
  const usedAt = h.clock.now()
  t.equal(await decrypt(), 'ok')
  h.clock.advance(DAY)
  const shown = await h.api('GET', '/v1/keys/k')
  t.equal(shown.status, 200)
  t.match(shown.body.versions, [
    { version: 1, lastUsedAt: usedAt, uses30d: 2, services: ['app'] },
    { version: 2, lastUsedAt: null, uses30d: 0, services: [] },
  ], 'the encrypt and the decrypt of v1, in the KMS audit group commit')
  h.clock.advance(30 * DAY)
  t.match((await h.api('GET', '/v1/keys/k')).body.versions[0], { uses30d: 0, services: [] }, 'uses older than 30 days leave the sum')
})

t.test('schedule-destroy of a version used yesterday is refused; --force with a reason is audited; after the window it is allowed', async (t) => {
  const { h, decrypt } = await usedKey(t)
  t.equal(await decrypt(), 'ok')
  h.clock.advance(DAY)
  const refused = await schedule(h, 'k', 1)
  t.equal(refused.status, 409)
  t.equal(refused.body.error.code, 'CP_ERR_KEY_IN_USE')
  t.match(refused.body.error.message, /k v1 was last used at 2026-01-01T00:00:00\.000Z by app; .*--force --reason/)
  const denied = await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'key.state', outcome: 'error' })
  t.match(denied.at(-1), { target: 'key:k', reason: /CP_ERR_KEY_IN_USE/ }, 'the refusal is audited')

  t.equal((await schedule(h, 'k', 1, { force: true })).body.error.code, 'CP_ERR_INVALID_FIELD', '--force needs a reason')
  t.equal((await schedule(h, 'k', 1, { reason: 'x' })).body.error.code, 'CP_ERR_KEY_IN_USE', 'a reason alone does not force')
  t.equal((await schedule(h, 'k', 1, { force: true, reason: '   ' })).body.error.code, 'CP_ERR_INVALID_FIELD', 'a blank reason is no reason')
  t.equal((await h.api('POST', '/v1/keys/k/versions/1/state', { state: 'disabled', force: true, reason: 'x' })).body.error.code, 'CP_ERR_INVALID_FIELD')
  const forced = await schedule(h, 'k', 1, { force: true, reason: 'leaked in INC-42' })
  t.equal(forced.status, 200)
  t.match(forced.body, { state: 'scheduled-destruction' })
  const ok = await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'key.state', outcome: 'ok' })
  t.match(ok.at(-1), { reason: /forced: leaked in INC-42/, details: { forced: true, forceReason: 'leaked in INC-42', keyVersion: 1 } })

  await keys.cancelDestruction(h.cp.ctx, admin, 'k', 1)
  h.clock.advance(29 * DAY - 1)
  t.equal((await schedule(h, 'k', 1)).body.error.code, 'CP_ERR_KEY_IN_USE', 'still inside the 30-day window')
  h.clock.advance(1)
  t.equal((await schedule(h, 'k', 1)).status, 200, 'allowed once the last use is 30 days old')
})

t.test('the guard window is a setting', async (t) => {
  const h = await startTestControlPlane(t, { settings: { lifecycle: (await import('../../../control-plane/src/key-lifecycle.js')).lifecyclePolicy({ allowShortWindows: true }), destroyGuardMs: HOUR } })
  await keys.createKey(h.cp.ctx, admin, { name: 'k', type: 'aead' })
  await keys.rotateKey(h.cp.ctx, admin, 'k')
  await h.cp.ctx.store.transaction((tx) => tx.addKeyUsage(usageOfCalls([call('k', 1)], h.clock.now())))
  t.equal((await schedule(h, 'k', 1)).body.error.code, 'CP_ERR_KEY_IN_USE')
  h.clock.advance(HOUR)
  t.equal((await schedule(h, 'k', 1)).status, 200)
})

t.test('a scheduled destruction is postponed when the version is used meanwhile, with an audit entry and a metric', async (t) => {
  const { h, decrypt } = await usedKey(t)
  const { ctx } = h.cp
  h.clock.advance(31 * DAY)
  t.equal((await schedule(h, 'k', 1)).status, 200)
  h.clock.advance(HOUR / 2)
  // The version serves no call now, but a service entitled to it still needs it.
  t.equal(await decrypt(), 'CP_ERR_VERSION_DISABLED')
  const usedAt = h.clock.now()
  h.clock.advance(HOUR / 2)
  t.same(await keys.destroyDueVersions(ctx, h.clock.now()), [], 'not destroyed')
  const v1 = await ctx.store.read((r) => r.getKeyVersion('k', 1))
  t.match(v1, { state: 'scheduled-destruction', destroyAt: h.clock.now() + HOUR, stateChangedAt: h.clock.now() })
  t.not(v1?.sealedMaterial, null)
  const [postponed] = await ctx.audit.query(ctx.store, { action: 'key.destroy-postponed' })
  t.match(postponed, { actor: 'system:scheduler', outcome: 'ok', target: 'key:k', details: { keyVersion: 1, lastUsedAt: usedAt, services: ['app'], destroyAt: h.clock.now() + HOUR } })
  t.equal(metric((await scrape(h.cp.url)).series, 'keymesh_cp_destruction_postponed_total'), 1)

  // Unused since the postponement: destroyed at the new time.
  h.clock.advance(HOUR)
  t.same(await keys.destroyDueVersions(ctx, h.clock.now()), [{ name: 'k', version: 1 }])
  t.match(await ctx.store.read((r) => r.getKeyVersion('k', 1)), { state: 'destroyed', sealedMaterial: null })
})

t.test('tunnel reports count as uses of their pair-key version; agents cannot date a use in the future', async (t) => {
  const h = await startTestControlPlane(t)
  const { ctx } = h.cp
  const now = h.clock.now()
  t.equal((await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const agent = await ctx.store.transaction(async (tx) => {
    const a: AgentRecord = { id: 'agt_1', service: 'web', staticKey: new Uint8Array(32).fill(7), enrolledAt: now, revokedAt: null, lastSeenAt: null, endpoint: null }
    await tx.insertAgent(a)
    return a
  })
  const events = [
    { kind: 'conn.open' as const, at: now - HOUR, pairId: 'api:web', keyVersion: 1 },
    { kind: 'conn.close' as const, at: now + DAY, pairId: 'api:web', keyVersion: 1, bytesIn: 1, bytesOut: 1, durationMs: 5 },
    { kind: 'conn.reject' as const, at: now, pairId: 'api:web', keyVersion: 1, reason: 'AGENT_ERR_FORBIDDEN' },
  ]
  t.equal(await recordUsageBatch(ctx, agent, { type: 'usage.batch', seq: 1, events }), true)
  t.equal(await recordUsageBatch(ctx, agent, { type: 'usage.batch', seq: 1, events }), false, 'a batch sent again is not counted again')
  const shown = await keys.getKey(ctx, 'api:web')
  t.match(shown.versions[0], { lastUsedAt: now, uses30d: 1, services: ['web'] }, 'one open; the close moves the last use, capped at now')
  t.same(usageOfEvents('web', [{ kind: 'drop.seal', at: now }], now), [], 'events without a pair version are not uses')
  t.same(usageOfEvents('web', [{ kind: 'conn.open', at: now, pairId: 'api:db', keyVersion: 1 }], now), [], 'nor a pair the agent\'s service is not in')
})

t.test('old usage buckets are pruned, keeping the retention or the guard window', async (t) => {
  const h = await startTestControlPlane(t)
  const { ctx } = h.cp
  await keys.createKey(ctx, admin, { name: 'k', type: 'aead' })
  const start = h.clock.now()
  await ctx.store.transaction((tx) => tx.addKeyUsage(usageOfCalls([call('k', 1)], start)))
  t.equal(await pruneKeyUsage(ctx.store, start + 35 * DAY, 30 * DAY), 0, 'kept 35 days')
  t.equal(await pruneKeyUsage(ctx.store, start + 36 * DAY, 60 * DAY), 0, 'a longer guard window keeps more')
  t.equal(await pruneKeyUsage(ctx.store, start + 36 * DAY, 30 * DAY), 1)
  t.same(await ctx.store.read((r) => r.listKeyUsage('k', 0)), [])
})

t.test('usageOfCalls counts successful calls once per bucket, both versions of a rewrap, and nothing else', async (t) => {
  const now = Date.UTC(2026, 0, 2, 12)
  const denied = { ...call('k', 1), outcome: 'deny' as const }
  const rows = usageOfCalls([
    call('k', 1), call('k', 1), { ...call('k', 1), toVersion: 2 }, { ...denied, code: 'CP_ERR_FORBIDDEN' }, { ...call('k', 1), keyVersion: null },
    { ...denied, code: 'CP_ERR_VERSION_DISABLED' },
  ], now)
  t.same(rows, [
    { keyName: 'k', version: 1, service: 'app', day: dayOf(now), uses: 4, lastUsedAt: now },
    { keyName: 'k', version: 2, service: 'app', day: dayOf(now), uses: 1, lastUsedAt: now },
  ])
})

function call(key: string, version: number): KmsCallRecord {
  return { actor: 'agent:agt_1', service: 'app', op: 'decrypt', target: `key:${key}`, outcome: 'ok', reason: 'granted', requestId: 1, keyVersion: version, contextHash: '00', code: null }
}
