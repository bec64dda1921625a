// The query helpers every SQLite repository method goes through: statement
// cache, driver-error mapping, and the guard that makes a transaction object dead
// once its transaction has ended (a tx kept past its callback must not write
// outside it).
import { cpError } from '../errors.js'
import { mapSqliteError, toBlob, type SqlValue, type SqliteDatabase, type SqliteStatement } from './sqlite-driver.js'
import type { Row } from './sqlite-rows.js'

const bind = (v: unknown): SqlValue => (v instanceof Uint8Array ? toBlob(v) : (v as SqlValue))

export abstract class SqliteQueries {
  #active = true

  constructor(
    private readonly db: SqliteDatabase,
    private readonly cache: Map<string, SqliteStatement>,
  ) {}

  /** Called when the transaction ends: a tx kept past its callback must not write outside it. */
  finish(): void {
    this.#active = false
  }

  protected stmt(sql: string): SqliteStatement {
    if (!this.#active) throw cpError('CP_ERR_STORE', 'transaction is finished; use the store again')
    let s = this.cache.get(sql)
    if (!s) {
      s = this.call(() => this.db.prepare(sql))
      this.cache.set(sql, s)
    }
    return s
  }

  protected call<T>(f: () => T): T {
    try {
      return f()
    } catch (e) {
      throw mapSqliteError(e)
    }
  }

  protected run(sql: string, ...params: unknown[]): number {
    const s = this.stmt(sql)
    return this.call(() => s.run(...params.map(bind)).changes)
  }

  protected get(sql: string, ...params: unknown[]): Row | undefined {
    const s = this.stmt(sql)
    return this.call(() => s.get(...params.map(bind)) as Row | undefined)
  }

  protected all(sql: string, ...params: unknown[]): Row[] {
    const s = this.stmt(sql)
    return this.call(() => s.all(...params.map(bind)) as Row[])
  }

  /** UPDATE with only the fields present in `patch`; an empty patch reports whether the row exists. */
  protected patch(table: string, columns: Record<string, string>, patch: object, whereSql: string, args: unknown[]): boolean {
    const sets: string[] = []
    const values: unknown[] = []
    for (const [field, value] of Object.entries(patch)) {
      const column = columns[field]
      if (column === undefined || value === undefined) continue
      sets.push(`${column} = ?`)
      values.push(value)
    }
    if (sets.length === 0) return this.get(`SELECT 1 AS one FROM ${table} WHERE ${whereSql}`, ...args) !== undefined
    return this.run(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${whereSql}`, ...values, ...args) > 0
  }
}
