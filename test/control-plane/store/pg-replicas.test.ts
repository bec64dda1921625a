// Several PostgreSQL stores on one schema, as several control-plane replicas
// hold them: writers never interleave, the audit chain never forks, and
// replicas starting together migrate once.
import t, { type Test } from 'tap'

import { createAuditLog } from '../../../control-plane/src/audit.js'
import { PG_MIGRATIONS, openPgStore, type Store } from '../../../control-plane/src/store/index.js'
import { pgExec, pgSchema } from '../../kit/pg.js'
import { write } from './contract.js'

const open = (url: string) => openPgStore({ url, poolSize: 3 })
const range = (n: number) => Array.from({ length: n }, (_, i) => i)

async function replicas(t: Test, n: number): Promise<Store[] | null> {
  const db = await pgSchema(t)
  if (!db) return null
  const first = await open(db.url)
  const rest = await Promise.all(range(n - 1).map(() => open(db.url)))
  const all = [first, ...rest]
  t.teardown(() => Promise.all(all.map((s) => s.close())))
  return all
}

t.test('write transactions on two replicas never interleave and lose no update', async (t) => {
  const stores = await replicas(t, 2)
  if (!stores) return
  const events: string[] = []
  const step = (s: Store, name: string) => write(s, async (tx) => {
    events.push(`${name} begin`)
    const n = (await tx.getMeta('counter'))?.[0] ?? 0
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
    await tx.putMeta('counter', Uint8Array.of(n + 1))
    events.push(`${name} end`)
  })
  await Promise.all(range(10).flatMap((i) => stores.map((s, r) => step(s, `r${r}-${i}`))))
  const pairs = range(events.length / 2).map((i) => [events[2 * i], events[2 * i + 1]])
  t.ok(pairs.every(([b, e]) => b?.endsWith(' begin') && e === b.replace(' begin', ' end')), 'each transaction ends before the next begins')
  t.same(await stores[1]!.read((r) => r.getMeta('counter')), Uint8Array.of(20), 'read-modify-write lost nothing')
})

t.test('concurrent audit appends from two replicas make one contiguous, verifiable chain', async (t) => {
  const stores = await replicas(t, 2)
  if (!stores) return
  const audit = createAuditLog()
  const append = (s: Store, name: string) =>
    write(s, (tx) => audit.append(tx, { actor: 'system:test', action: 'test.append', target: name, outcome: 'ok', reason: 'concurrent' }))
  await Promise.all(range(50).flatMap((i) => stores.map((s, r) => append(s, `r${r}-${i}`))))
  const rows = await stores[0]!.read((r) => r.listAuditEntries({ limit: 1000 }))
  t.same(rows.map((r) => r.seq), range(100).map((i) => i + 1), 'seq 1..100, no gap, no fork')
  t.equal(new Set(rows.map((r) => r.target)).size, 100, 'every append is there once')
  t.match(await audit.verify(stores[1]!), { ok: true, count: 100 })
})

t.test('replicas opening a new schema together create and migrate it once', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const schema = `${db.schema}_new`
  t.teardown(() => pgExec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
  const url = db.url.replace(`schema=${db.schema}`, `schema=${schema}`)
  const stores = await Promise.all(range(3).map(() => open(url)))
  t.teardown(() => Promise.all(stores.map((s) => s.close())))
  t.same(await pgExec(`SELECT version, name FROM ${schema}.schema_migrations ORDER BY version`),
    PG_MIGRATIONS.map((m) => ({ version: String(m.version), name: m.name })))
  await write(stores[0]!, (tx) => tx.putMeta('shared', Uint8Array.of(7)))
  for (const s of stores) t.same(await s.read((r) => r.getMeta('shared')), Uint8Array.of(7), 'every replica sees one database')
})

t.test('a writer waiting on another replica\'s write lock gets CP_ERR_STORE after its lock timeout', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const holder = await open(db.url)
  const waiter = await openPgStore({ url: db.url, poolSize: 2, lockTimeoutMs: 100 })
  t.teardown(() => Promise.all([holder.close(), waiter.close()]))
  let locked!: () => void
  const inside = new Promise<void>((r) => (locked = r))
  let release!: () => void
  const held = write(holder, async (tx) => {
    await tx.putMeta('a', Uint8Array.of(1))
    locked()
    await new Promise<void>((r) => (release = r))
  })
  await inside
  await t.rejects(write(waiter, (tx) => tx.putMeta('b', Uint8Array.of(2))), { code: 'CP_ERR_STORE', message: /lock timeout/ })
  t.same(await waiter.read((r) => r.getMeta('a')), null, 'reads do not wait for the lock')
  release()
  await held
  await write(waiter, (tx) => tx.putMeta('b', Uint8Array.of(2)))
  t.same(await holder.read((r) => r.getMeta('b')), Uint8Array.of(2), 'and succeeds once the lock is free')
})

t.test('a replica that froze inside a transaction loses its session, and with it the write lock', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const frozen = await openPgStore({ url: db.url, poolSize: 2, idleInTransactionTimeoutMs: 200 })
  const other = await open(db.url)
  t.teardown(() => Promise.all([frozen.close(), other.close()]))
  let locked!: () => void
  const inside = new Promise<void>((r) => (locked = r))
  let thaw!: () => void
  const stuck = write(frozen, async (tx) => {
    await tx.putMeta('frozen', Uint8Array.of(1))
    locked()
    await new Promise<void>((r) => (thaw = r))
    await tx.putMeta('thawed', Uint8Array.of(1))
  })
  await inside
  await write(other, (tx) => tx.putMeta('other', Uint8Array.of(2)))
  thaw()
  await t.rejects(stuck, { code: 'CP_ERR_STORE' }, 'the frozen transaction fails when it wakes')
  t.same(await other.read(async (r) => [await r.getMeta('frozen'), await r.getMeta('other')]), [null, Uint8Array.of(2)])
})
