// The slice of better-sqlite3 the store uses, typed here because the package
// ships no TypeScript declarations (and @types/better-sqlite3 is not a
// dependency). Loaded through createRequire: it is a CommonJS native module.
import { createRequire } from 'node:module'

import { cpError } from '../errors.js'
import type { KeymeshError } from '../../../protocol/src/index.js'

export type SqlValue = string | number | bigint | Buffer | null

export interface SqliteStatement {
  run(...params: SqlValue[]): { changes: number }
  get(...params: SqlValue[]): unknown
  all(...params: SqlValue[]): unknown[]
}

export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  exec(sql: string): void
  pragma(source: string, options?: { simple?: boolean }): unknown
  close(): void
  readonly inTransaction: boolean
  readonly open: boolean
  readonly name: string
}

export type SqliteDatabaseConstructor = new (
  filename: string,
  options?: { readonly?: boolean; fileMustExist?: boolean; timeout?: number },
) => SqliteDatabase

const require = createRequire(import.meta.url)
let driver: SqliteDatabaseConstructor | undefined

/**
 * better-sqlite3's Database, the native module loaded at the first `new`: the
 * control-plane entry exports this, and the CLI's commands that never open a
 * store should not pay for loading it.
 */
export const Database = function Database(filename: string, options?: ConstructorParameters<SqliteDatabaseConstructor>[1]): SqliteDatabase {
  driver ??= require('better-sqlite3') as SqliteDatabaseConstructor
  return new driver(filename, options)
} as unknown as SqliteDatabaseConstructor

/**
 * Turns a driver error into the store contract's codes: a duplicate natural key
 * is a conflict, a dangling reference is "not found", anything else a store
 * failure. The detail carries SQLite's constraint text (table and column names,
 * never values); the driver error stays attached as the cause.
 */
export function mapSqliteError(e: unknown): KeymeshError {
  const code = (e as { code?: unknown } | null)?.code
  const message = e instanceof Error ? e.message : String(e)
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
    return cpError('CP_ERR_CONFLICT', message, { cause: e })
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return cpError('CP_ERR_NOT_FOUND', 'a referenced record does not exist', { cause: e })
  }
  if (typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT')) {
    return cpError('CP_ERR_STORE', message, { cause: e })
  }
  return cpError('CP_ERR_STORE', typeof code === 'string' ? code : undefined, { cause: e })
}
