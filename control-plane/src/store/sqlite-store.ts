// The embedded Store on SQLite (better-sqlite3): one connection to DIR/keymesh.db
// in WAL mode with synchronous=FULL, so an acknowledged commit survives kill -9
// and power loss. The driver is synchronous but transactions take async
// callbacks, so an in-process mutex keeps two transactions from interleaving on
// the one connection; BEGIN IMMEDIATE takes the write lock up front, so a second
// process waits (busy_timeout) instead of failing half-way through.
//
// Destroyed means gone: secure_delete zeroes freed cells and pages in the
// database file, and a transaction that erased key material is followed by a
// WAL checkpoint in TRUNCATE mode, so no older frame of the page survives in
// DIR/keymesh.db-wal either (the -shm file holds only the WAL's index).
// journal_size_limit bounds what a WAL left behind by a busy checkpoint keeps.
//
// The page cache is bounded explicitly (cache_size): better-sqlite3 builds SQLite
// with a 16 MB default, and every KMS call appends an audit entry, so the cache
// fills with audit pages as the log grows and the control plane's RSS climbs by
// that much over the first tens of minutes of steady load (bench:soak, issue 17),
// long after start-up. The pages calls read (keys, grants, the audit head) are few.
import { AsyncLocalStorage } from 'node:async_hooks'
import { closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs'
import { join } from 'node:path'

import { isKeymeshError } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import { SQLITE_MIGRATIONS, type Migration } from './migrations.js'
import { createMutex } from './mutex.js'
import { Database, mapSqliteError, type SqliteDatabase, type SqliteStatement } from './sqlite-driver.js'
import { quickCheck } from './sqlite-integrity.js'
import { SqliteTx } from './sqlite-tx.js'
import { reportRead, reportWrite, type IntegrityRun, type Store, type StoreHealth, type StoreObserver, type StoreReader, type StoreTx } from './store.js'

export const SQLITE_FILE = 'keymesh.db'
export const DEFAULT_BUSY_TIMEOUT_MS = 5000
/**
 * How long the checkpoint after an erasure waits for another process's readers.
 * The driver is synchronous, so a long wait would stall the whole control plane;
 * a checkpoint that gives up is retried after the next write instead.
 */
export const SCRUB_BUSY_TIMEOUT_MS = 200
/** The WAL is truncated to at most this size after each checkpoint. */
export const DEFAULT_JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
/** The page cache of the connection, KiB: small, so the process reaches its steady size within minutes. */
export const DEFAULT_CACHE_KIB = 4096

export interface SqliteStoreOptions {
  /** The data directory; the database is DIR/keymesh.db. Created (0700) unless read-only. */
  readonly dir: string
  /** Open an existing store without writing (offline `audit verify`); applies no migrations. */
  readonly readOnly?: boolean
  /** How long to wait for another process's write lock before CP_ERR_STORE. */
  readonly busyTimeoutMs?: number
  /** Clock for schema_migrations.applied_at. */
  readonly now?: () => number
  /** Migrations to apply; tests pass their own, everyone else takes the default. */
  readonly migrations?: readonly Migration[]
  /** Bytes the WAL file is cut back to after a checkpoint (journal_size_limit). */
  readonly journalSizeLimit?: number
  /** The page cache's bound, KiB (cache_size); default DEFAULT_CACHE_KIB. */
  readonly cacheKiB?: number
}

// Which store (if any) the current async call chain is inside a transaction of.
const current = new AsyncLocalStorage<SqliteStore>()

export class SqliteStore implements Store {
  readonly backend = 'sqlite'
  readonly #db: SqliteDatabase
  readonly #cache = new Map<string, SqliteStatement>()
  readonly #mutex = createMutex()
  readonly #busyTimeoutMs: number
  #closed = false
  // An erasure whose WAL checkpoint could not finish (another process was
  // reading): retried after each later write transaction until it does.
  #scrubPending = false
  #observer: StoreObserver | undefined

  /** The database file's health: whether it is still the file at its path, and its integrity check. */
  readonly health: StoreHealth

  constructor(db: SqliteDatabase, readonly readOnly: boolean, busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS) {
    this.#db = db
    this.#busyTimeoutMs = Math.floor(busyTimeoutMs)
    const file = db.name
    const opened = fileIdentity(file)
    this.health = {
      file,
      fileProblem: () => fileProblem(file, opened),
      integrityCheck: (): IntegrityRun => quickCheck(file, { busyTimeoutMs: this.#busyTimeoutMs }),
    }
  }

  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (this.readOnly) return reportWrite(Promise.reject(cpError('CP_ERR_STORE', 'the store was opened read-only')), this.#observer)
    return reportWrite(this.#run('BEGIN IMMEDIATE', fn), this.#observer)
  }

  read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T> {
    // A deferred BEGIN gives a consistent snapshot (WAL) without taking the write lock.
    return reportRead(this.#run('BEGIN', fn), this.#observer)
  }

  observe(observer: StoreObserver | undefined): void {
    this.#observer = observer
  }

  /** The connection's durability settings, for start-up logs and tests. */
  settings(): { journalMode: string; synchronous: number; foreignKeys: number; busyTimeoutMs: number; secureDelete: number; journalSizeLimit: number; cacheKiB: number; scrubPending: boolean } {
    const p = (name: string): unknown => this.#db.pragma(name, { simple: true })
    return {
      journalMode: String(p('journal_mode')),
      synchronous: Number(p('synchronous')),
      foreignKeys: Number(p('foreign_keys')),
      busyTimeoutMs: Number(p('busy_timeout')),
      secureDelete: Number(p('secure_delete')),
      journalSizeLimit: Number(p('journal_size_limit')),
      // A negative cache_size is in KiB.
      cacheKiB: -Number(p('cache_size')),
      scrubPending: this.#scrubPending,
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const release = await this.#mutex.acquire()
    try {
      this.#db.close()
    } finally {
      release()
    }
  }

  async #run<T>(begin: string, fn: (tx: SqliteTx) => Promise<T>): Promise<T> {
    if (current.getStore() === this) {
      throw cpError('CP_ERR_STORE', 'transaction started inside a transaction; pass the open transaction down instead')
    }
    if (this.#closed) throw cpError('CP_ERR_STORE', 'the store is closed')
    const release = await this.#mutex.acquire()
    try {
      if (!this.#db.open) throw cpError('CP_ERR_STORE', 'the store is closed')
      this.#exec(begin)
      const tx = new SqliteTx(this.#db, this.#cache)
      try {
        const result = await current.run(this, () => fn(tx))
        this.#exec('COMMIT')
        if (tx.erasedMaterial || (this.#scrubPending && begin !== 'BEGIN')) this.#scrub()
        return result
      } catch (e) {
        if (this.#db.inTransaction) this.#rollback(e)
        throw e
      } finally {
        tx.finish()
      }
    } finally {
      release()
    }
  }

  /**
   * Copies the WAL into the database file and truncates it to zero bytes, so the
   * frames that held erased material are gone. Never throws: the transaction
   * has committed; a checkpoint blocked by another process's reader stays pending.
   */
  #scrub(): void {
    try {
      this.#db.pragma(`busy_timeout = ${Math.min(this.#busyTimeoutMs, SCRUB_BUSY_TIMEOUT_MS)}`)
      const [r] = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[]
      this.#scrubPending = r?.busy !== 0
    } catch {
      this.#scrubPending = true
    } finally {
      this.#db.pragma(`busy_timeout = ${this.#busyTimeoutMs}`)
    }
  }

  #exec(sql: string): void {
    try {
      this.#db.exec(sql)
    } catch (e) {
      throw mapSqliteError(e)
    }
  }

  #rollback(original: unknown): void {
    try {
      this.#db.exec('ROLLBACK')
    } catch (e) {
      // The connection is in an unknown state; refuse further use rather than guess.
      this.#closed = true
      throw cpError('CP_ERR_STORE', 'rollback failed; the store was closed', { cause: new AggregateError([original, e]) })
    }
  }
}

/** Opens (and, unless read-only, creates and migrates) the SQLite store under `dir`. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const file = join(options.dir, SQLITE_FILE)
  const readOnly = options.readOnly === true
  const migrations = options.migrations ?? SQLITE_MIGRATIONS
  if (readOnly && !existsSync(file)) throw cpError('CP_ERR_STORE', `no keymesh store at ${file}`)
  if (!readOnly) mkdirSync(options.dir, { recursive: true, mode: 0o700 })

  let db: SqliteDatabase
  try {
    // The database holds sealed key material and token hashes: owner-only. SQLite
    // gives its -wal and -shm files the database file's mode, so creating the file
    // 0600 before SQLite first opens it covers all three.
    if (!readOnly) closeSync(openSync(file, 'a', 0o600))
    db = new Database(file, { readonly: readOnly, fileMustExist: readOnly, timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS })
  } catch (e) {
    throw cpError('CP_ERR_STORE', `cannot open ${file}`, { cause: e })
  }
  try {
    db.pragma('foreign_keys = ON')
    // Deleted and overwritten content is zeroed, so a destroyed version's sealed
    // material does not linger in free space of the database file.
    db.pragma('secure_delete = ON')
    db.pragma(`busy_timeout = ${Math.floor(options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS)}`)
    db.pragma(`cache_size = -${Math.max(1, Math.floor(options.cacheKiB ?? DEFAULT_CACHE_KIB))}`)
    if (!readOnly) {
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = FULL')
      db.pragma(`journal_size_limit = ${Math.max(0, Math.floor(options.journalSizeLimit ?? DEFAULT_JOURNAL_SIZE_LIMIT))}`)
      migrate(db, migrations, options.now ?? Date.now)
    } else {
      checkVersion(file, schemaVersion(db), migrations)
    }
  } catch (e) {
    db.close()
    throw openError(file, e)
  }
  return new SqliteStore(db, readOnly, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS)
}

/** What an operator does about a damaged database file. */
export function corruptStoreFix(file: string): string {
  return `stop the control plane, move ${file} and its -wal and -shm files aside, and restore the newest backup into the data directory (keymesh backup restore FILE --data-dir DIR), or salvage what it holds with sqlite3 ${file} .recover`
}

/** A failure to open or migrate `file`, naming the file (and, for a damaged one, the fix). */
function openError(file: string, e: unknown): Error {
  if (isKeymeshError(e)) return e
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code === 'string' && /^SQLITE_(CORRUPT|NOTADB)/.test(code)) {
    return cpError('CP_ERR_STORE_CORRUPT', `${file} cannot be read (${code}): ${corruptStoreFix(file)}`, { cause: e })
  }
  const mapped = mapSqliteError(e)
  return cpError(mapped.code as 'CP_ERR_STORE', `${file}: ${mapped.detail ?? mapped.message}`, { cause: e })
}

interface FileIdentity {
  readonly dev: number
  readonly ino: number
}

function fileIdentity(file: string): FileIdentity | undefined {
  try {
    const st = statSync(file)
    return { dev: st.dev, ino: st.ino }
  } catch {
    return undefined // ':memory:', or gone already: nothing to compare with
  }
}

/**
 * Null while `file` is the file opened as `opened`. A database file removed or
 * replaced under an open connection still takes writes, into an inode that the
 * next start will not open: every write from then on would be lost.
 */
function fileProblem(file: string, opened: FileIdentity | undefined): string | null {
  if (opened === undefined) return null
  let now: FileIdentity
  try {
    now = statSync(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return null // cannot look: say nothing rather than guess
    return `${file} was removed while the control plane had it open: what it writes now is lost at the next start; put the file back or restore a backup, then restart`
  }
  if (now.dev !== opened.dev || now.ino !== opened.ino) return `${file} was replaced while the control plane had it open: what it writes goes to the old file; restart it to use the new one`
  return null
}

function latest(migrations: readonly Migration[]): number {
  return migrations.reduce((m, x) => Math.max(m, x.version), 0)
}

/** The highest applied migration, 0 for a new file; throws when the file is not a keymesh store. */
function schemaVersion(db: SqliteDatabase): number {
  const table = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get()
  if (table === undefined) return 0
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }
  return row.v ?? 0
}

function checkVersion(file: string, found: number, migrations: readonly Migration[]): void {
  const known = latest(migrations)
  if (found > known) {
    throw cpError(
      'CP_ERR_STORE',
      `${file} has schema version ${found}, newer than this keymesh understands (${known}); run a newer keymesh`,
    )
  }
  if (found === 0) throw cpError('CP_ERR_STORE', `${file} is not an initialised keymesh store`)
}

// Applies every migration newer than the file's version, each with its record in
// schema_migrations, all in one IMMEDIATE transaction so two processes starting
// on the same directory migrate once. Foreign keys are off meanwhile, as SQLite's
// procedure for rebuilding a table requires (sqlite.org/lang_altertable.html §7:
// dropping the old table would otherwise cascade into its children), and every
// reference is checked before the commit.
function migrate(db: SqliteDatabase, migrations: readonly Migration[], now: () => number): void {
  db.pragma('foreign_keys = OFF')
  db.exec('BEGIN IMMEDIATE')
  try {
    db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)')
    const found = schemaVersion(db)
    if (found > latest(migrations)) checkVersion(db.name, found, migrations)
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (m.version <= found) continue
      db.exec(m.sql)
      record.run(m.version, m.name, now())
    }
    const orphans = (db.pragma('foreign_key_check') as unknown[]).length
    if (orphans > 0) throw cpError('CP_ERR_STORE', `a migration left ${orphans} rows without the row they refer to`)
    db.exec('COMMIT')
  } catch (e) {
    db.exec('ROLLBACK')
    throw e
  } finally {
    db.pragma('foreign_keys = ON')
  }
}
