// PostgreSQL for tests: the server on 127.0.0.1:5432 (trust auth, database
// `test`, the current OS user), or KEYMESH_TEST_PG. Every test gets a schema of
// its own, dropped when it ends, so runs and parallel test files never see each
// other's tables.
//
// Where no server answers, a test skips with a message saying so; under CI
// (CI set) it fails instead, because CI must run the PostgreSQL tests.
import { randomBytes } from 'node:crypto'
import { userInfo } from 'node:os'
import pg from 'pg'

import { tcpProxy, type TcpProxy } from './tcp-proxy.js'

// The user is spelled out: tap runs tests without USER in the environment, and
// `pg` would then send no user name at all.
const user = encodeURIComponent(process.env.PGUSER ?? process.env.USER ?? userInfo().username)
export const TEST_PG_URL = process.env.KEYMESH_TEST_PG ?? `postgres://${user}@127.0.0.1:5432/test`

// The slice of a tap Test this helper uses. `plan(0, why)` is how a test skips
// itself from inside in tap.
interface Tap {
  teardown(fn: () => unknown): void
  plan(n: number, comment?: string): void
  fail(message: string): void
}

let available: Promise<string | null> | undefined

/** null when the server answers, else why not. Asked once per process. */
export function pgUnavailable(): Promise<string | null> {
  available ??= (async () => {
    const c = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 3000 })
    try {
      await c.connect()
      await c.query('SELECT 1')
      return null
    } catch (e) {
      return (e as Error).message
    } finally {
      await c.end().catch(() => undefined)
    }
  })()
  return available
}

/** Runs one statement on a short-lived connection (schema set-up, raw checks). */
export async function pgExec<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, args: unknown[] = [], schema?: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: TEST_PG_URL, ...(schema ? { options: `-c search_path=${schema}` } : {}) })
  await c.connect()
  try {
    return (await c.query<R>(sql, args)).rows
  } finally {
    await c.end()
  }
}

export interface PgSchema {
  /** A fresh, empty schema name, dropped with everything in it at teardown. */
  readonly schema: string
  /** The server URL with ?schema=NAME: what `--store` takes. */
  readonly url: string
  /** The server URL alone. */
  readonly serverUrl: string
}

/** Schemas older than this were left by a test process that died; no test runs this long. */
const STALE_SCHEMA_SECONDS = 3 * 60 * 60
let sweep: Promise<void> | undefined

async function sweepStaleSchemas(): Promise<void> {
  const rows = await pgExec<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'km\\_test\\_%'`)
  const now = Date.now() / 1000
  for (const { nspname } of rows) {
    const m = /^km_test_([0-9a-z]+)_[0-9a-f]+$/.exec(nspname)
    if (m && now - parseInt(m[1] as string, 36) > STALE_SCHEMA_SECONDS) await pgExec(`DROP SCHEMA IF EXISTS ${nspname} CASCADE`)
  }
}

/**
 * A schema for this test, or null when there is no server (the test is then
 * skipped; under CI it fails). Usage: `const db = await pgSchema(t); if (!db) return`.
 */
export async function pgSchema(t: Tap): Promise<PgSchema | null> {
  const why = await pgUnavailable()
  if (why !== null) {
    const message = `PostgreSQL at ${TEST_PG_URL} is not answering (${why}); set KEYMESH_TEST_PG to run these tests`
    if (process.env.CI) t.fail(`${message}. CI must run them.`)
    else t.plan(0, message)
    return null
  }
  sweep ??= sweepStaleSchemas().catch(() => undefined)
  await sweep
  // The creation time is in the name, so a later run can tell a schema left by a
  // killed test file (its teardown never ran) from one a running test still uses.
  const schema = `km_test_${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(4).toString('hex')}`
  await pgExec(`CREATE SCHEMA ${schema}`)
  t.teardown(() => pgExec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
  const sep = TEST_PG_URL.includes('?') ? '&' : '?'
  return { schema, url: `${TEST_PG_URL}${sep}schema=${schema}`, serverUrl: TEST_PG_URL }
}

/**
 * The kit's TCP proxy (tcp-proxy.ts) in front of the test server, so a test can take
 * "the database" away and bring it back without touching the real server other
 * tests share; `proxy.via(db.url)` is a store URL through it.
 */
export function pgProxy(t: Tap): Promise<TcpProxy> {
  const target = new URL(TEST_PG_URL)
  return tcpProxy(t, { host: target.hostname, port: Number(target.port || 5432) })
}
