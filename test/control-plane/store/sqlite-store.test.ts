// The SQLite store: the shared contract (contract.ts), then what only SQLite has:
// a database file with owner-only modes, WAL and durability settings, another
// process's write lock met with a busy timeout, and SQLite's own error codes.
import { statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import { Database } from '../../../control-plane/src/store/sqlite-driver.js'
import { SQLITE_MIGRATIONS, openSqliteStore } from '../../../control-plane/src/store/index.js'
import { DEFAULT_CACHE_KIB, DEFAULT_JOURNAL_SIZE_LIMIT } from '../../../control-plane/src/store/sqlite-store.js'
import { rejectsCode, storeContract, write, type RawRow } from './contract.js'
import { aeadKey, bytes, keyVersion } from './fixtures.js'

const open = (dir: string, over: object = {}) => openSqliteStore({ dir, now: () => 42, ...over })

storeContract(t, {
  name: 'sqlite',
  place: async (t) => t.testdir(),
  open: (dir, over) => openSqliteStore({ dir, ...over }),
  migrations: SQLITE_MIGRATIONS,
  raw: async (dir, sql) => {
    const db = new Database(join(dir, 'keymesh.db'))
    try {
      const stmt = db.prepare(sql)
      return /^\s*SELECT/i.test(sql) ? (stmt.all() as RawRow[]) : (stmt.run(), [])
    } finally {
      db.close()
    }
  },
  readOnlyWrite: /SQLITE_READONLY/,
})

const auditRow = (seq: number) => ({
  seq, at: 100 + seq, actor: 'operator:o1', action: 'key.create', target: `key:k${seq}`, outcome: 'ok' as const,
  reason: 'because', detailsJson: '{}', prevHash: bytes(seq - 1), hash: bytes(seq), mac: null,
})

t.test('the audit log refuses updates and deletes even through raw SQL on the connection', async (t) => {
  const dir = t.testdir()
  const s = await open(dir)
  await write(s, (tx) => tx.appendAuditRow(auditRow(1)))
  await s.close()
  const db = new Database(join(dir, 'keymesh.db'))
  t.throws(() => db.exec("UPDATE audit_log SET reason = 'x'"), /append-only/)
  t.throws(() => db.exec('DELETE FROM audit_log'), /append-only/)
  db.close()
})

t.test('a second process waiting on the write lock gets CP_ERR_STORE after its busy timeout', async (t) => {
  const dir = t.testdir()
  const s1 = await open(dir)
  const s2 = await open(dir, { busyTimeoutMs: 50 })
  let locked!: () => void
  const inside = new Promise<void>((r) => (locked = r))
  let release!: () => void
  const held = write(s1, async (tx) => {
    await tx.putMeta('a', bytes(1))
    locked()
    await new Promise<void>((r) => (release = r))
  })
  await inside
  await rejectsCode(t, write(s2, (tx) => tx.putMeta('b', bytes(2))), 'CP_ERR_STORE', /SQLITE_BUSY/)
  release()
  await held
  await write(s2, (tx) => tx.putMeta('b', bytes(2)))
  t.same(await s1.read((tx) => tx.getMeta('b')), bytes(2), 'and succeeds once the lock is free')
  await s1.close()
  await s2.close()
})

t.test('the connection runs in WAL mode with full sync, foreign keys, a busy timeout, secure delete, a bounded WAL and a bounded page cache', async (t) => {
  const s = await open(t.testdir(), { busyTimeoutMs: 1234 })
  t.same(s.settings(), {
    journalMode: 'wal', synchronous: 2, foreignKeys: 1, busyTimeoutMs: 1234,
    secureDelete: 1, journalSizeLimit: DEFAULT_JOURNAL_SIZE_LIMIT, cacheKiB: DEFAULT_CACHE_KIB, scrubPending: false,
  })
  const small = await open(join(t.testdir(), 'small'), { cacheKiB: 512 })
  t.equal(small.settings().cacheKiB, 512, 'the bound is an option')
  await small.close()
  t.equal(s.backend, 'sqlite')
  t.equal(s.readOnly, false)
  await s.close()
})

t.test('read-only open refuses a missing or uninitialised store', async (t) => {
  const dir = t.testdir()
  await rejectsCode(t, open(dir, { readOnly: true }), 'CP_ERR_STORE', /no keymesh store/)
  new Database(join(dir, 'keymesh.db')).close()
  await rejectsCode(t, open(dir, { readOnly: true }), 'CP_ERR_STORE', /not an initialised keymesh store/)
})

t.test('a path that cannot hold a database fails with CP_ERR_STORE', async (t) => {
  const dir = t.testdir({ 'keymesh.db': { 'not-a-file': '' } })
  await rejectsCode(t, open(dir), 'CP_ERR_STORE', /cannot open/)
})

t.test('driver errors map onto the store contract codes', async (t) => {
  const { mapSqliteError } = await import('../../../control-plane/src/store/sqlite-driver.js')
  t.match(mapSqliteError(Object.assign(new Error('UNIQUE constraint failed: keys.name'), { code: 'SQLITE_CONSTRAINT_UNIQUE' })), { code: 'CP_ERR_CONFLICT', message: /keys\.name/ })
  t.match(mapSqliteError(Object.assign(new Error('x'), { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' })), { code: 'CP_ERR_NOT_FOUND' })
  t.match(mapSqliteError(Object.assign(new Error('x'), { code: 'SQLITE_FULL' })), { code: 'CP_ERR_STORE', detail: 'SQLITE_FULL' })
  t.match(mapSqliteError('not an error'), { code: 'CP_ERR_STORE', detail: undefined, cause: 'not an error' })
  t.match(mapSqliteError(null), { code: 'CP_ERR_STORE' })
})

t.test('the database and its WAL files are readable by the owner only', async (t) => {
  const { statSync, readdirSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { openSqliteStore } = await import('../../../control-plane/src/store/sqlite-store.js')
  const dir = t.testdir()
  const store = await openSqliteStore({ dir })
  await store.transaction(async (tx) => tx.putMeta('probe', new Uint8Array([1])))
  for (const f of readdirSync(dir).filter((f) => f.startsWith('keymesh.db'))) {
    t.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`)
  }
  await store.close()
})

t.test('an erasure truncates the WAL; when another reader blocks that, the next write retries it', async (t) => {
  const dir = t.testdir()
  const s = await open(dir)
  t.teardown(() => s.close())
  const wal = join(dir, 'keymesh.db-wal')
  await write(s, async (tx) => {
    await tx.insertKey(aeadKey('k'))
    await tx.insertKeyVersion(keyVersion('k', 1))
    await tx.insertKeyVersion(keyVersion('k', 2))
  })
  t.ok(statSync(wal).size > 0, 'the new rows sit in the WAL')
  await write(s, (tx) => tx.updateKeyVersion('k', 1, { state: 'destroyed', sealedMaterial: null }))
  t.equal(statSync(wal).size, 0, 'the erasure was checkpointed and the WAL truncated')
  t.equal(s.settings().scrubPending, false)

  // Another process holds a read snapshot: the checkpoint cannot reset the WAL.
  const reader = new Database(join(dir, 'keymesh.db'), { timeout: 0 })
  reader.exec('BEGIN')
  reader.prepare('SELECT count(*) FROM key_versions').get()
  const busy = await open(dir, { busyTimeoutMs: 0 })
  t.teardown(() => busy.close())
  await write(busy, (tx) => tx.updateKeyVersion('k', 2, { state: 'destroyed', sealedMaterial: null }))
  t.equal(busy.settings().scrubPending, true, 'the erasure committed; its scrub is pending')
  await busy.read((tx) => tx.getKey('k'))
  t.equal(busy.settings().scrubPending, true, 'a read does not retry it')
  reader.exec('COMMIT')
  reader.close()
  await write(busy, (tx) => tx.putMeta('x', bytes(1)))
  t.equal(busy.settings().scrubPending, false, 'the next write transaction did')
  t.equal(statSync(wal).size, 0)
})
