// The store contract, part 2: transactions (all-or-nothing, one at a time, dead
// after their callback, no nesting), close, reopening, migrations, read-only
// stores and a damaged audit head. Registered per back-end by contract.ts.
import type { Test } from 'tap'

import type { StoreTx } from '../../../control-plane/src/store/index.js'
import { fresh, openAt, rejectsCode, write, type StoreBackend } from './contract-support.js'
import { agent, aeadKey, bytes, keyVersion } from './fixtures.js'

export function transactionContract(t: Test, b: StoreBackend): void {
  t.test('a transaction that throws leaves nothing behind', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    const boom = new Error('boom')
    await t.rejects(write(s, async (tx) => {
      await tx.insertKey(aeadKey('a'))
      await tx.insertKeyVersion(keyVersion('a', 1))
      await tx.putMeta('m', bytes(1))
      throw boom
    }), boom, 'the callback error passes through unchanged')
    t.same(await s.read(async (tx) => [await tx.getKey('a'), await tx.getKeyVersion('a', 1), await tx.getMeta('m')]), [null, null, null])
    await rejectsCode(t, write(s, async (tx) => {
      await tx.insertKey(aeadKey('b'))
      await tx.insertKey(aeadKey('b'))
    }), 'CP_ERR_CONFLICT')
    t.equal(await s.read((tx) => tx.getKey('b')), null, 'a store error rolls back the earlier writes too')
  })

  t.test('after a store error, a transaction refuses further statements and rolls back', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await rejectsCode(t, write(s, async (tx) => {
      await tx.insertKey(aeadKey('a'))
      await rejectsCode(t, tx.insertKey(aeadKey('a')), 'CP_ERR_CONFLICT')
      await tx.putMeta('after', bytes(1))
    }), 'CP_ERR_STORE', /earlier statement of this transaction failed/)
    t.same(await s.read(async (tx) => [await tx.getKey('a'), await tx.getMeta('after')]), [null, null])
  })

  t.test('look-ups started together on one transaction all answer (callers may Promise.all them)', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    const names = Array.from({ length: 20 }, (_, i) => `k${String(i).padStart(2, '0')}`)
    await write(s, async (tx) => {
      await Promise.all(names.map((n) => tx.insertKey(aeadKey(n))))
    })
    const found = await s.read((tx) => Promise.all([...names, 'missing'].map((n) => tx.getKey(n))))
    t.same(found.map((k) => k?.name ?? null), [...names, null])
  })

  t.test('transactions run one at a time, in the order they were started', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    const events: string[] = []
    const step = (name: string, n: number) => write(s, async (tx) => {
      events.push(`${name} begin`)
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
      await tx.putMeta(name, bytes(n))
      events.push(`${name} end`)
      return name
    })
    t.same(await Promise.all([step('a', 5), step('b', 1), step('c', 3)]), ['a', 'b', 'c'])
    t.same(events, ['a begin', 'a end', 'b begin', 'b end', 'c begin', 'c end'])
  })

  t.test('a transaction object is dead once its callback has finished', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    let kept: StoreTx | undefined
    await write(s, async (tx) => { kept = tx })
    await rejectsCode(t, kept!.putMeta('late', bytes(1)), 'CP_ERR_STORE', /finished/)
    t.equal(await s.read((tx) => tx.getMeta('late')), null)
  })

  t.test('a transaction started inside a transaction is refused instead of deadlocking', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await rejectsCode(t, write(s, () => s.read(async () => 1)), 'CP_ERR_STORE', /inside a transaction/)
    await rejectsCode(t, s.read(() => write(s, async () => 1)), 'CP_ERR_STORE', /inside a transaction/)
  })

  t.test('close waits for the running transaction, then refuses further use', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    let entered!: () => void
    const inside = new Promise<void>((r) => (entered = r))
    let proceed!: () => void
    const gate = new Promise<void>((r) => (proceed = r))
    let done = false
    const running = write(s, async (tx) => {
      entered()
      await gate
      await tx.putMeta('m', bytes(1))
      done = true
    })
    await inside
    let closed = false
    const closing = s.close().then(() => (closed = true))
    await new Promise((r) => setImmediate(r))
    t.equal(closed, false, 'close is still waiting')
    proceed()
    await closing
    t.equal(done, true, 'the transaction finished before the store closed')
    await running
    await s.close()
    await rejectsCode(t, s.read(async () => 1), 'CP_ERR_STORE', /closed/)
    await rejectsCode(t, write(s, async () => 1), 'CP_ERR_STORE', /closed/)
  })

  t.test('a reopened store keeps its data', async (t) => {
    const place = await b.place(t)
    if (!place) return
    const s = await openAt(t, b, place)
    await write(s, (tx) => tx.insertKey(aeadKey('a')))
    await s.close()
    const again = await openAt(t, b, place)
    t.same(await again.read((tx) => tx.getKey('a')), aeadKey('a'))
  })

  // The store's own migrations, then extra ones numbered after the newest.
  const latest = (): number => b.migrations.reduce((m, x) => Math.max(m, x.version), 0)

  t.test('migrations are applied in order, once, and recorded', async (t) => {
    const place = await b.place(t)
    if (!place) return
    const L = latest()
    await (await openAt(t, b, place)).close()
    t.same(await b.raw(place, 'SELECT version, name, applied_at FROM schema_migrations ORDER BY version'),
      b.migrations.map((m) => ({ version: m.version, name: m.name, applied_at: 42 })))
    const extra = [{ version: L + 2, name: 'three', sql: 'ALTER TABLE t2 ADD COLUMN b INTEGER' }, { version: L + 1, name: 'two', sql: 'CREATE TABLE t2 (a INTEGER)' }]
    await (await openAt(t, b, place, { migrations: [...b.migrations, ...extra], now: () => 43 })).close()
    await (await openAt(t, b, place, { migrations: [...b.migrations, ...extra], now: () => 44 })).close()
    t.same(await b.raw(place, `SELECT version, applied_at FROM schema_migrations WHERE version > ${L} ORDER BY version`),
      [{ version: L + 1, applied_at: 43 }, { version: L + 2, applied_at: 43 }])
    t.same(await b.raw(place, 'SELECT a, b FROM t2'), [], 'both new migrations ran')
  })

  t.test('a failing migration leaves the schema as it was', async (t) => {
    const place = await b.place(t)
    if (!place) return
    const L = latest()
    await (await openAt(t, b, place)).close()
    const bad = [...b.migrations, { version: L + 1, name: 'ok', sql: 'CREATE TABLE t2 (a INTEGER)' }, { version: L + 2, name: 'bad', sql: 'NOT SQL' }]
    await rejectsCode(t, b.open(place, { migrations: bad }), 'CP_ERR_STORE')
    await t.rejects(b.raw(place, 'SELECT a FROM t2'), 'the table of the first new migration is gone with it')
    t.same(await b.raw(place, 'SELECT MAX(version) AS v FROM schema_migrations'), [{ v: L }])
    await (await openAt(t, b, place)).close()
  })

  t.test('a database with a newer schema than the code knows is refused', async (t) => {
    const place = await b.place(t)
    if (!place) return
    const L = latest()
    await (await openAt(t, b, place, { migrations: [...b.migrations, { version: L + 1, name: 'future', sql: 'CREATE TABLE future (a INTEGER)' }] })).close()
    await rejectsCode(t, b.open(place, {}), 'CP_ERR_STORE', new RegExp(`schema version ${L + 1}, newer than this keymesh understands \\(${L}\\)`))
    await rejectsCode(t, b.open(place, { readOnly: true }), 'CP_ERR_STORE', /newer/)
  })

  t.test('a read-only store reads but cannot write', async (t) => {
    const place = await b.place(t)
    if (!place) return
    const s = await openAt(t, b, place)
    await write(s, (tx) => tx.insertKey(aeadKey('a')))
    await s.close()
    const ro = await openAt(t, b, place, { readOnly: true })
    t.equal(ro.readOnly, true)
    t.same(await ro.read((tx) => tx.getKey('a')), aeadKey('a'))
    await rejectsCode(t, ro.transaction((tx) => tx.insertKey(aeadKey('b'))), 'CP_ERR_STORE', /read-only/)
    await rejectsCode(t, ro.read((tx) => (tx as StoreTx).insertKey(aeadKey('b'))), 'CP_ERR_STORE', b.readOnlyWrite)
  })

  t.test('fields a patch does not know are ignored, not written', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertAgent(agent('ag1', 'api'))
      t.equal(await tx.updateAgent('ag1', { service: 'evil', lastSeenAt: 5 } as never), true)
      t.match(await tx.getAgent('ag1'), { service: 'api', lastSeenAt: 5 })
    })
  })

  t.test('a store whose audit head row was removed says so instead of inventing one', async (t) => {
    const place = await b.place(t)
    if (!place) return
    await (await openAt(t, b, place)).close()
    await b.raw(place, 'DELETE FROM audit_head')
    const s = await openAt(t, b, place)
    await rejectsCode(t, s.read((tx) => tx.getAuditHead()), 'CP_ERR_STORE', /audit head row is missing/)
    await rejectsCode(t, write(s, (tx) => tx.lockAuditHead()), 'CP_ERR_STORE', /audit head row is missing/)
  })
}
