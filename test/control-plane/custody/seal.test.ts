// Share custody end to end: `control-plane init --shares 5 --threshold 3` (initCustody),
// a control plane that starts sealed, stays sealed with 2 shares, unseals with 3, seals
// again, rekeys; and what a sealed control plane answers meanwhile.
import t, { type Test } from 'tap'
import { request } from 'node:http'

import { initCustody } from '../../../control-plane/src/index.js'
import { CLOCK_WATCH_EVERY_MS } from '../../../platform/src/index.js'
import { HOUR } from '../../kit/fake-clock.js'
import { captureLogger } from '../../kit/logs.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { ADMIN_TOKEN_FILE } from '../../../control-plane/src/index.js'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

// t.testdir() empties the test's directory each time it is called: once per test.
const base = new WeakMap<Test, string>()

async function sharesInstallation(t: Test, shares = 5, threshold = 3, name = 'cp'): Promise<{ dir: string; shares: string[] }> {
  if (!base.has(t)) base.set(t, t.testdir())
  const dir = join(base.get(t) as string, name)
  const made = await initCustody({ dataDir: dir, shares, threshold, logger: captureLogger().logger })
  t.equal(made.kind, 'shares')
  t.equal(made.shares?.length, shares)
  return { dir, shares: made.shares as string[] }
}

/** A sealed control plane has written no admin token yet: tests of the sealed state use none. */
async function startSealed(t: Test, dir: string): Promise<TestControlPlane> {
  return startTestControlPlane(t, { dataDir: dir, adminToken: 'kmo_none' })
}

const unseal = (h: TestControlPlane, share: string) => h.api('POST', '/v1/sys/unseal', { share }, null)

/** The status line of an agent-endpoint upgrade. */
function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/agent`, { headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } })
    req.on('response', (res) => (res.resume(), resolve(res.statusCode ?? 0)))
    req.on('upgrade', (res, socket) => (socket.destroy(), resolve(res.statusCode ?? 0)))
    req.on('error', reject)
    req.end()
  })
}

t.test('5 shares, threshold 3: sealed with 2 shares, unsealed with 3, sealed again', async (t) => {
  const { dir, shares } = await sharesInstallation(t)
  const h = await startSealed(t, dir)
  t.ok(h.cp.keyring.sealed, 'starts sealed')
  t.notOk(existsSync(join(dir, ADMIN_TOKEN_FILE)), 'nothing keyed is made while sealed')
  t.match(h.logs.join(''), /sealed/, 'the start-up log says so')

  const ready = await h.api('GET', '/readyz', undefined, null)
  t.equal(ready.status, 503)
  t.match(ready.body, { status: 'sealed', sealed: true, kind: 'shares', threshold: 3 })
  t.match((await h.api('GET', '/v1/keys', undefined, null)).body, { error: { code: 'CP_ERR_SEALED' } })
  t.equal((await h.api('GET', '/v1/keys', undefined, null)).status, 503, 'every key operation answers 503 CP_ERR_SEALED')
  t.equal((await h.api('GET', '/healthz', undefined, null)).status, 200, 'alive all the same')
  t.match(await h.api('GET', '/v1/identity', undefined, null), { status: 503, body: { error: { code: 'CP_ERR_SEALED' } } }, 'no identity to show while sealed')
  t.equal(await upgradeStatus(h.cp.url), 503, 'agents are refused')
  h.clock.jump(HOUR)
  h.clock.advance(CLOCK_WATCH_EVERY_MS)
  t.match(h.logs.join(''), /the wall clock stepped 1h0m0s forward/, 'a step of the wall clock while sealed is logged (it cannot be audited)')

  t.match((await unseal(h, shares[0] as string)).body, { sealed: true, progress: { have: 1, threshold: 3 } })
  t.match((await unseal(h, shares[0] as string)).body, { sealed: true, progress: { have: 1 } }, 'the same share twice counts once')
  t.match((await unseal(h, shares[3] as string)).body, { sealed: true, progress: { have: 2, threshold: 3 } })
  t.ok(h.cp.keyring.sealed, 'two shares do not unseal')
  t.match((await h.api('GET', '/readyz', undefined, null)).body, { sealed: true, progress: { have: 2, threshold: 3 } })
  t.match((await unseal(h, shares[4] as string)).body, { sealed: false })
  t.notOk(h.cp.keyring.sealed, 'three do')
  t.equal((await h.api('GET', '/readyz', undefined, null)).status, 200)
  t.match((await h.api('GET', '/v1/identity', undefined, null)).body, { publicKey: readFileSync(join(dir, 'identity.pub'), 'utf8').trim(), fingerprint: /^sha256:[0-9a-f]{64}$/ })

  const token = readFileSync(join(dir, ADMIN_TOKEN_FILE), 'utf8').trim()
  const created = await h.api('POST', '/v1/keys', { name: 'orders', type: 'aead' }, token)
  t.equal(created.status, 201, created.body?.error?.message)

  t.equal((await h.api('POST', '/v1/sys/seal', undefined, null)).status, 401, 'seal needs a token')
  const sealed = await h.api('POST', '/v1/sys/seal', undefined, token)
  t.match(sealed, { status: 200, body: { sealed: true } })
  t.ok(h.cp.keyring.sealed)
  t.equal((await h.api('GET', '/v1/keys/orders', undefined, token)).status, 503, 'sealed again: keys are out of reach')

  for (const i of [1, 2, 0]) await unseal(h, shares[i] as string)
  t.notOk(h.cp.keyring.sealed, 'another three unseal it again')
  const key = await h.api('GET', '/v1/keys/orders', undefined, token)
  t.equal(key.status, 200, 'the same store, the same key')

  const actions = (await h.api('GET', '/v1/audit?limit=100', undefined, token)).body.entries.map((e: { action: string; outcome: string }) => `${e.action}:${e.outcome}`)
  t.match(actions, ['identity.create:ok'])
  for (const a of ['custody.init:ok', 'custody.unseal:ok', 'custody.seal:ok']) t.ok(actions.includes(a), `audited: ${a}`)
})

t.test('a wrong set of shares is refused without naming a share, and the failures are audited as one entry', async (t) => {
  const { dir, shares } = await sharesInstallation(t, 3, 2)
  const other = await sharesInstallation(t, 3, 2, 'other')
  const h = await startSealed(t, dir)
  // Another installation's share is refused on its face.
  t.match((await unseal(h, other.shares[0] as string)).body, { error: { code: 'CP_ERR_INVALID_FIELD', message: /another|installation/ } })
  t.match((await unseal(h, 'kms1-nonsense')).body, { error: { code: 'CP_ERR_INVALID_FIELD' } })
  // One of this installation's, one forged with its prefix: combines to a wrong key.
  const installation = (shares[0] as string).split('-')[1]
  const forged = `kms1-${installation}-${Buffer.alloc(33, 7).toString('base64url')}`
  await unseal(h, shares[0] as string)
  const wrong = await unseal(h, forged)
  t.equal(wrong.status, 400)
  t.same(Object.keys(wrong.body.error).sort(), ['code', 'message'])
  t.equal(wrong.body.error.code, 'CP_ERR_UNSEAL_SHARES')
  t.notMatch(wrong.body.error.message, /share 1|share 2|first|second/, 'no hint about which share')
  t.match((await h.api('GET', '/v1/sys/seal-status', undefined, null)).body, { sealed: true, progress: { have: 0 } }, 'progress starts over')

  await unseal(h, shares[1] as string)
  t.match((await h.api('POST', '/v1/sys/unseal', { reset: true }, null)).body, { progress: { have: 0 } }, 'unseal --reset forgets')
  await unseal(h, shares[1] as string)
  t.match((await unseal(h, shares[2] as string)).body, { sealed: false })
  const token = readFileSync(join(dir, ADMIN_TOKEN_FILE), 'utf8').trim()
  const entries = (await h.api('GET', '/v1/audit?action=custody.unseal', undefined, token)).body.entries
  t.match(entries, [{ outcome: 'error', details: { failures: 1, sources: ['127.0.0.1'] } }, { outcome: 'ok' }])
})

t.test('unseal progress is forgotten after its timeout', async (t) => {
  const { dir, shares } = await sharesInstallation(t, 3, 2)
  const h = await startSealed(t, dir)
  await unseal(h, shares[0] as string)
  h.clock.advance(10 * 60_000 + 1)
  t.match((await h.api('GET', '/v1/sys/seal-status', undefined, null)).body, { progress: { have: 0 } })
  t.match((await unseal(h, shares[1] as string)).body, { sealed: true, progress: { have: 1 } }, 'the old share no longer counts')
})

t.test('unseal is bounded per source by the stranger limits', async (t) => {
  const { dir } = await sharesInstallation(t, 3, 2)
  const h = await startTestControlPlane(t, { dataDir: dir, adminToken: 'kmo_none', limits: { strangerFailureBurst: 2, strangerFailuresPerSecond: 1 } })
  const codes: string[] = []
  for (let i = 0; i < 4; i++) codes.push((await unseal(h, 'kms1-x')).body.error.code)
  t.same(codes.slice(2), ['CP_ERR_RATE_LIMITED', 'CP_ERR_RATE_LIMITED'])
})

t.test('rekey makes new shares without a stop; the old ones no longer unseal', async (t) => {
  const { dir, shares } = await sharesInstallation(t, 3, 2)
  const h = await startSealed(t, dir)
  await unseal(h, shares[0] as string)
  await unseal(h, shares[1] as string)
  const token = readFileSync(join(dir, ADMIN_TOKEN_FILE), 'utf8').trim()
  await h.api('POST', '/v1/keys', { name: 'orders', type: 'aead' }, token)
  // Neither can be rolled back, so a dry run of either is refused and changes nothing.
  const custodyBefore = await h.cp.ctx.store.read((r) => r.getMeta('custody'))
  t.match((await h.api('POST', '/v1/sys/rekey?dryRun=true', { shares: 4, threshold: 3 }, token)).body, { error: { code: 'CP_ERR_BAD_REQUEST', message: /cannot be previewed/ } })
  t.match((await h.api('POST', '/v1/sys/seal?dryRun=true', undefined, token)).body, { error: { code: 'CP_ERR_BAD_REQUEST' } })
  t.same(await h.cp.ctx.store.read((r) => r.getMeta('custody')), custodyBefore, 'a refused dry-run rekey leaves custody as it was')
  t.notOk(h.cp.keyring.sealed, 'a refused dry-run seal leaves it unsealed')
  const rekeyed = await h.api('POST', '/v1/sys/rekey', { shares: 4, threshold: 3 }, token)
  t.equal(rekeyed.status, 200)
  t.equal(rekeyed.body.shares.length, 4)
  t.match(rekeyed.body.status, { sealed: false, kind: 'shares', shares: 4, threshold: 3 })
  t.equal((await h.api('GET', '/v1/keys/orders', undefined, token)).status, 200, 'still serving')

  await h.api('POST', '/v1/sys/seal', undefined, token)
  await unseal(h, shares[0] as string)
  await unseal(h, shares[1] as string)
  t.match((await unseal(h, rekeyed.body.shares[0])).body, { error: { code: 'CP_ERR_UNSEAL_SHARES' } }, 'the old shares are void')
  for (const s of rekeyed.body.shares.slice(1)) await unseal(h, s)
  t.notOk(h.cp.keyring.sealed, 'three new shares unseal')
  t.equal((await h.api('GET', '/v1/keys/orders', undefined, token)).status, 200)
  const audit = (await h.api('GET', '/v1/audit?action=custody.rekey', undefined, token)).body.entries
  t.match(audit.filter((e: { outcome: string }) => e.outcome === 'ok'), [{ outcome: 'ok', details: { from: 'shares', shares: 4, threshold: 3 } }])
  t.match(audit.filter((e: { outcome: string }) => e.outcome !== 'ok'), [{ outcome: 'error', target: 'http:POST /v1/sys/rekey' }], 'the refused dry run is audited as a refusal')
  t.notMatch(JSON.stringify(audit), /kms1-/, 'no share in the audit log')
  t.notMatch(h.logs.join(''), /kms1-/, 'nor in the logs')
})
