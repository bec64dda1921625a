// The SQLite transaction object: the shared repository (sql-tx.ts) over the one
// better-sqlite3 connection that sqlite-store.ts holds inside BEGIN … COMMIT.
// The driver is synchronous; prepared statements are cached per store.
import type { KeymeshError } from '../../../protocol/src/index.js'
import { mapSqliteError, type SqlValue, type SqliteDatabase, type SqliteStatement } from './sqlite-driver.js'
import type { Row } from './sql-rows.js'
import { SqlTx } from './sql-tx.js'

export class SqliteTx extends SqlTx {
  // BEGIN IMMEDIATE already holds the database's only write lock, so a plain
  // read of the audit head is as good as a row lock.
  protected readonly rowLock = ''

  constructor(
    private readonly db: SqliteDatabase,
    private readonly cache: Map<string, SqliteStatement>,
  ) {
    super()
  }

  protected runSql(sql: string, params: unknown[]): number {
    return this.#stmt(sql).run(...(params as SqlValue[])).changes
  }

  protected getSql(sql: string, params: unknown[]): Row | undefined {
    return this.#stmt(sql).get(...(params as SqlValue[])) as Row | undefined
  }

  protected allSql(sql: string, params: unknown[]): Row[] {
    return this.#stmt(sql).all(...(params as SqlValue[])) as Row[]
  }

  protected mapError(e: unknown): KeymeshError {
    return mapSqliteError(e)
  }

  #stmt(sql: string): SqliteStatement {
    let s = this.cache.get(sql)
    if (!s) {
      s = this.db.prepare(sql)
      this.cache.set(sql, s)
    }
    return s
  }
}
