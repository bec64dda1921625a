// The Store on PostgreSQL (`pg`), for several control-plane replicas sharing one
// database. Its tables live in the schema named by the URL (pg-url.ts); every
// connection of the pool has that schema as its search_path.
//
// How the contract holds across replicas:
//   - A write transaction takes pg_advisory_xact_lock(installation, write) as
//     its first statement, so writers run one at a time across every replica,
//     exactly like SQLite's BEGIN IMMEDIATE: no serialisation failures, no
//     retry loop. They run at READ COMMITTED, so each statement sees everything
//     committed before the lock was granted. Within one process writers also
//     queue on a FIFO mutex first, so they start in order and hold at most one
//     pool connection between them (the rest stay free for reads); that queue
//     refuses new writers at once while the database does not answer
//     (pg-writer-queue.ts).
//   - Every connection has TCP keepalives after 10 s idle and a 5 s connect
//     limit, and asks the server for keepalives of its own (pgConnection).
//   - A read runs at REPEATABLE READ READ ONLY: one consistent snapshot, no lock.
//   - A connection that fails is released with its error, so the pool drops it
//     and opens a fresh one next time: the store recovers by itself when the
//     server comes back. A transaction whose BEGIN fails on a dead pooled
//     connection (killed while idle) retries on another; nothing has run yet.
//   - A committed transaction that erased key material is followed by VACUUM
//     FULL key_versions on the same connection: the table is rewritten into a
//     new file and the old one removed, so no dead row version of the material
//     is left in it. A plain VACUUM is not enough: it frees the dead version's
//     space but does not clear it, and page compaction had already left copies
//     of the bytes in free space (test/security/destroyed-material.test.ts
//     found them). It holds an exclusive lock on key_versions for as long as the
//     rewrite takes (milliseconds for thousands of versions) and waits at most
//     VACUUM_LOCK_TIMEOUT_MS for it; one that cannot run is retried after the
//     next write. What remains is named in docs/operations.md (WAL segments,
//     backups, replicas' copies).
import { AsyncLocalStorage } from 'node:async_hooks'
import pg from 'pg'

import { isKeymeshError } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import type { Migration } from './migrations.js'
import { isConnectionError, isPoolBusy, mapPgError, poolBusyError } from './pg-errors.js'
import { PG_MIGRATIONS } from './pg-migrations.js'
import { preparePgSchema } from './pg-schema.js'
import { PgTx } from './pg-tx.js'
import { WriterQueue } from './pg-writer-queue.js'
import { PG_LOCKS, parsePgUrl, type PgLocation } from './pg-url.js'
import { reportRead, reportWrite, type Store, type StoreObserver, type StoreReader, type StoreTx } from './store.js'

export const DEFAULT_PG_POOL_SIZE = 8
export const DEFAULT_PG_CONNECT_TIMEOUT_MS = 5_000
/** Write transactions that may wait for their turn in one process before new ones are refused. */
export const DEFAULT_PG_MAX_WAITING_WRITERS = 1_000
/** Idle time after which TCP keepalive probes start on every connection (the OS default is ~2 h). */
export const PG_KEEPALIVE_DELAY_MS = 10_000
/**
 * Keepalives the SERVER sends (seconds): it ends the session of a client that
 * vanished without a reset (host or network gone) within ~25 s, and with it the
 * session's advisory locks (the scheduler lease, the write lock) and its LISTEN.
 */
export const PG_SERVER_KEEPALIVES = '-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3'

/**
 * What every connection keymesh opens to PostgreSQL shares: a name in
 * pg_stat_activity, TCP keepalives after 10 s idle, a bounded connect, and the
 * server's keepalives (plus `options`, server settings as `-c name=value`).
 */
export function pgConnection(location: PgLocation, applicationName: string, options: readonly string[] = []): pg.ClientConfig {
  return {
    connectionString: location.connectionString,
    application_name: applicationName,
    keepAlive: true,
    keepAliveInitialDelayMillis: PG_KEEPALIVE_DELAY_MS,
    connectionTimeoutMillis: DEFAULT_PG_CONNECT_TIMEOUT_MS,
    options: [...options, PG_SERVER_KEEPALIVES].join(' '),
  }
}
export const DEFAULT_PG_LOCK_TIMEOUT_MS = 30_000
/** How long the rewrite after an erasure waits for its lock on key_versions, so it never stalls the KMS behind a long reader. */
export const VACUUM_LOCK_TIMEOUT_MS = 2_000
export const DEFAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000

export interface PgStoreOptions {
  /** postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME] (see pg-url.ts). */
  readonly url: string
  /** Check the schema without migrating, and refuse write transactions. */
  readonly readOnly?: boolean
  /**
   * Clock for schema_migrations.applied_at and for how long a writer has waited for its
   * connection (a test's); by default the wall clock for the first, elapsed time (monotonic) for the second.
   */
  readonly now?: () => number
  /** Migrations to apply; tests pass their own, everyone else takes the default. */
  readonly migrations?: readonly Migration[]
  /** Connections in the pool. */
  readonly poolSize?: number
  /** How long to wait for a connection (a new one, or a free one from the pool) before CP_ERR_STORE. */
  readonly connectTimeoutMs?: number
  /** Write transactions that may wait for their turn in this process; more are refused at once (pg-writer-queue.ts). */
  readonly maxWaitingWriters?: number
  /** How long a transaction waits for a lock (another replica's write transaction) before CP_ERR_STORE. */
  readonly lockTimeoutMs?: number
  /**
   * The server ends a session left idle inside a transaction this long, so a
   * replica that froze (not died) mid-transaction cannot hold the write lock
   * for ever; a dead one's connection closes at once.
   */
  readonly idleInTransactionTimeoutMs?: number
  /** application_name of the connections, as pg_stat_activity shows them. */
  readonly applicationName?: string
  /** Told about errors on idle connections (the pool has already dropped them). */
  readonly onIdleError?: (err: Error) => void
}

// Per-pool type parsers (the global pg.types is left alone): BIGINT columns hold
// milliseconds and counters, well inside Number's exact range; BYTEA stays a
// Buffer for sql-rows.ts to copy.
const INT8_OID = 20
const parseInt8 = (v: string): number => Number(v)
const PG_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
}

interface Lease {
  readonly client: pg.PoolClient
  /** Back to the pool; with an error (given, or seen on the connection) the pool drops it. */
  release(err?: Error): void
}

/** A whole, non-negative number of milliseconds for a server setting. */
const ms = (n: number): number => Math.max(0, Math.floor(n))

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)))

/** Whether a failure to begin (mapped by mapPgError, cause attached) means the database did not answer. */
const isUnreachable = (e: unknown): boolean => isKeymeshError(e) && !isPoolBusy(e) && isConnectionError(e.cause)

/** How many connections of a pool are checked out (connected, in use). */
interface LeaseCount {
  n: number
}

/** A pool client watched for connection loss until it is released. */
async function leaseClient(pool: pg.Pool, location: PgLocation, leases: LeaseCount): Promise<Lease> {
  let client: pg.PoolClient
  try {
    client = await pool.connect()
  } catch (e) {
    // Every connection checked out and none returned in time is this process
    // being busy, not the database being gone: not an outage, not worth a retry.
    // A full pool with a connection still being made is not that: the database
    // has not answered it (pg-pool's timeout reads the same in both cases).
    const connecting = pool.totalCount - pool.idleCount - leases.n
    if (pool.totalCount >= (pool.options.max ?? 0) && connecting <= 0) throw poolBusyError(pool.totalCount, location, e)
    throw mapPgError(e, location)
  }
  leases.n++
  // A connection lost while checked out is reported as an 'error' event (as
  // well as failing the query in flight); without a listener it would crash
  // the process.
  let lost: Error | undefined
  const onError = (e: Error): void => void (lost ??= e)
  let released = false
  client.on('error', onError)
  return {
    client,
    release(err) {
      client.off('error', onError)
      if (!released) leases.n--
      released = true
      client.release(err ?? lost)
    },
  }
}

// Which store (if any) the current async call chain is inside a transaction of.
const current = new AsyncLocalStorage<PgStore>()

export class PgStore implements Store {
  readonly backend = 'postgres'
  readonly #pool: pg.Pool
  readonly #leases: LeaseCount = { n: 0 }
  readonly #writers: WriterQueue
  readonly #running = new Set<Promise<unknown>>()
  readonly #beginAttempts: number
  #closed = false
  #closing: Promise<void> | undefined
  // An erasure whose rewrite could not run (lock timeout): retried after the next write.
  #vacuumPending = false
  #observer: StoreObserver | undefined

  constructor(
    pool: pg.Pool,
    /** Where the store lives, for code that opens its own connections there (LISTEN, leases). */
    readonly location: PgLocation,
    readonly readOnly: boolean,
    o: { readonly poolSize: number; readonly connectTimeoutMs: number; readonly maxWaitingWriters: number; readonly now: () => number },
  ) {
    this.#pool = pool
    // Every pooled connection may have died while idle; one more reaches a new one.
    this.#beginAttempts = o.poolSize + 1
    this.#writers = new WriterQueue({ maxWaiting: o.maxWaitingWriters, connectTimeoutMs: o.connectTimeoutMs, now: o.now, display: location.display })
  }

  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (this.readOnly) return reportWrite(Promise.reject(cpError('CP_ERR_STORE', 'the store was opened read-only')), this.#observer)
    return reportWrite(this.#track(this.#run('write', fn)), this.#observer)
  }

  read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T> {
    return reportRead(this.#track(this.#run('read', fn)), this.#observer)
  }

  observe(observer: StoreObserver | undefined): void {
    this.#observer = observer
  }

  /** Waits for every running transaction, then closes the pool; later calls reject. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true
      await Promise.allSettled([...this.#running])
      await this.#pool.end()
    })()
    return this.#closing
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#running.add(p)
    const done = (): void => void this.#running.delete(p)
    p.then(done, done)
    return p
  }

  async #run<T>(mode: 'write' | 'read', fn: (tx: PgTx) => Promise<T>): Promise<T> {
    if (current.getStore() === this) {
      throw cpError('CP_ERR_STORE', 'transaction started inside a transaction; pass the open transaction down instead')
    }
    if (this.#closed) throw cpError('CP_ERR_STORE', 'the store is closed')
    const { connection: lease, release } =
      mode === 'write' ? await this.#writers.enter(() => this.#begin('write'), isUnreachable) : { connection: await this.#begin('read'), release: undefined }
    try {
      if (mode === 'write') await this.#takeWriteLock(lease)
      const tx = new PgTx(lease.client, this.location)
      let broken: Error | undefined
      try {
        const result = await current.run(this, () => fn(tx))
        await this.#exec(lease.client, 'COMMIT')
        if (mode === 'write' && (tx.erasedMaterial || this.#vacuumPending)) await this.#vacuum(lease.client)
        return result
      } catch (e) {
        broken = await this.#rollback(lease.client)
        throw e
      } finally {
        tx.finish()
        lease.release(broken)
      }
    } finally {
      release?.()
    }
  }

  /**
   * The installation's write lock, taken after BEGIN and outside the writer
   * queue's connect timer: waiting for another replica's write is not the
   * database being unreachable (lock_timeout bounds the wait). Both numbers are
   * ours, not input.
   */
  async #takeWriteLock(lease: Lease): Promise<void> {
    try {
      await lease.client.query(`SELECT pg_advisory_xact_lock(${this.location.lockSpace}, ${PG_LOCKS.write})`)
    } catch (e) {
      lease.release(await this.#rollback(lease.client))
      throw mapPgError(e, this.location)
    }
  }

  async #begin(mode: 'write' | 'read'): Promise<Lease> {
    const sql = mode === 'write' ? 'BEGIN' : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'
    for (let attempt = 1; ; attempt++) {
      const lease = await leaseClient(this.#pool, this.location, this.#leases)
      try {
        await lease.client.query(sql)
        return lease
      } catch (e) {
        lease.release(asError(e))
        if (!isConnectionError(e) || attempt >= this.#beginAttempts) throw mapPgError(e, this.location)
      }
    }
  }

  async #exec(client: pg.PoolClient, sql: string): Promise<void> {
    try {
      await client.query(sql)
    } catch (e) {
      throw mapPgError(e, this.location)
    }
  }

  /** Whether an erasure's rewrite of key_versions is still to run. */
  get scrubPending(): boolean {
    return this.#vacuumPending
  }

  /** Rewrites key_versions without erased material's dead row versions. Never throws: the transaction has committed. */
  async #vacuum(client: pg.PoolClient): Promise<void> {
    try {
      await client.query(`SET lock_timeout = ${VACUUM_LOCK_TIMEOUT_MS}`)
      await client.query('VACUUM FULL key_versions')
      this.#vacuumPending = false
    } catch {
      // Another session held the table too long, or the connection broke.
      this.#vacuumPending = true
    } finally {
      await client.query('RESET lock_timeout').catch(() => undefined)
    }
  }

  /** Rolls back; returns the error when that failed too (the connection is then dropped). */
  async #rollback(client: pg.PoolClient): Promise<Error | undefined> {
    try {
      await client.query('ROLLBACK')
      return undefined
    } catch (e) {
      return asError(e)
    }
  }
}

/**
 * Opens the PostgreSQL store at `options.url`: creates its schema and applies
 * migrations unless read-only (then checks the schema version instead).
 * Connection failures reject with CP_ERR_STORE "database unreachable at <url>".
 */
export async function openPgStore(options: PgStoreOptions): Promise<PgStore> {
  const location = parsePgUrl(options.url)
  const poolSize = options.poolSize ?? DEFAULT_PG_POOL_SIZE
  const readOnly = options.readOnly === true
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_PG_CONNECT_TIMEOUT_MS
  const pool = new pg.Pool({
    ...pgConnection(location, options.applicationName ?? 'keymesh', [
      `-c search_path=${location.schema}`,
      `-c lock_timeout=${ms(options.lockTimeoutMs ?? DEFAULT_PG_LOCK_TIMEOUT_MS)}`,
      `-c idle_in_transaction_session_timeout=${ms(options.idleInTransactionTimeoutMs ?? DEFAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS)}`,
    ]),
    max: poolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    types: PG_TYPES,
  })
  // An idle connection that dies (server restart, pg_terminate_backend) is
  // dropped by the pool, which then emits 'error': never let that crash us.
  pool.on('error', (err) => options.onIdleError?.(err))

  let lease: Lease | undefined
  try {
    lease = await leaseClient(pool, location, { n: 0 })
    await preparePgSchema(lease.client, location, {
      readOnly,
      migrations: options.migrations ?? PG_MIGRATIONS,
      now: options.now ?? Date.now,
    })
    lease.release()
  } catch (e) {
    // Dropping the connection also ends its session: an unfinished migration
    // rolls back and its advisory lock is released.
    lease?.release(asError(e))
    await pool.end()
    throw isKeymeshError(e) ? e : mapPgError(e, location)
  }
  return new PgStore(pool, location, readOnly, {
    poolSize,
    connectTimeoutMs,
    maxWaitingWriters: options.maxWaitingWriters ?? DEFAULT_PG_MAX_WAITING_WRITERS,
    now: options.now ?? (() => performance.now()),
  })
}
