// What `--store` accepts: SQLite in the data directory or elsewhere, PostgreSQL
// by URL, and a clear refusal of anything else.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import { PgStore, openStore } from '../../../control-plane/src/store/index.js'
import { pgSchema } from '../../kit/pg.js'
import { aeadKey } from './fixtures.js'

t.test('no store, or sqlite: alone, is SQLite in the data directory', async (t) => {
  for (const spec of [undefined, '', 'sqlite:']) {
    const dir = t.testdir()
    const s = await openStore(spec, dir, { now: () => 1 })
    t.equal(s.backend, 'sqlite', String(spec))
    await s.close()
    t.ok(existsSync(join(dir, 'keymesh.db')))
  }
})

t.test('sqlite:DIR is SQLite in DIR, read-only when asked', async (t) => {
  const dir = t.testdir({ data: {} })
  const elsewhere = join(dir, 'db')
  const s = await openStore(`sqlite:${elsewhere}`, join(dir, 'data'), { busyTimeoutMs: 100 })
  await s.transaction((tx) => tx.insertKey(aeadKey('a')))
  await s.close()
  t.ok(existsSync(join(elsewhere, 'keymesh.db')))
  t.notOk(existsSync(join(dir, 'data', 'keymesh.db')))
  const ro = await openStore(`sqlite:${elsewhere}`, '/nonexistent', { readOnly: true })
  t.equal(ro.readOnly, true)
  t.same(await ro.read((r) => r.getKey('a')), aeadKey('a'))
  await ro.close()
})

t.test('postgres:// and postgresql:// URLs open the PostgreSQL store', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  for (const url of [db.url, db.url.replace(/^postgres:/, 'postgresql:')]) {
    const s = await openStore(url, t.testdir(), { pg: { poolSize: 2 } })
    t.equal(s.backend, 'postgres')
    t.ok(s instanceof PgStore)
    t.equal((s as PgStore).location.schema, db.schema)
    await s.close()
  }
})

t.test('anything else is refused, naming the accepted forms and hiding a password', async (t) => {
  const err = await openStore('mysql://root:hunter2@db/kms', t.testdir()).then(() => null, (e: unknown) => e as Error)
  t.match(err, { code: 'CP_ERR_STORE', message: /unsupported store "mysql:\/\/root:\*\*\*@db\/kms" \(expected sqlite:DIR, or postgres:\/\// })
  t.notMatch(String(err?.message), /hunter2/)
  await t.rejects(openStore('/some/dir', t.testdir()), { code: 'CP_ERR_STORE', message: /unsupported store/ })
})
