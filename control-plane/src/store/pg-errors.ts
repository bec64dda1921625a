// PostgreSQL errors onto the store contract's codes. Constraint failures are
// worded like SQLite's ("UNIQUE constraint failed: keys.name") so callers and
// tests read the same text from both back-ends; the server's own detail line
// ("Key (name)=(orders) already exists") is never copied, because it carries
// the values. A lost or refused connection is CP_ERR_STORE "database
// unreachable at <url>", with the URL's password hidden.
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import type { PgLocation } from './pg-url.js'

interface PgErrorFields {
  code?: unknown
  message?: unknown
  detail?: unknown
  table?: unknown
  column?: unknown
  constraint?: unknown
}

// Node's socket errors, and the server's "connection exception" (08…),
// "operator intervention" (57P01-57P03: pg_terminate_backend, shutdown,
// starting up), "invalid authorization" (28…) and "no such database" (3D000).
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', '57P01', '57P02', '57P03', '3D000'])
// What `pg` itself throws when a socket ends or a connect times out (no code).
const CONNECTION_MESSAGES = /connection terminated|connection timeout|timeout exceeded when trying to connect|not queryable|client was closed|connection error/i

const fields = (e: unknown): PgErrorFields => (typeof e === 'object' && e !== null ? (e as PgErrorFields) : {})
const text = (v: unknown): string => (typeof v === 'string' ? v : '')

/** Whether `e` means the connection is gone or could not be made (retrying on a new one may work). */
export function isConnectionError(e: unknown): boolean {
  const { code, message } = fields(e)
  const c = text(code)
  return CONNECTION_CODES.has(c) || c.startsWith('08') || c.startsWith('28') || CONNECTION_MESSAGES.test(text(message))
}

// Marks the CP_ERR_STORE a pool answers when every one of its connections is
// checked out and none came back in time (pg-store.ts). Its cause is pg-pool's
// "timeout exceeded when trying to connect", which alone reads like a database
// that does not answer; the mark says the database answers and this process is
// busy, so neither readiness (store-faults.ts) nor the writer queue
// (pg-writer-queue.ts) takes it for an outage.
const POOL_BUSY = Symbol('keymesh.pgPoolBusy')

/** CP_ERR_STORE "all N connections … are busy; try again", marked as such. */
export function poolBusyError(connections: number, location: PgLocation, cause: unknown): KeymeshError {
  const e = cpError('CP_ERR_STORE', `all ${connections} connections to ${location.display} are busy; try again`, { cause })
  Object.defineProperty(e, POOL_BUSY, { value: true })
  return e
}

/** Whether `e` itself (not its causes) is the pool's "every connection is busy". */
export function isPoolBusy(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { [POOL_BUSY]?: unknown })[POOL_BUSY] === true
}

/** The columns of a unique violation, from the server's detail, without the values. */
function uniqueColumns(f: PgErrorFields): string {
  const table = text(f.table)
  const cols = /^Key \((.+?)\)=\(/.exec(text(f.detail))?.[1]
  if (cols === undefined) return text(f.constraint)
  return cols
    .split(', ')
    .map((c) => (table ? `${table}.${c}` : c))
    .join(', ')
}

const decoded = (s: string): string => {
  try {
    return decodeURIComponent(s)
  } catch {
    return s // not percent-encoding after all (e.g. a literal "%zz")
  }
}

/**
 * Removes the passwords of `location` (the URL's own and a `password=` or
 * `sslpassword=` parameter) from a message, in case a driver ever echoes one.
 */
function scrub(message: string, location: PgLocation): string {
  const url = new URL(location.connectionString)
  const secrets = [url.password, url.searchParams.get('password'), url.searchParams.get('sslpassword')]
    .filter((v): v is string => v !== null && v !== '')
    .flatMap((v) => [v, decoded(v), encodeURIComponent(v)])
  return secrets.reduce((m, p) => m.split(p).join('***'), message)
}

/** An error's message for logs, with the passwords of `location` removed. */
export function pgErrorText(e: unknown, location: PgLocation): string {
  return scrub(e instanceof Error ? e.message : String(e), location)
}

/** Maps any error from `pg` (or a socket) onto CP_ERR_CONFLICT / CP_ERR_NOT_FOUND / CP_ERR_STORE. */
export function mapPgError(e: unknown, location: PgLocation): KeymeshError {
  if (isKeymeshError(e)) return e
  const f = fields(e)
  const code = text(f.code)
  if (isConnectionError(e)) {
    // AggregateError (several addresses refused) has an empty message and a code.
    const reason = scrub(text(f.message) || code || String(e), location)
    return cpError('CP_ERR_STORE', `database unreachable at ${location.display}: ${reason}`, { cause: e })
  }
  switch (code) {
    case '23505':
      return cpError('CP_ERR_CONFLICT', `UNIQUE constraint failed: ${uniqueColumns(f)}`, { cause: e })
    case '23503':
      return cpError('CP_ERR_NOT_FOUND', 'a referenced record does not exist', { cause: e })
    case '23514':
      return cpError('CP_ERR_STORE', `CHECK constraint failed: ${text(f.constraint)}`, { cause: e })
    case '23502':
      return cpError('CP_ERR_STORE', `NOT NULL constraint failed: ${text(f.table)}.${text(f.column)}`, { cause: e })
  }
  if (code === '') return cpError('CP_ERR_STORE', scrub(text(f.message), location) || undefined, { cause: e })
  // Data exceptions (22…) may quote the offending value; keep only the code.
  if (code.startsWith('22')) return cpError('CP_ERR_STORE', `SQLSTATE ${code}`, { cause: e })
  return cpError('CP_ERR_STORE', `${scrub(text(f.message), location)} (SQLSTATE ${code})`, { cause: e })
}
