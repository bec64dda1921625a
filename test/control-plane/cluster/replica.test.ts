// Two control planes on one PostgreSQL schema, as an operator runs them: each its
// own data directory and port, both with the same --master-key-file.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'

import { startControlPlane } from '../../../control-plane/src/app.js'
import { ADMIN_TOKEN_FILE, CP_LOCK_FILE } from '../../../control-plane/src/bootstrap.js'
import { CP_ERRORS } from '../../../control-plane/src/errors.js'
import { createLocalBus } from '../../../control-plane/src/events.js'
import { MASTER_KEY_FILE } from '../../../control-plane/src/master-key.js'
import { SQLITE_FILE } from '../../../control-plane/src/store/sqlite-store.js'
import type { Message, MessageOf } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { DAY } from '../../kit/fake-clock.js'
import { bytes, kmsAgent } from '../../kit/kms.js'
import { pgSchema } from '../../kit/pg.js'

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
}

interface Pair {
  readonly r1: TestControlPlane
  readonly r2: TestControlPlane
  readonly base: string
  readonly storeUrl: string
  readonly masterKeyFile: string
}

function keyFile(dir: string, name: string): string {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, name)
  writeFileSync(path, randomBytes(32), { mode: 0o600 })
  return path
}

async function twoReplicas(t: Tap, storeUrl: string): Promise<Pair> {
  const base = t.testdir()
  const masterKeyFile = keyFile(base, 'master.key')
  const r1 = await startTestControlPlane(t, { storeUrl, masterKeyFile, dataDir: join(base, 'cp1') })
  const r2 = await startTestControlPlane(t, { storeUrl, masterKeyFile, dataDir: join(base, 'cp2'), clock: r1.clock, adminToken: r1.adminToken })
  return { r1, r2, base, storeUrl, masterKeyFile }
}

const current = (m: MessageOf<'pair.update'>): number | undefined => m.pair.versions.find((v) => v.state === 'current')?.version

/**
 * Resolves when `arrived` does; rejects naming `what` after a deadline far above
 * the expected second, so only a change that never arrives fails. How fast changes
 * cross replicas is a figure of bench/ha.bench.ts (rotation-to-delivery p99), not
 * asserted here: on a busy machine a wall-clock limit fails for reasons of its own.
 */
async function reaches<T>(arrived: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not reach the agent on the other replica within 30 s`)), 30_000)
  })
  try {
    return await Promise.race([arrived, deadline])
  } finally {
    clearTimeout(timer)
  }
}

t.test('a second replica joins: same identity, no admin.token, the first one\'s token works on it', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const { r1, r2 } = await twoReplicas(t, db.url)
  t.equal(r2.identityPub, r1.identityPub)
  t.ok(existsSync(join(r1.dataDir, ADMIN_TOKEN_FILE)))
  t.notOk(existsSync(join(r2.dataDir, ADMIN_TOKEN_FILE)), 'the joining replica writes no admin.token')
  t.notOk(existsSync(join(r1.dataDir, SQLITE_FILE)), 'no embedded store was created')
  t.equal((await r2.api('GET', '/v1/agents')).status, 200)
  t.equal(r1.cp.ctx.store.backend, 'postgres')
  const logs = r2.logs.join('')
  t.match(logs, /running as one replica of a shared store/)
  t.notMatch(logs, /created bootstrap admin token|created control-plane identity/)
})

t.test('changes made through replica 1 reach an agent on replica 2', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const { r1, r2 } = await twoReplicas(t, db.url)
  const web = await kmsAgent(r2, t, 'web')

  const added = web.next('pair.update', (m) => m.pair.pairId === 'api:web' && current(m) === 1)
  t.equal((await r1.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  await reaches(added, 'intention add')
  t.pass('intention add')

  const rotated = web.next('pair.update', (m) => current(m) === 2)
  t.equal((await r1.api('POST', '/v1/pairs/api/web/rotate')).status, 200)
  await reaches(rotated, 'pair rotate')
  t.pass('pair rotate')

  // Grants are looked up at each request, in the shared store: no push needed.
  t.equal((await r1.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).status, 201)
  const before = await web.request({ op: 'encrypt', key: 'orders', plaintext: bytes('x') })
  t.match(before, { ok: false, error: { code: 'CP_ERR_FORBIDDEN' } })
  t.equal((await r1.api('POST', '/v1/keys/orders/grants', { service: 'web', rights: ['encrypt'] })).status, 200)
  t.match(await web.request({ op: 'encrypt', key: 'orders', plaintext: bytes('x') }), { ok: true }, 'grant')

  t.equal((await r1.api('POST', `/v1/agents/${web.agentId}/revoke`)).status, 200)
  const closed = await reaches(web.closed, 'agent revoke')
  t.equal(closed.code, CP_ERRORS.CP_ERR_AGENT_REVOKED.closeCode, 'agent revoke closes its session on the other replica')
})

t.test('a due rotation with both replicas ticking at once: one new version, both agents get it', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const { r1, r2 } = await twoReplicas(t, db.url)
  await r1.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const web = await kmsAgent(r1, t, 'web')
  const api = await kmsAgent(r2, t, 'api')
  const isV = (v: number) => (m: Message) => m.type === 'pair.update' && current(m) === v

  r1.clock.advance(DAY)
  const pushed = Promise.all([web.next('pair.update', isV(2)), api.next('pair.update', isV(2))])
  await Promise.all([r1.cp.scheduler.tick(), r2.cp.scheduler.tick()])
  await pushed
  const versions = await r1.cp.ctx.store.read((r) => r.listKeyVersions({ keyName: 'api:web' }))
  t.same(versions.map((v) => v.version), [1, 2], 'exactly one new version')
  const rotations = await r1.cp.ctx.audit.query(r1.cp.ctx.store, { action: 'pair.rotate', actor: 'system:scheduler' })
  t.equal(rotations.length, 1)
  const holders = [r1, r2].filter((r) => r.logs.some((l) => l.includes('scheduler lease acquired')))
  t.equal(holders.length, 1, 'one replica holds the scheduler lease')

  // The holder stops (its session and lock go with it): the other takes over.
  const [holder] = holders
  const survivor = holder === r1 ? r2 : r1
  const survivorAgent = holder === r1 ? api : web
  await holder!.cp.close()
  r1.clock.advance(DAY)
  const next = survivorAgent.next('pair.update', isV(3))
  await survivor.cp.scheduler.tick()
  await next
  t.ok(survivor.logs.some((l) => l.includes('scheduler lease acquired')), 'the survivor acquired the lease')
  const after = await survivor.cp.ctx.store.read((r) => r.listKeyVersions({ keyName: 'api:web' }))
  t.same(after.map((v) => v.version), [1, 2, 3])
})

t.test('passes that overlap on two replicas (no lease) still rotate once', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const { r1, r2 } = await twoReplicas(t, db.url)
  const { rotateDuePairs } = await import('../../../control-plane/src/scheduler.js')
  await r1.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  await r1.api('POST', '/v1/intentions', { src: 'web', dst: 'db' })
  r1.clock.advance(DAY)
  const now = r1.clock.now()
  const done = await Promise.all([rotateDuePairs(r1.cp.ctx, now), rotateDuePairs(r2.cp.ctx, now)])
  t.equal(done[0] + done[1], 2, 'each pair rotated by one replica or the other')
  for (const name of ['api:web', 'db:web']) {
    const versions = await r1.cp.ctx.store.read((r) => r.listKeyVersions({ keyName: name }))
    t.same(versions.map((v) => v.version), [1, 2], `${name}: one rotation`)
  }
})

t.test('a replica with the wrong master key is refused with CP_ERR_MASTER_KEY', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const { base } = await twoReplicas(t, db.url)
  const logger = pino({ level: 'silent' })
  const wrong = keyFile(join(base, 'other'), 'wrong.key')
  const withFile = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: join(base, 'cp3'), storeUrl: db.url, masterKeyFile: wrong, logger }).catch((e: unknown) => e)
  t.match(withFile, { code: 'CP_ERR_MASTER_KEY', message: 'the master key does not open this store (a replica must use the master key of the first one: --master-key-file)' })
  t.ok(existsSync(wrong), 'the operator\'s key file is left alone')

  // No key given: the key that opens the store is missing; nothing is left behind.
  const dir = join(base, 'cp4')
  const fresh = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: dir, storeUrl: db.url, logger }).catch((e: unknown) => e)
  t.match(fresh, { code: 'CP_ERR_MASTER_KEY', message: /the key that opens this store is missing/ })
  t.notOk(existsSync(join(dir, MASTER_KEY_FILE)), 'no master.key in the data directory')
  t.notOk(existsSync(join(dir, CP_LOCK_FILE)), 'the data directory is unlocked again')
})

t.test('a store that does not answer fails the start with CP_ERR_STORE and unlocks the data directory', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const logger = pino({ level: 'silent' })
  const err = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: dir, storeUrl: 'postgres://kms:secret@127.0.0.1:1/keymesh', logger }).catch((e: unknown) => e)
  t.match(err, { code: 'CP_ERR_STORE' })
  t.notMatch((err as Error).message, /secret/)
  t.notOk(existsSync(join(dir, CP_LOCK_FILE)))
})

t.test('a bus given by the caller is used on a shared store too, with the lease', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const bus = createLocalBus()
  const h = await startTestControlPlane(t, { storeUrl: db.url, bus })
  t.equal(h.cp.ctx.bus, bus)
  await h.cp.scheduler.tick()
  t.ok(h.logs.some((l) => l.includes('scheduler lease acquired')))
})

t.test('replicas starting together on an empty database: one identity, one admin token, in the initialiser\'s directory', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const base = t.testdir()
  const masterKeyFile = keyFile(base, 'master.key')
  const logger = pino({ level: 'silent' })
  const dirs = [0, 1, 2].map((i) => join(base, `cp${i}`))
  const cps = await Promise.all(dirs.map((dataDir) => startControlPlane({ host: '127.0.0.1', port: 0, dataDir, storeUrl: db.url, masterKeyFile, logger })))
  t.teardown(() => Promise.all(cps.map((cp) => cp.close())))
  const withToken = dirs.filter((d) => existsSync(join(d, ADMIN_TOKEN_FILE)))
  t.equal(withToken.length, 1, 'exactly one replica wrote admin.token')
  const ids = new Set(dirs.map((d) => readFileSync(join(d, 'identity.pub'), 'utf8')))
  t.equal(ids.size, 1, 'every replica pins the same identity')
  const entries = await cps[0]!.ctx.store.read((r) => r.listAuditEntries({ limit: 100 }))
  t.same(entries.map((e) => e.action), ['identity.create', 'token.create', 'audit.chain.start', 'custody.init'], 'the identity and the token were created once, together, and the keyed audit chain and the custody started once')
  const token = readFileSync(join(withToken[0]!, ADMIN_TOKEN_FILE), 'utf8').trim()
  for (const cp of cps) {
    const res = await fetch(`${cp.url}/v1/keys`, { headers: { authorization: `Bearer ${token}` } })
    t.equal(res.status, 200, `the token works on ${cp.url}`)
  }
})
