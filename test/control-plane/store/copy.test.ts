// Copying an installation between stores (store/copy.ts): the table list stays
// complete, every row arrives byte for byte across pages and back-ends, and
// every refusal leaves the target as it was.
import { join } from 'node:path'
import t from 'tap'

import { createAuditLog } from '../../../control-plane/src/audit.js'
import { copyStore, SCHEMA_TABLE, STORE_TABLES, verifyCopy } from '../../../control-plane/src/store/copy.js'
import { openPgStore, openSqliteStore, SQLITE_MIGRATIONS, LATEST_SCHEMA_VERSION, type Migration, type Store, type StoreReader } from '../../../control-plane/src/store/index.js'
import { Database } from '../../../control-plane/src/store/sqlite-driver.js'
import { pgExec, pgSchema } from '../../kit/pg.js'
import { aeadKey, bytes } from './fixtures.js'
import { EMPTY, contents, dump, populate, refusal, rowsOf, sqlite, tamper } from './installation.js'

t.test('the table list is every table the migrations create, each keyed by its primary key', async (t) => {
  const { store, dir } = await sqlite(t)
  await store.close()
  const db = new Database(join(dir, 'keymesh.db'), { readonly: true })
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[])
    .map((r) => r.name)
  t.same(tables, [...STORE_TABLES.map((x) => x.name), SCHEMA_TABLE].sort(), 'SQLite: a table the copy does not know fails here')
  for (const table of STORE_TABLES) {
    const pk = (db.prepare(`PRAGMA table_info(${table.name})`).all() as { name: string; pk: number }[])
      .filter((c) => c.pk > 0)
      .sort((a, b) => a.pk - b.pk)
      .map((c) => c.name)
    t.same(table.key, pk, `${table.name} pages by its primary key`)
  }
  db.close()

  const pgDb = await pgSchema(t)
  if (!pgDb) return
  await (await openPgStore({ url: pgDb.url, poolSize: 1 })).close()
  const pgTables = await pgExec<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [pgDb.schema])
  t.same(pgTables.map((r) => r.tablename), [...STORE_TABLES.map((x) => x.name), SCHEMA_TABLE].sort(), 'PostgreSQL: the same tables')
})

t.test('copies every row byte for byte across pages: SQLite to PostgreSQL and back to SQLite', async (t) => {
  const { store: source } = await sqlite(t)
  await populate(source, 7)
  const before = await dump(source)
  const head = await source.read((r) => r.getAuditHead())

  const db = await pgSchema(t)
  if (!db) return
  const pg = await openPgStore({ url: db.url, poolSize: 2 })
  t.teardown(() => pg.close())
  const result = await copyStore(source, pg, { pageSize: 2 })
  t.same(result.rows, Object.fromEntries(STORE_TABLES.map((x) => [x.name, before[x.name]?.length])), 'rows per table, as counted')
  t.equal(result.rows['audit_log'], 7)
  t.equal(result.schemaVersion, LATEST_SCHEMA_VERSION)
  t.same(result.audit, { count: 7, head }, 'the target verifies and ends at the source head')
  t.same(await dump(pg), before, 'PostgreSQL holds the same rows')
  t.same(
    await pg.read((r) => r.getKeyVersion('orders', 2)),
    await source.read((r) => r.getKeyVersion('orders', 2)),
    'sealed material arrives as the same bytes',
  )

  const { store: back } = await sqlite(t)
  const again = await copyStore(pg, back, { pageSize: 3 })
  t.same(await dump(back), before, 'and back to SQLite, unchanged')
  t.same(again.audit.head, head)
})

t.test('a full page goes in several rows per statement, on both back-ends', async (t) => {
  const { store: source } = await sqlite(t)
  await populate(source, 250)
  const before = await dump(source)
  const { store: lite } = await sqlite(t)
  t.equal((await copyStore(source, lite)).rows['audit_log'], 250)
  t.same(await dump(lite), before, 'SQLite')
  const db = await pgSchema(t)
  if (!db) return
  const pg = await openPgStore({ url: db.url, poolSize: 1 })
  t.teardown(() => pg.close())
  t.equal((await copyStore(source, pg)).audit.count, 250)
  t.same(await dump(pg), before, 'PostgreSQL')
})

t.test('a target that holds an installation is refused and left as it was', async (t) => {
  const { store: source } = await sqlite(t)
  await populate(source)
  const { store: target } = await sqlite(t)
  await target.transaction((tx) => tx.insertKey(aeadKey('theirs')))
  t.match(await refusal(copyStore(source, target)), {
    code: 'CP_ERR_STORE_NOT_EMPTY',
    message: /the target already holds an installation \(rows in keys\); copy into an empty database or schema/,
  })

  const { store: logged } = await sqlite(t)
  await logged.transaction((tx) => createAuditLog().append(tx, { actor: 'system:test', action: 'a', target: 'b', outcome: 'ok', reason: 'r' }))
  const before = await dump(logged)
  t.match(await refusal(copyStore(source, logged)), { code: 'CP_ERR_STORE_NOT_EMPTY', message: /rows in audit_log, audit_head\)/ })
  t.same(await dump(logged), before)
})

t.test('schema versions must match: an older or newer source is refused', async (t) => {
  const L = SQLITE_MIGRATIONS.reduce((m, x) => Math.max(m, x.version), 0)
  const v2: Migration[] = [...SQLITE_MIGRATIONS, { version: L + 1, name: 'extra', sql: 'CREATE TABLE extra (x INTEGER)' }]
  const { store: newer } = await sqlite(t, v2)
  const { store: plain } = await sqlite(t)
  t.match(await refusal(copyStore(newer, plain)), { code: 'CP_ERR_STORE', message: new RegExp(`source has schema version ${L + 1} and the target ${L}; run a newer keymesh`) })
  const { store: newTarget } = await sqlite(t, v2)
  await populate(plain)
  t.match(await refusal(copyStore(plain, newTarget)), {
    code: 'CP_ERR_STORE',
    message: new RegExp(`source has schema version ${L} and the target ${L + 1}; start its control plane once with this keymesh`),
  })
  t.same(await contents(newTarget), EMPTY, 'the target is left empty')
})

t.test('a source whose audit chain is broken is refused, naming the first bad seq; the target stays empty', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['an altered entry', "UPDATE audit_log SET reason = 'forged' WHERE seq = 4", /broken at seq 4 \(hash-mismatch\); nothing was copied/],
    ['a moved head', 'UPDATE audit_head SET seq = 6', /broken at seq 6 \(head-mismatch\)/],
  ]
  for (const [name, sql, message] of cases) {
    const { store: source, dir } = await sqlite(t)
    await populate(source, 5)
    await source.close()
    tamper(dir, sql)
    const broken = await openSqliteStore({ dir, readOnly: true })
    t.teardown(() => broken.close())
    const { store: target } = await sqlite(t)
    // Page size 1: every table before audit_log has been written when the break is found.
    t.match(await refusal(copyStore(broken, target, { pageSize: 1 })), { code: 'CP_ERR_STORE', message }, name)
    t.same(await contents(target), EMPTY, `${name}: the tables written before the break were rolled back`)
  }
})

t.test('a read-only target, or a store that is not SQL, is refused', async (t) => {
  const { store: source, dir } = await sqlite(t)
  await populate(source)
  const ro = await openSqliteStore({ dir, readOnly: true })
  t.teardown(() => ro.close())
  t.match(await refusal(copyStore(source, ro)), { code: 'CP_ERR_STORE', message: /target store was opened read-only/ })

  const { store: target } = await sqlite(t)
  const foreign: Store = {
    backend: 'memory',
    readOnly: false,
    read: (fn) => fn({} as StoreReader),
    transaction: () => Promise.reject(new Error('not reached')),
    close: async () => undefined,
  }
  t.match(await refusal(copyStore(foreign, target)), { code: 'CP_ERR_STORE', message: /this store back-end cannot be copied/ })
  t.same(await contents(target), EMPTY)
})

t.test('verifyCopy refuses a target whose chain breaks or ends elsewhere than the source', async (t) => {
  const { store: a } = await sqlite(t)
  await populate(a, 3)
  const head = await a.read((r) => r.getAuditHead())
  t.same(await verifyCopy(a, head), { count: 3, head })
  const elsewhere = { seq: 3, hash: bytes(1) }
  t.match(await refusal(verifyCopy(a, elsewhere)), { code: 'CP_ERR_STORE', message: /the target's audit head \(seq 3\) is not the source's \(seq 3\)/ })

  const { store: b, dir } = await sqlite(t)
  await populate(b, 3)
  await b.close()
  tamper(dir, "UPDATE audit_log SET actor = 'x' WHERE seq = 2")
  const tampered = await openSqliteStore({ dir, readOnly: true })
  t.teardown(() => tampered.close())
  t.match(await refusal(verifyCopy(tampered, head)), { code: 'CP_ERR_STORE', message: /target's audit chain does not verify at seq 2 \(hash-mismatch\)/ })
})

t.test('row access refuses names that are not plain SQL identifiers', async (t) => {
  const { store } = await sqlite(t)
  t.match(await refusal(store.read((tx) => rowsOf(tx).exportRows('meta; DROP TABLE keys', ['key'], null, 1))), { code: 'CP_ERR_STORE' })
  t.match(await refusal(store.transaction((tx) => rowsOf(tx).importRows('meta', [{ 'key) --': 'x' }]))), { code: 'CP_ERR_STORE' })
  t.equal(await store.transaction((tx) => rowsOf(tx).importRows('meta', [])), 0, 'no rows, no statement')
})
