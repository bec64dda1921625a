// Which store failures mean "the store refuses writes" (readiness flips) and
// which say nothing about it: one row per class of error, from each back-end.
import t from 'tap'

import { cpError } from '../../../control-plane/src/errors.js'
import { mapPgError, poolBusyError } from '../../../control-plane/src/store/pg-errors.js'
import { parsePgUrl } from '../../../control-plane/src/store/pg-url.js'
import { storeFault, type StoreFault } from '../../../control-plane/src/store/store-faults.js'

const location = parsePgUrl('postgres://km:secret@db.example:5432/kms')
const coded = (code: string, message = 'driver says no'): Error => Object.assign(new Error(message), { code })
/** As a back-end hands it on: the driver's error as the cause of a CP_ERR_STORE. */
const store = (cause: unknown): Error => cpError('CP_ERR_STORE', 'failed', { cause })
/** As the audit log hands it on: the store's error as the cause of a CP_ERR_AUDIT. */
const audit = (cause: unknown): Error => cpError('CP_ERR_AUDIT', 'failed', { cause })
const write = (reason: string): StoreFault => ({ code: 'CP_ERR_STORE_WRITE', reason })
const corrupt = (reason: string): StoreFault => ({ code: 'CP_ERR_STORE_CORRUPT', reason })

// pg-pool's own words when every pooled connection is checked out and none comes back in time.
const poolTimeout = (): Error => new Error('timeout exceeded when trying to connect')

const table: readonly [string, unknown, StoreFault | null][] = [
  // SQLite
  ['SQLite disk full', store(coded('SQLITE_FULL')), write('disk full (SQLITE_FULL)')],
  ['SQLite read-only file', store(coded('SQLITE_READONLY_DBMOVED')), write('the database is read-only (SQLITE_READONLY_DBMOVED)')],
  ['SQLite I/O error', store(coded('SQLITE_IOERR_WRITE')), write('I/O error (SQLITE_IOERR_WRITE)')],
  ['SQLite file cannot be opened', store(coded('SQLITE_CANTOPEN')), write('the database file cannot be opened (SQLITE_CANTOPEN)')],
  ['SQLite permission denied', store(coded('SQLITE_PERM')), write('permission denied (SQLITE_PERM)')],
  ['SQLite damaged page', store(coded('SQLITE_CORRUPT')), corrupt('the database is damaged (SQLITE_CORRUPT)')],
  ['SQLite not a database', store(coded('SQLITE_NOTADB')), corrupt('the database is damaged (SQLITE_NOTADB)')],
  ['SQLite unique constraint (a conflict)', store(coded('SQLITE_CONSTRAINT_UNIQUE')), null],
  ['SQLite busy (contention)', store(coded('SQLITE_BUSY')), null],
  // PostgreSQL, by SQLSTATE
  ['PostgreSQL disk full', store(coded('53100')), write('disk full (SQLSTATE 53100)')],
  ['PostgreSQL out of memory', store(coded('53200')), write('the database server is out of resources (SQLSTATE 53200)')],
  ['PostgreSQL too many connections', store(coded('53300')), write('the database server is out of resources (SQLSTATE 53300)')],
  ['PostgreSQL read-only transaction', store(coded('25006')), write('the database is read-only (SQLSTATE 25006)')],
  ['PostgreSQL table gone', store(coded('42P01')), write('the schema or a table is gone (SQLSTATE 42P01)')],
  ['PostgreSQL schema gone', store(coded('3F000')), write('the schema or a table is gone (SQLSTATE 3F000)')],
  ['PostgreSQL permission denied', store(coded('42501')), write('permission denied (SQLSTATE 42501)')],
  ['PostgreSQL I/O error', store(coded('58030')), write('I/O error on the database server (SQLSTATE 58030)')],
  ['PostgreSQL damaged data', store(coded('XX001')), corrupt('the database is damaged (SQLSTATE XX001)')],
  ['PostgreSQL unique violation (a conflict)', store(coded('23505')), null],
  ['PostgreSQL serialization failure (contention)', store(coded('40001')), null],
  ['PostgreSQL lock timeout (contention)', store(coded('55P03')), null],
  // PostgreSQL, the connection
  ['PostgreSQL refused', mapPgError(coded('ECONNREFUSED', 'connect ECONNREFUSED'), location), write('database unreachable (ECONNREFUSED)')],
  ['PostgreSQL backend terminated', mapPgError(coded('57P01'), location), write('database unreachable (SQLSTATE 57P01)')],
  ['PostgreSQL connection exception', store(coded('08006')), write('database unreachable (SQLSTATE 08006)')],
  ['PostgreSQL connection ended (no code)', mapPgError(new Error('Connection terminated unexpectedly'), location), write('database unreachable (connection lost)')],
  ['PostgreSQL new connection timed out', mapPgError(new Error('Connection terminated due to connection timeout'), location), write('database unreachable (connection lost)')],
  // PostgreSQL, this process: every pooled connection busy is not an outage
  ['every pooled connection busy', poolBusyError(4, location, poolTimeout()), null],
  ['every pooled connection busy, under an audit error', audit(poolBusyError(4, location, poolTimeout())), null],
  // Refusals the control plane made itself, and the rest
  ['a writer refused during a known outage (no driver cause)', cpError('CP_ERR_STORE', 'database unreachable at postgres://db/kms: an earlier write could not reach it'), null],
  ['a conflict of our own', cpError('CP_ERR_CONFLICT', 'exists'), null],
  ['a plain error', new Error('no'), null],
  ['not an error', 'a string', null],
  ['nothing', undefined, null],
]

t.test('every class of error has its classification', async (t) => {
  for (const [name, err, expected] of table) t.same(storeFault(err), expected, name)
})

t.test('the driver code is found beneath our own errors, the audit log\'s included', async (t) => {
  t.same(storeFault(audit(store(coded('SQLITE_FULL')))), write('disk full (SQLITE_FULL)'))
  t.same(storeFault(audit(mapPgError(coded('ECONNRESET'), location))), write('database unreachable (ECONNRESET)'))
})

t.test('a cycle of causes ends', async (t) => {
  const a: { cause?: unknown } = {}
  const b = { cause: a }
  a.cause = b
  t.equal(storeFault(a), null)
})

t.test('the reason never carries the driver\'s message', async (t) => {
  for (const [name, err] of table) {
    const fault = storeFault(err)
    if (fault !== null) t.notMatch(fault.reason, /driver says no|secret|db\.example/, name)
  }
})
