// The key service below the API: scheduled rotation and destruction with the fake
// clock, erasure of destroyed material from the database file, and key bytes kept
// out of logs, answers and the audit log.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

import type { Actor } from '../../../control-plane/src/context.js'
import { openMaterial } from '../../../control-plane/src/services/material.js'
import * as keys from '../../../control-plane/src/services/keys.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { DAY, HOUR, SECOND } from '../../kit/fake-clock.js'

const admin: Actor = { kind: 'operator', id: 'tok_test', name: 'test', role: 'admin' }

async function rawMaterial(tcp: TestControlPlane, name: string, version: number): Promise<Buffer> {
  const v = await tcp.cp.ctx.store.read((r) => r.getKeyVersion(name, version))
  if (!v) throw new Error('no version')
  return Buffer.from(openMaterial(tcp.cp.ctx, v))
}

async function auditText(tcp: TestControlPlane): Promise<string> {
  const lines: string[] = []
  for await (const e of tcp.cp.ctx.audit.export(tcp.cp.ctx.store)) lines.push(JSON.stringify(e))
  return lines.join('\n')
}

/** Every byte the store has on disk: the database file, its WAL and shared memory. */
function storeFiles(dir: string): Buffer {
  return Buffer.concat(readdirSync(dir).filter((f) => /\.(db|sqlite)(-wal|-shm)?$/.test(f) || f.includes('sqlite')).map((f) => readFileSync(join(dir, f))))
}

t.test('rotateDueKeys rotates aead and x25519 keys whose time has come, not pair keys', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { ctx } = tcp.cp
  await keys.createKey(ctx, admin, { name: 'daily', type: 'aead', rotationPeriodMs: DAY })
  await keys.createKey(ctx, admin, { name: 'weekly', type: 'x25519', rotationPeriodMs: 7 * DAY })
  await keys.createKey(ctx, admin, { name: 'never', type: 'aead' })
  await ctx.store.transaction((tx) =>
    tx.insertKey({ name: 'a:b', type: 'pair', createdAt: 0, rotationPeriodMs: HOUR, nextRotationAt: 0, primaryVersion: 1, minDecryptVersion: 1, pairServices: ['a', 'b'] }),
  )
  t.same(await keys.rotateDueKeys(ctx, tcp.clock.now()), [], 'nothing due at once (the pair key is not ours)')
  tcp.clock.advance(DAY)
  t.same(await keys.rotateDueKeys(ctx, tcp.clock.now()), [{ name: 'daily', version: 2, previousVersion: 1 }])
  t.same(await keys.rotateDueKeys(ctx, tcp.clock.now()), [], 'a rotated key is not due again at once')
  // A scheduler that was down for two weeks rotates each key once, then one period on.
  tcp.clock.advance(14 * DAY)
  const done = await keys.rotateDueKeys(ctx, tcp.clock.now())
  t.same(done.map((r) => [r.name, r.version]), [['daily', 3], ['weekly', 2]])
  const daily = await keys.getKey(ctx, 'daily')
  t.equal(daily.nextRotationAt, tcp.clock.now() + DAY)
  t.same(daily.versions.map((v) => v.state), ['enabled', 'enabled', 'enabled'], 'old versions keep decrypting')
  const entries = await ctx.audit.query(ctx.store, { actor: 'system:scheduler', action: 'key.rotate' })
  t.equal(entries.length, 3)
  t.match(entries[0], { outcome: 'ok', target: 'key:daily', details: { keyName: 'daily', keyVersion: 2 } })
  t.equal((await keys.getKey(ctx, 'a:b')).primaryVersion, 1, 'pair key untouched')
})

t.test('destroyDueVersions erases material when its time comes, keeps metadata, and audits as the scheduler', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { ctx } = tcp.cp
  await keys.createKey(ctx, admin, { name: 'k', type: 'aead' })
  await keys.rotateKey(ctx, admin, 'k')
  await keys.rotateKey(ctx, admin, 'k')
  const sealedV1 = Buffer.from((await ctx.store.read((r) => r.getKeyVersion('k', 1)))!.sealedMaterial!)
  await keys.setVersionState(ctx, admin, 'k', 1, 'scheduled-destruction', HOUR)
  await keys.setVersionState(ctx, admin, 'k', 2, 'scheduled-destruction', 2 * HOUR)
  tcp.clock.advance(HOUR - 1)
  t.same(await keys.destroyDueVersions(ctx, tcp.clock.now()), [], 'not before its time')
  tcp.clock.advance(1)
  t.same(await keys.destroyDueVersions(ctx, tcp.clock.now()), [{ name: 'k', version: 1 }])
  const v1 = await ctx.store.read((r) => r.getKeyVersion('k', 1))
  t.match(v1, { state: 'destroyed', sealedMaterial: null, previousState: null })
  t.equal(v1?.destroyAt, tcp.clock.now(), 'the time of destruction is kept')
  // v2's destruction is cancelled before its time: it is not destroyed.
  await keys.cancelDestruction(ctx, admin, 'k', 2)
  tcp.clock.advance(DAY)
  t.same(await keys.destroyDueVersions(ctx, tcp.clock.now()), [])
  t.equal((await keys.getKey(ctx, 'k')).versions[1]?.state, 'enabled')
  const entries = await ctx.audit.query(ctx.store, { action: 'key.destroy' })
  t.match(entries, [{ actor: 'system:scheduler', outcome: 'ok', target: 'key:k', details: { keyName: 'k', keyVersion: 1 } }])
  await t.rejects(Promise.resolve().then(() => openMaterial(ctx, v1!)), { code: 'CP_ERR_VERSION_DESTROYED' })

  await tcp.cp.close() // checkpoints the WAL into the database file
  t.notOk(storeFiles(tcp.dataDir).includes(sealedV1), 'the sealed bytes are gone from the database files')
})

t.test('a destruction cancelled between listing and destroying is refused and audited', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { ctx } = tcp.cp
  await keys.createKey(ctx, admin, { name: 'k', type: 'aead' })
  await keys.rotateKey(ctx, admin, 'k')
  await keys.setVersionState(ctx, admin, 'k', 1, 'scheduled-destruction', HOUR)
  // The hour has elapsed; the wall clock reads a millisecond short of it, so the cancel below is still allowed.
  const later = tcp.clock.advance(HOUR)
  tcp.clock.jump(-1)
  const realList = ctx.store.read.bind(ctx.store)
  // Between the listing and the transaction, an operator cancels the destruction.
  let first = true
  ;(ctx.store as { read: typeof ctx.store.read }).read = async (fn) => {
    const out = await realList(fn)
    if (first) {
      first = false
      await keys.cancelDestruction(ctx, admin, 'k', 1)
    }
    return out
  }
  t.same(await keys.destroyDueVersions(ctx, later), [])
  t.equal((await ctx.store.read((r) => r.getKeyVersion('k', 1)))?.state, 'enabled')
  t.match(await ctx.audit.tail(ctx.store, 1), [{ action: 'key.destroy', outcome: 'error', actor: 'system:scheduler' }])
  t.match(tcp.logs.join(''), /scheduled destruction failed/)
})

t.test('key bytes never reach the logs, the answers or the audit log', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api, cp } = tcp
  const answers: unknown[] = []
  answers.push((await api('POST', '/v1/keys', { name: 'sym', type: 'aead' })).body)
  answers.push((await api('POST', '/v1/keys', { name: 'agree', type: 'x25519' })).body)
  answers.push((await api('POST', '/v1/keys/sym/rotate')).body)
  answers.push((await api('GET', '/v1/keys')).body)
  answers.push((await api('GET', '/v1/keys/agree/public')).body)
  answers.push((await api('POST', '/v1/keys/sym/versions/1/state', { state: 'scheduled-destruction', windowMs: SECOND })).body)
  const secrets = [await rawMaterial(tcp, 'sym', 1), await rawMaterial(tcp, 'sym', 2), await rawMaterial(tcp, 'agree', 1)]
  tcp.clock.advance(SECOND)
  await keys.destroyDueVersions(cp.ctx, tcp.clock.now())
  const haystack = [tcp.logs.join('\n'), await auditText(tcp), JSON.stringify(answers)].join('\n')
  for (const s of secrets) {
    for (const form of [s.toString('base64'), s.toString('base64url'), s.toString('hex')]) {
      t.notOk(haystack.includes(form), `key bytes (${form.slice(0, 6)}…) appear nowhere`)
    }
  }
  t.equal((await cp.ctx.audit.verify(cp.ctx.store)).ok, true)
})

t.test('a failure inside a change rolls everything back and is audited', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { ctx } = tcp.cp
  await keys.createKey(ctx, admin, { name: 'k', type: 'aead' })
  const before = await keys.getKey(ctx, 'k')
  // Make the new version's insert fail after the key row was updated.
  const realTx = ctx.store.transaction.bind(ctx.store)
  ;(ctx.store as { transaction: typeof ctx.store.transaction }).transaction = (fn) =>
    realTx((tx) =>
      fn(new Proxy(tx, {
        get: (o, p) => {
          if (p === 'insertKeyVersion') return () => Promise.reject(new Error('disk full'))
          const v: unknown = Reflect.get(o, p, o)
          return typeof v === 'function' ? v.bind(o) : v
        },
      })),
    )
  await t.rejects(keys.rotateKey(ctx, admin, 'k'))
  ;(ctx.store as { transaction: typeof ctx.store.transaction }).transaction = realTx
  t.same(await keys.getKey(ctx, 'k'), before, 'no half-applied rotation')
  t.match(await ctx.audit.tail(ctx.store, 1), [{ action: 'key.rotate', outcome: 'error', reason: /CP_ERR_INTERNAL/ }])
})
