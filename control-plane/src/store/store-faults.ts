// Which store failures mean "the store refuses writes", as opposed to a write
// the store turned down for what it said (a duplicate name, a missing row) or a
// moment of contention (a serialization failure, every pooled connection
// busy). Readiness (health/write-health.ts) flips on the first and ignores the
// rest, so a conflict answered 409 never takes a control plane
// out of its load balancer, and a full disk always does.
//
// The back-ends keep their driver's error as the cause of a CP_ERR_STORE
// (sqlite-driver.ts, pg-errors.ts), and the audit log keeps the store's error as
// the cause of its CP_ERR_AUDIT, so the chain of causes is walked until a
// driver code is found. The reason names the condition and the driver's code,
// never a message: a back-end's message may name hosts, users or values.
import { isKeymeshError } from '../../../protocol/src/index.js'
import { isConnectionError, isPoolBusy } from './pg-errors.js'

export interface StoreFault {
  /** CP_ERR_STORE_CORRUPT for a damaged database, CP_ERR_STORE_WRITE for the rest. */
  readonly code: 'CP_ERR_STORE_WRITE' | 'CP_ERR_STORE_CORRUPT'
  /** One line without secrets, e.g. "disk full (SQLITE_FULL)". */
  readonly reason: string
}

/** How deep a chain of causes is followed (a cycle must not loop). */
const MAX_CAUSES = 8

const write = (reason: string, code: string): StoreFault => ({ code: 'CP_ERR_STORE_WRITE', reason: `${reason} (${code})` })
const corrupt = (code: string): StoreFault => ({ code: 'CP_ERR_STORE_CORRUPT', reason: `the database is damaged (${code})` })

/** SQLite's primary result codes (sqlite.org/rescode.html) that no retry of the same write will change. */
function sqliteFault(code: string): StoreFault | null {
  if (code === 'SQLITE_FULL') return write('disk full', code)
  if (code.startsWith('SQLITE_READONLY')) return write('the database is read-only', code)
  if (code.startsWith('SQLITE_IOERR')) return write('I/O error', code)
  if (code.startsWith('SQLITE_CANTOPEN')) return write('the database file cannot be opened', code)
  if (code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') return write('permission denied', code)
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return corrupt(code)
  return null
}

/** PostgreSQL SQLSTATEs (postgresql.org/docs/current/errcodes-appendix.html) that mean the same. */
function pgFault(code: string): StoreFault | null {
  const state = `SQLSTATE ${code}`
  if (code === '53100') return write('disk full', state)
  if (code.startsWith('53')) return write('the database server is out of resources', state)
  if (code === '25006') return write('the database is read-only', state)
  if (code === '42P01' || code === '3F000') return write('the schema or a table is gone', state)
  if (code === '42501') return write('permission denied', state)
  if (code.startsWith('58')) return write('I/O error on the database server', state)
  if (code === 'XX001' || code === 'XX002') return corrupt(state)
  return null
}

/** The fault `err` stands for, or null when it says nothing about whether writes work. */
export function storeFault(err: unknown): StoreFault | null {
  let e: unknown = err
  for (let depth = 0; depth < MAX_CAUSES && typeof e === 'object' && e !== null; depth++) {
    // Every pooled connection checked out is this process being busy, not the
    // database being gone, though its cause (pg-pool's connect timeout) reads so.
    if (isPoolBusy(e)) return null
    // Our own errors (CP_ERR_STORE, CP_ERR_AUDIT) wrap the driver's: look beneath.
    // One without a driver cause (a writer refused while an outage is already
    // known, pg-writer-queue.ts) adds nothing to what its cause already said.
    if (isKeymeshError(e)) {
      e = e.cause
      continue
    }
    const code = (e as { code?: unknown }).code
    const text = typeof code === 'string' ? code : ''
    if (text.startsWith('SQLITE_')) return sqliteFault(text)
    // Before the SQLSTATE table: a lost connection has a socket code, a class 08/57P SQLSTATE, or none.
    if (isConnectionError(e)) return write('database unreachable', text === '' ? 'connection lost' : SQLSTATE.test(text) ? `SQLSTATE ${text}` : text)
    if (SQLSTATE.test(text)) return pgFault(text)
    e = (e as { cause?: unknown }).cause
  }
  return null
}

const SQLSTATE = /^[0-9A-Z]{5}$/
