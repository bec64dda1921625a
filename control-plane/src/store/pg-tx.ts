// The PostgreSQL transaction object: the shared repository (sql-tx.ts) over the
// pool client that pg-store.ts holds inside BEGIN … COMMIT. The SQL is written
// with `?`; here it becomes `$1…$n` once per distinct statement, and runs as a
// named prepared statement, so each connection parses it once (as SQLite's
// statement cache does). notify() is the StoreTx capability SQLite lacks.
import type pg from 'pg'

import type { KeymeshError } from '../../../protocol/src/index.js'
import { mapPgError } from './pg-errors.js'
import type { PgLocation } from './pg-url.js'
import type { Row } from './sql-rows.js'
import { SqlTx } from './sql-tx.js'

interface Prepared {
  readonly name: string
  readonly text: string
}

// Process-wide: the same SQL string gets the same statement name on every
// connection, and a name always stands for one text. The set of statements is
// finite (the repository builds them from fixed parts), so the map stays small.
const prepared = new Map<string, Prepared>()

/** `?` → `$1…$n`. The repository's SQL has no `?` inside string literals. */
export function toPgSql(sql: string): Prepared {
  let p = prepared.get(sql)
  if (!p) {
    let n = 0
    p = { name: `km_${prepared.size + 1}`, text: sql.replace(/\?/g, () => `$${++n}`) }
    prepared.set(sql, p)
  }
  return p
}

export class PgTx extends SqlTx {
  // Writers already run one at a time (the write advisory lock); FOR UPDATE
  // keeps the audit head safe even for a writer that did not take it.
  protected readonly rowLock = ' FOR UPDATE'

  constructor(
    private readonly client: pg.ClientBase,
    private readonly location: PgLocation,
  ) {
    super()
  }

  /**
   * NOTIFY inside the transaction: PostgreSQL holds it until COMMIT and drops it on
   * rollback, so listeners hear of a change exactly when it becomes visible.
   */
  async notify(channel: string, payload: string): Promise<void> {
    await this.get('SELECT pg_notify(?, ?)', channel, payload)
  }

  protected async runSql(sql: string, params: unknown[]): Promise<number> {
    return (await this.#query(sql, params)).rowCount ?? 0
  }

  protected async getSql(sql: string, params: unknown[]): Promise<Row | undefined> {
    return (await this.#query(sql, params)).rows[0]
  }

  protected async allSql(sql: string, params: unknown[]): Promise<Row[]> {
    return (await this.#query(sql, params)).rows
  }

  protected mapError(e: unknown): KeymeshError {
    return mapPgError(e, this.location)
  }

  // One connection runs one query at a time. Callers may start several at once
  // (Promise.all over look-ups, as SQLite allows); pg queues them itself but calls
  // that deprecated and pg 9 will refuse it, so they take turns here.
  #tail: Promise<unknown> = Promise.resolve()

  #query(sql: string, params: unknown[]): Promise<pg.QueryResult<Row>> {
    const { name, text } = toPgSql(sql)
    const run = (): Promise<pg.QueryResult<Row>> => this.client.query<Row>({ name, text, values: params })
    const result = this.#tail.then(run, run)
    this.#tail = result.catch(() => undefined)
    return result
  }
}
