// The PostgreSQL store: the shared contract (contract.ts), each test in a schema
// of its own, then what only PostgreSQL has: several stores (replicas) on one
// schema, connections that die and come back, an unreachable server.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t from 'tap'

import { PG_MIGRATIONS, SQLITE_MIGRATIONS, openPgStore, type PgStoreOptions } from '../../../control-plane/src/store/index.js'
import { PG_SERVER_KEEPALIVES, pgConnection } from '../../../control-plane/src/store/pg-store.js'
import { parsePgUrl } from '../../../control-plane/src/store/pg-url.js'
import { until } from '../../kit/wait.js'
import { TEST_PG_URL, pgExec, pgSchema } from '../../kit/pg.js'
import { rejectsCode, storeContract, write, type RawRow } from './contract.js'
import { aeadKey, bytes, keyVersion } from './fixtures.js'

// BIGINT as numbers, like the store itself reads them.
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
}

/** SQL on the store's schema behind its back. */
async function raw(url: string, sql: string, args: unknown[] = []): Promise<RawRow[]> {
  const schema = new URL(url).searchParams.get('schema') ?? 'public'
  const c = new pg.Client({ connectionString: TEST_PG_URL, options: `-c search_path=${schema}`, types })
  await c.connect()
  try {
    return (await c.query<RawRow>(sql, args)).rows
  } finally {
    await c.end()
  }
}

storeContract(t, {
  name: 'postgres',
  place: async (t) => (await pgSchema(t))?.url ?? null,
  open: (url, over) => openPgStore({ url, poolSize: 4, ...over }),
  migrations: PG_MIGRATIONS,
  raw: (url, sql) => raw(url, sql),
  readOnlyWrite: /read-only transaction/,
})

const open = (url: string, over: Partial<PgStoreOptions> = {}) => openPgStore({ url, poolSize: 4, ...over })

/** Terminates every connection of `app` and waits until they are gone; how many there were. */
async function kill(app: string): Promise<number> {
  const rows = await pgExec<{ n: number }>(
    'SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1) k',
    [app],
  )
  return rows[0]?.n ?? 0
}

const connections = async (app: string): Promise<number> =>
  (await pgExec<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [app]))[0]?.n ?? 0

const appName = () => `km_test_${randomBytes(4).toString('hex')}`

t.test('the PostgreSQL migrations have the same versions and names as the SQLite ones', async (t) => {
  t.same(PG_MIGRATIONS.map((m) => [m.version, m.name]), SQLITE_MIGRATIONS.map((m) => [m.version, m.name]))
})

t.test('the audit log refuses UPDATE, DELETE and TRUNCATE even through raw SQL', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const s = await open(db.url)
  t.teardown(() => s.close())
  await write(s, (tx) => tx.appendAuditRow({
    seq: 1, at: 1, actor: 'operator:o1', action: 'key.create', target: 'key:k', outcome: 'ok', reason: 'r',
    detailsJson: '{}', prevHash: bytes(0), hash: bytes(1), mac: null,
  }))
  await t.rejects(raw(db.url, "UPDATE audit_log SET reason = 'x'"), /append-only/)
  await t.rejects(raw(db.url, 'DELETE FROM audit_log'), /append-only/)
  await t.rejects(raw(db.url, 'TRUNCATE audit_log'), /append-only/)
  await t.rejects(raw(db.url, 'DELETE FROM audit_log WHERE seq = 99'), /append-only/, 'even when no row matches')
  t.same(await raw(db.url, 'SELECT seq FROM audit_log'), [{ seq: 1 }])
})

t.test('read-only open refuses a schema that holds no keymesh store', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  await rejectsCode(t, open(db.url, { readOnly: true }), 'CP_ERR_STORE', new RegExp(`schema ${db.schema} at .* is not an initialised keymesh store`))
  t.same(await raw(db.url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"), [], 'and creates nothing')
})

t.test('a read sees one snapshot while another replica commits', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const [s, other] = await Promise.all([open(db.url), open(db.url)])
  t.teardown(() => Promise.all([s.close(), other.close()]))
  await s.read(async (r) => {
    t.equal(await r.getMeta('x'), null)
    await write(other, (tx) => tx.putMeta('x', bytes(1)))
    t.equal(await r.getMeta('x'), null, 'the snapshot does not move')
  })
  t.same(await s.read((r) => r.getMeta('x')), bytes(1), 'a new read sees the commit')
})

t.test('an unreachable server is CP_ERR_STORE naming the URL without its password', async (t) => {
  const err = await openPgStore({ url: 'postgres://keymesh:s3cret-pw@127.0.0.1:1/test?schema=km', connectTimeoutMs: 2000 }).then(
    () => t.fail('opened a store on a closed port'),
    (e: unknown) => e,
  )
  t.match(err, { code: 'CP_ERR_STORE', message: /database unreachable at postgres:\/\/keymesh:\*\*\*@127\.0\.0\.1:1\/test: .*ECONNREFUSED/ })
  t.notMatch(String((err as Error).message), /s3cret/)
  t.notMatch(JSON.stringify(err), /s3cret/)
})

t.test('connections the server kills are replaced: the store recovers by itself', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const app = appName()
  const idleErrors: Error[] = []
  const s = await open(db.url, { applicationName: app, onIdleError: (e) => idleErrors.push(e) })
  t.teardown(() => s.close())
  await Promise.all([s.read((r) => r.getMeta('a')), s.read((r) => r.getMeta('b')), write(s, (tx) => tx.putMeta('c', bytes(3)))])

  t.ok((await kill(app)) >= 1, 'the pool had idle connections to kill')
  await until(() => idleErrors.length > 0, 'the pool to report its dead idle connections')
  await write(s, (tx) => tx.putMeta('after', bytes(1)))
  t.same(await s.read((r) => r.getMeta('after')), bytes(1), 'the next transaction works on a new connection')

  await rejectsCode(t, write(s, async (tx) => {
    await tx.putMeta('lost', bytes(2))
    await kill(app)
    await tx.putMeta('lost-too', bytes(2))
  }), 'CP_ERR_STORE', /database unreachable at postgres:\/\//)
  t.same(await s.read(async (r) => [await r.getMeta('lost'), await r.getMeta('lost-too')]), [null, null],
    'the interrupted transaction left nothing behind')
  await write(s, (tx) => tx.putMeta('again', bytes(4)))
  t.same(await s.read((r) => r.getMeta('again')), bytes(4))
})

t.test('close ends every connection of the pool', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const app = appName()
  const s = await open(db.url, { applicationName: app })
  await Promise.all([s.read((r) => r.getMeta('a')), s.read((r) => r.getMeta('b'))])
  t.ok((await connections(app)) >= 1)
  await s.close()
  // The server notices a closed connection a moment after the client is gone.
  for (let i = 0; i < 200 && (await connections(app)) > 0; i++) await new Promise((r) => setImmediate(r))
  t.equal(await connections(app), 0)
  t.equal(s.backend, 'postgres')
  t.equal(s.location.schema, db.schema)
})

t.test('every connection has TCP keepalives after 10 s, a 5 s connect limit, and asks the server for keepalives', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const config = pgConnection(location, 'km-test', ['-c search_path=x'])
  t.match(config, { application_name: 'km-test', keepAlive: true, keepAliveInitialDelayMillis: 10_000, connectionTimeoutMillis: 5_000 })
  t.equal(config.options, `-c search_path=x ${PG_SERVER_KEEPALIVES}`, 'server keepalives next to the other settings')
  const c = new pg.Client(config)
  await c.connect()
  try {
    const show = async (name: string) => (await c.query<Record<string, string>>(`SHOW ${name}`)).rows[0]?.[name]
    t.same([await show('tcp_keepalives_idle'), await show('tcp_keepalives_interval'), await show('tcp_keepalives_count')], ['10', '5', '3'],
      'the server probes a silent client after 10 s, every 5 s, 3 times: its session (and locks) end within ~25 s')
    t.equal(await show('search_path'), 'x')
  } finally {
    await c.end()
  }
})

t.test('an erasure is followed by a rewrite of key_versions; one a reader blocks is retried after the next write', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const s = await open(db.url)
  t.teardown(() => s.close())
  await write(s, async (tx) => {
    await tx.insertKey(aeadKey('k'))
    await tx.insertKeyVersion(keyVersion('k', 1))
    await tx.insertKeyVersion(keyVersion('k', 2))
  })
  // VACUUM FULL writes the table into a new file: its filenode changes.
  const node = async (): Promise<unknown> => (await raw(db.url, "SELECT pg_relation_filenode('key_versions') AS n"))[0]?.n
  const first = await node()
  await write(s, (tx) => tx.updateKeyVersion('k', 1, { state: 'destroyed', sealedMaterial: null }))
  const second = await node()
  t.not(second, first, 'the erasure rewrote the table')
  t.equal(s.scrubPending, false)
  await write(s, (tx) => tx.putMeta('x', bytes(1)))
  t.equal(await node(), second, 'a write that erases nothing leaves it alone')

  const reader = new pg.Client({ connectionString: TEST_PG_URL, options: `-c search_path=${db.schema}` })
  await reader.connect()
  t.teardown(() => reader.end().catch(() => undefined))
  await reader.query('BEGIN')
  await reader.query('SELECT count(*) FROM key_versions')
  await write(s, (tx) => tx.updateKeyVersion('k', 2, { state: 'destroyed', sealedMaterial: null }))
  t.equal(s.scrubPending, true, 'the erasure committed; the rewrite gave up on its lock and is pending')
  t.equal(await node(), second)
  await reader.query('COMMIT')
  await write(s, (tx) => tx.putMeta('y', bytes(2)))
  t.equal(s.scrubPending, false, 'the next write ran it')
  t.not(await node(), second)
  t.same(await raw(db.url, 'SELECT count(*)::int AS n FROM key_versions WHERE material IS NOT NULL'), [{ n: 0 }])
})

