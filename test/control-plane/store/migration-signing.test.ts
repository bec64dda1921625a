// Migration 4 ('signing and MAC keys') on both back-ends: a store made before it
// keeps every key, version and grant through it (SQLite rebuilds keys and grants,
// so this is the test that the rebuild loses nothing and the references still
// hold), and afterwards takes the new key types and rights while its CHECKs still
// refuse unknown ones.
import { join } from 'node:path'
import t, { type Test } from 'tap'

import { Database } from '../../../control-plane/src/store/sqlite-driver.js'
import { PG_MIGRATIONS, SQLITE_MIGRATIONS, openPgStore, openSqliteStore, type Migration, type Store } from '../../../control-plane/src/store/index.js'
import { pgExec, pgSchema } from '../../kit/pg.js'
import { write } from './contract-support.js'
import { aeadKey, keyVersion } from './fixtures.js'

const before = (list: readonly Migration[]): Migration[] => list.filter((m) => m.version < 4)

// The rows a store of schema 3 held, written in that schema's own columns (today's
// store code writes columns later migrations add).
function schema3Rows(bytes: (hex: string) => string): string[] {
  const v = keyVersion('orders', 1)
  return [
    "INSERT INTO keys (name, type, created_at, primary_version, min_decrypt_version) VALUES ('orders', 'aead', 1000, 1, 1)",
    `INSERT INTO key_versions (key_name, version, state, material, created_at, state_changed_at) VALUES ('orders', 1, 'enabled', ${bytes(Buffer.from(v.sealedMaterial ?? []).toString('hex'))}, ${v.createdAt}, ${v.stateChangedAt})`,
    "INSERT INTO grants (key_name, service, grant_right) VALUES ('orders', 'billing', 'encrypt')",
    "INSERT INTO grants (key_name, service, grant_right) VALUES ('orders', 'billing', 'decrypt')",
  ]
}

async function run(t: Test, open: (migrations: readonly Migration[]) => Promise<Store>, all: readonly Migration[], raw: (sql: string) => Promise<unknown>, bytes: (hex: string) => string): Promise<void> {
  await (await open(before(all))).close()
  for (const sql of schema3Rows(bytes)) await raw(sql)

  const s = await open(all)
  t.teardown(() => s.close())
  const kept = await s.read(async (r) => ({ key: await r.getKey('orders'), v: await r.getKeyVersion('orders', 1), grants: await r.listGrants({ keyName: 'orders' }) }))
  t.equal(kept.key?.type, 'aead', 'the key is kept')
  t.same(kept.v?.sealedMaterial, keyVersion('orders', 1).sealedMaterial, 'its version and material are kept')
  t.same(kept.grants, [{ keyName: 'orders', service: 'billing', rights: ['encrypt', 'decrypt'] }], 'its grant is kept')

  await write(s, async (tx) => {
    for (const type of ['ed25519', 'ecdsa-p256', 'hmac-sha256'] as const) {
      await tx.insertKey(aeadKey(type, { type }))
      await tx.insertKeyVersion(keyVersion(type, 1))
    }
    await tx.putGrant({ keyName: 'ed25519', service: 'web', rights: ['sign', 'verify', 'hmac'] })
  })
  t.same((await s.read((r) => r.listGrants({ keyName: 'ed25519' })))[0]?.rights, ['sign', 'verify', 'hmac'], 'the new rights are stored')
  t.same((await s.read((r) => r.listKeys({ type: 'ecdsa-p256' }))).map((k) => k.name), ['ecdsa-p256'], 'the new types are stored')
  await t.rejects(raw("INSERT INTO keys (name, type, created_at, primary_version, min_decrypt_version) VALUES ('x', 'rsa', 1, 1, 1)"), 'an unknown type is still refused')
  await t.rejects(raw("INSERT INTO grants (key_name, service, grant_right) VALUES ('orders', 's', 'everything')"), 'an unknown right is still refused')
  await t.rejects(raw("INSERT INTO key_versions (key_name, version, state, material, created_at, state_changed_at) VALUES ('nokey', 1, 'enabled', X'00', 1, 1)"), 'versions still refer to keys')
}

t.test('sqlite', async (t) => {
  const dir = t.testdir()
  const raw = async (sql: string): Promise<void> => {
    const db = new Database(join(dir, 'keymesh.db'))
    try {
      db.pragma('foreign_keys = ON')
      db.exec(sql)
    } finally {
      db.close()
    }
  }
  await run(t, (migrations) => openSqliteStore({ dir, now: () => 42, migrations }), SQLITE_MIGRATIONS, raw, (hex) => `X'${hex}'`)
})

t.test('postgres', async (t) => {
  const db = await pgSchema(t)
  if (db === null) return
  await run(t, (migrations) => openPgStore({ url: db.url, poolSize: 2, migrations }), PG_MIGRATIONS, (sql) => pgExec(sql, [], db.schema), (hex) => `'\\x${hex}'::bytea`)
})
