// Migration 7 ('elapsed guard on destruction deadlines') on both back-ends: every
// deadline pending at the upgrade gets its elapsed guard, the time left to it by the
// database's clock (the ledger starts at 0), so that a wall clock stepped ahead right
// after an upgrade still destroys nothing early; what is not pending gets none.
import { join } from 'node:path'
import t, { type Test } from 'tap'

import { Database } from '../../../control-plane/src/store/sqlite-driver.js'
import { PG_MIGRATIONS, SQLITE_MIGRATIONS, openPgStore, openSqliteStore, type Migration, type Store } from '../../../control-plane/src/store/index.js'
import { pgExec, pgSchema } from '../../kit/pg.js'
import { HOUR, MINUTE } from '../../kit/fake-clock.js'

const before = (list: readonly Migration[]): Migration[] => list.filter((m) => m.version < 7)

// Rows of a schema-6 store, in that schema's own columns.
function schema6Rows(now: number, bytes: (hex: string) => string): string[] {
  const m = bytes('00'.repeat(40))
  const version = (key: string, v: number, state: string, material: string, destroyAt: number | null, notAfter: number | null) =>
    `INSERT INTO key_versions (key_name, version, state, material, created_at, state_changed_at, destroy_at, not_after) VALUES ('${key}', ${v}, '${state}', ${material}, 1, 1, ${destroyAt ?? 'NULL'}, ${notAfter ?? 'NULL'})`
  return [
    "INSERT INTO keys (name, type, created_at, primary_version, min_decrypt_version) VALUES ('orders', 'aead', 1, 3, 1)",
    version('orders', 1, 'scheduled-destruction', m, now + HOUR, null),
    version('orders', 2, 'destroyed', 'NULL', now - HOUR, null),
    version('orders', 3, 'enabled', m, null, null),
    "INSERT INTO keys (name, type, created_at, primary_version, min_decrypt_version, pair_a, pair_b) VALUES ('a:b', 'pair', 1, 2, 1, 'a', 'b')",
    version('a:b', 1, 'decrypt-only', m, null, now + 30 * MINUTE),
    version('a:b', 2, 'enabled', m, null, null),
    `INSERT INTO intentions (src, dst, created_at, effect, expires_at) VALUES ('a', 'b', 1, 'allow', ${now + 2 * HOUR})`,
    "INSERT INTO intentions (src, dst, created_at, effect) VALUES ('c', 'd', 1, 'allow')",
  ]
}

async function run(t: Test, open: (migrations: readonly Migration[]) => Promise<Store>, all: readonly Migration[], raw: (sql: string) => Promise<unknown>, bytes: (hex: string) => string): Promise<void> {
  await (await open(before(all))).close()
  const now = Date.now()
  for (const sql of schema6Rows(now, bytes)) await raw(sql)
  const s = await open(all)
  t.teardown(() => s.close())
  const got = await s.read(async (r) => ({
    orders: await r.listKeyVersions({ keyName: 'orders' }),
    pair: await r.listKeyVersions({ keyName: 'a:b' }),
    rules: await r.listIntentions(),
    ledger: await r.getElapsedLedger(),
  }))
  // The database's clock read a moment after `now`: the time left is a little less.
  const near = (value: number | null | undefined, left: number): boolean => typeof value === 'number' && value <= left && value > left - MINUTE
  t.ok(near(got.orders[0]?.destroyAtObserved, HOUR), `a scheduled destruction waits for the hour left (${got.orders[0]?.destroyAtObserved})`)
  t.equal(got.orders[1]?.destroyAtObserved, undefined, 'a destroyed version gets no guard')
  t.equal(got.orders[2]?.destroyAtObserved, undefined, 'nor a version with no deadline')
  t.ok(near(got.pair[0]?.notAfterObserved, 30 * MINUTE), 'a pair version in its grace waits for the rest of it')
  t.equal(got.pair[1]?.notAfterObserved, undefined)
  t.ok(near(got.rules[0]?.expiresAtObserved, 2 * HOUR), 'a removal in its grace waits for the rest of it')
  t.equal(got.rules[1]?.expiresAtObserved, undefined)
  t.same(got.ledger, { observedMs: 0, writer: '', advancedAt: 0 }, 'the ledger starts at 0')
}

t.test('sqlite', async (t) => {
  const dir = t.testdir()
  const raw = async (sql: string): Promise<void> => {
    const db = new Database(join(dir, 'keymesh.db'))
    try {
      db.exec(sql)
    } finally {
      db.close()
    }
  }
  await run(t, (migrations) => openSqliteStore({ dir, migrations }), SQLITE_MIGRATIONS, raw, (hex) => `X'${hex}'`)
})

t.test('postgres', async (t) => {
  const db = await pgSchema(t)
  if (db === null) return
  await run(t, (migrations) => openPgStore({ url: db.url, poolSize: 2, migrations }), PG_MIGRATIONS, (sql) => pgExec(sql, [], db.schema), (hex) => `'\\x${hex}'::bytea`)
})
