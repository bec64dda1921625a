// The query helpers every repository method goes through, for any SQL back-end.
// SQL is written once, with `?` placeholders; a back-end subclass runs it on
// its driver (SQLite synchronously, PostgreSQL asynchronously: the `*Sql`
// hooks may return a value or a Promise) and maps the driver's errors onto the
// store contract's codes.
//
// The guards live here so every back-end behaves alike: a tx object is dead
// once its transaction has ended, and after a store error inside a
// transaction every further call fails too. PostgreSQL aborts a transaction at
// its first error; making SQLite refuse as well keeps code that "catches and
// carries on" from working on one back-end and failing on the other.
import type { KeymeshError } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import { toBlob, type Row } from './sql-rows.js'

export type MaybePromise<T> = T | Promise<T>

// Parameters per statement in importRows: under SQLite's historical limit (999).
const MAX_PARAMS = 900

const SQL_NAME = /^[a-z_][a-z0-9_]{0,62}$/
function sqlName(name: string): string {
  if (!SQL_NAME.test(name)) throw cpError('CP_ERR_STORE', `${JSON.stringify(name.slice(0, 64))} is not a plain SQL name`)
  return name
}

const bind = (v: unknown): unknown => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? toBlob(v) : v)

export abstract class SqlQueries {
  #state: 'active' | 'failed' | 'finished' = 'active'

  /**
   * Set when this transaction erased key material (a version destroyed, a key
   * deleted): once it commits, the store scrubs the older copies (store.ts).
   */
  erasedMaterial = false

  /**
   * Appended to the SELECT that reads the audit head in `lockAuditHead`:
   * ' FOR UPDATE' where rows must be locked explicitly (PostgreSQL), '' where
   * the write transaction already holds the only write lock (SQLite).
   */
  protected abstract readonly rowLock: string

  protected abstract runSql(sql: string, params: unknown[]): MaybePromise<number>
  protected abstract getSql(sql: string, params: unknown[]): MaybePromise<Row | undefined>
  protected abstract allSql(sql: string, params: unknown[]): MaybePromise<Row[]>
  /** The driver's error as a CP_ERR_CONFLICT / CP_ERR_NOT_FOUND / CP_ERR_STORE. */
  protected abstract mapError(e: unknown): KeymeshError

  /** Called when the transaction ends: a tx kept past its callback must not write outside it. */
  finish(): void {
    this.#state = 'finished'
  }

  protected run(sql: string, ...params: unknown[]): Promise<number> {
    return this.#call(() => this.runSql(sql, params.map(bind)))
  }

  protected get(sql: string, ...params: unknown[]): Promise<Row | undefined> {
    return this.#call(() => this.getSql(sql, params.map(bind)))
  }

  protected all(sql: string, ...params: unknown[]): Promise<Row[]> {
    return this.#call(() => this.allSql(sql, params.map(bind)))
  }

  /** UPDATE with only the fields present in `patch`; an empty patch reports whether the row exists. */
  protected async patch(table: string, columns: Record<string, string>, patch: object, whereSql: string, args: unknown[]): Promise<boolean> {
    const sets: string[] = []
    const values: unknown[] = []
    for (const [field, value] of Object.entries(patch)) {
      const column = columns[field]
      if (column === undefined || value === undefined) continue
      sets.push(`${column} = ?`)
      values.push(value)
    }
    if (sets.length === 0) return (await this.get(`SELECT 1 AS one FROM ${table} WHERE ${whereSql}`, ...args)) !== undefined
    return (await this.run(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${whereSql}`, ...values, ...args)) > 0
  }

  // Whole-table access for copying a store to another back-end (copy.ts). Rows
  // are what the driver returns (numbers, strings, Buffers, nulls), which every
  // back-end binds back unchanged. Names come from copy.ts's table list and the
  // source's own columns; each is checked to be a plain identifier before it
  // reaches SQL.

  /** One page of `table`, ordered by its primary key `key`, after the row whose key is `after`. */
  exportRows(table: string, key: readonly string[], after: readonly unknown[] | null, limit: number): Promise<Row[]> {
    const k = key.map(sqlName).join(', ')
    const from = after === null ? '' : ` WHERE (${k}) > (${key.map(() => '?').join(', ')})`
    return this.all(`SELECT * FROM ${sqlName(table)}${from} ORDER BY ${k} LIMIT ?`, ...(after ?? []), limit)
  }

  /** Inserts rows as exportRows returned them, several per statement; resolves to how many. */
  async importRows(table: string, rows: readonly Row[]): Promise<number> {
    const first = rows[0]
    if (first === undefined) return 0
    const columns = Object.keys(first).map(sqlName)
    const perStatement = Math.max(1, Math.floor(MAX_PARAMS / columns.length))
    const tuple = `(${columns.map(() => '?').join(', ')})`
    let n = 0
    for (let i = 0; i < rows.length; i += perStatement) {
      const chunk = rows.slice(i, i + perStatement)
      const values = chunk.flatMap((r) => columns.map((c) => r[c]))
      n += await this.run(`INSERT INTO ${sqlName(table)} (${columns.join(', ')}) VALUES ${chunk.map(() => tuple).join(', ')}`, ...values)
    }
    return n
  }

  /** How many rows `table` holds (a backup's header counts them in its snapshot). */
  async countRows(table: string): Promise<number> {
    return Number((await this.get(`SELECT COUNT(*) AS n FROM ${sqlName(table)}`))?.n ?? 0)
  }

  /** Removes every row of `table` (a row a migration seeded, before importing over it). */
  clearRows(table: string): Promise<number> {
    return this.run(`DELETE FROM ${sqlName(table)}`)
  }

  async #call<T>(f: () => MaybePromise<T>): Promise<T> {
    if (this.#state === 'finished') throw cpError('CP_ERR_STORE', 'transaction is finished; use the store again')
    if (this.#state === 'failed') throw cpError('CP_ERR_STORE', 'an earlier statement of this transaction failed; it can only roll back')
    try {
      return await f()
    } catch (e) {
      if (this.#state === 'active') this.#state = 'failed'
      throw this.mapError(e)
    }
  }
}
