// PostgreSQL for tests: the server on 127.0.0.1:5432 (trust auth, database
// `test`), or KEYMESH_TEST_PG. Every test gets a schema of its own, dropped when
// it ends, so runs and parallel test files never see each other's tables.
//
// Where no server answers, a test skips with a message saying so; under CI
// (CI set) it fails instead, because CI must run the PostgreSQL tests.
import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const TEST_PG_URL = process.env.KEYMESH_TEST_PG ?? 'postgres://127.0.0.1:5432/test'

interface Tap {
  teardown(fn: () => unknown): void
  skip(message: string): void
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

/**
 * A schema for this test, or null when there is no server (the test is then
 * skipped; under CI it fails). Usage: `const db = await pgSchema(t); if (!db) return`.
 */
export async function pgSchema(t: Tap): Promise<PgSchema | null> {
  const why = await pgUnavailable()
  if (why !== null) {
    const message = `PostgreSQL at ${TEST_PG_URL} is not answering (${why}); set KEYMESH_TEST_PG to run these tests`
    if (process.env.CI) t.fail(`${message}. CI must run them.`)
    else t.skip(message)
    return null
  }
  const schema = `km_test_${randomBytes(6).toString('hex')}`
  await pgExec(`CREATE SCHEMA ${schema}`)
  t.teardown(() => pgExec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
  const sep = TEST_PG_URL.includes('?') ? '&' : '?'
  return { schema, url: `${TEST_PG_URL}${sep}schema=${schema}`, serverUrl: TEST_PG_URL }
}
