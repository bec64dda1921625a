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
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { isKeymeshError } from '../../../protocol/src/index.js';
import { cpError } from '../errors.js';
import { isConnectionError, mapPgError } from './pg-errors.js';
import { PG_MIGRATIONS } from './pg-migrations.js';
import { preparePgSchema } from './pg-schema.js';
import { PgTx } from './pg-tx.js';
import { WriterQueue } from './pg-writer-queue.js';
import { PG_LOCKS, parsePgUrl } from './pg-url.js';
export const DEFAULT_PG_POOL_SIZE = 8;
export const DEFAULT_PG_CONNECT_TIMEOUT_MS = 5_000;
/** Write transactions that may wait for their turn in one process before new ones are refused. */
export const DEFAULT_PG_MAX_WAITING_WRITERS = 1_000;
/** Idle time after which TCP keepalive probes start on every connection (the OS default is ~2 h). */
export const PG_KEEPALIVE_DELAY_MS = 10_000;
/**
 * Keepalives the SERVER sends (seconds): it ends the session of a client that
 * vanished without a reset (host or network gone) within ~25 s, and with it the
 * session's advisory locks (the scheduler lease, the write lock) and its LISTEN.
 */
export const PG_SERVER_KEEPALIVES = '-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3';
/**
 * What every connection keymesh opens to PostgreSQL shares: a name in
 * pg_stat_activity, TCP keepalives after 10 s idle, a bounded connect, and the
 * server's keepalives (plus `options`, server settings as `-c name=value`).
 */
export function pgConnection(location, applicationName, options = []) {
    return {
        connectionString: location.connectionString,
        application_name: applicationName,
        keepAlive: true,
        keepAliveInitialDelayMillis: PG_KEEPALIVE_DELAY_MS,
        connectionTimeoutMillis: DEFAULT_PG_CONNECT_TIMEOUT_MS,
        options: [...options, PG_SERVER_KEEPALIVES].join(' '),
    };
}
export const DEFAULT_PG_LOCK_TIMEOUT_MS = 30_000;
export const DEFAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
// Per-pool type parsers (the global pg.types is left alone): BIGINT columns hold
// milliseconds and counters, well inside Number's exact range; BYTEA stays a
// Buffer for sql-rows.ts to copy.
const INT8_OID = 20;
const parseInt8 = (v) => Number(v);
const PG_TYPES = {
    getTypeParser: ((oid, format) => oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)),
};
/** A whole, non-negative number of milliseconds for a server setting. */
const ms = (n) => Math.max(0, Math.floor(n));
const asError = (e) => (e instanceof Error ? e : new Error(String(e)));
/** Whether a failure to begin (mapped by mapPgError, cause attached) means the database did not answer. */
const isUnreachable = (e) => isKeymeshError(e) && isConnectionError(e.cause);
/** A pool client watched for connection loss until it is released. */
async function leaseClient(pool, location) {
    let client;
    try {
        client = await pool.connect();
    }
    catch (e) {
        // Every connection checked out and none returned in time is this process
        // being busy, not the database being gone: not an outage, not worth a retry.
        if (pool.totalCount >= (pool.options.max ?? 0) && pool.idleCount === 0) {
            throw cpError('CP_ERR_STORE', `all ${pool.totalCount} connections to ${location.display} are busy; try again`, { cause: e });
        }
        throw mapPgError(e, location);
    }
    // A connection lost while checked out is reported as an 'error' event (as
    // well as failing the query in flight); without a listener it would crash
    // the process.
    let lost;
    const onError = (e) => void (lost ??= e);
    client.on('error', onError);
    return {
        client,
        release(err) {
            client.off('error', onError);
            client.release(err ?? lost);
        },
    };
}
// Which store (if any) the current async call chain is inside a transaction of.
const current = new AsyncLocalStorage();
export class PgStore {
    location;
    readOnly;
    backend = 'postgres';
    #pool;
    #writers;
    #running = new Set();
    #beginAttempts;
    #closed = false;
    #closing;
    constructor(pool, 
    /** Where the store lives, for code that opens its own connections there (LISTEN, leases). */
    location, readOnly, o) {
        this.location = location;
        this.readOnly = readOnly;
        this.#pool = pool;
        // Every pooled connection may have died while idle; one more reaches a new one.
        this.#beginAttempts = o.poolSize + 1;
        this.#writers = new WriterQueue({ maxWaiting: o.maxWaitingWriters, connectTimeoutMs: o.connectTimeoutMs, now: o.now, display: location.display });
    }
    transaction(fn) {
        if (this.readOnly)
            return Promise.reject(cpError('CP_ERR_STORE', 'the store was opened read-only'));
        return this.#track(this.#run('write', fn));
    }
    read(fn) {
        return this.#track(this.#run('read', fn));
    }
    /** Waits for every running transaction, then closes the pool; later calls reject. */
    close() {
        this.#closing ??= (async () => {
            this.#closed = true;
            await Promise.allSettled([...this.#running]);
            await this.#pool.end();
        })();
        return this.#closing;
    }
    #track(p) {
        this.#running.add(p);
        const done = () => void this.#running.delete(p);
        p.then(done, done);
        return p;
    }
    async #run(mode, fn) {
        if (current.getStore() === this) {
            throw cpError('CP_ERR_STORE', 'transaction started inside a transaction; pass the open transaction down instead');
        }
        if (this.#closed)
            throw cpError('CP_ERR_STORE', 'the store is closed');
        const { connection: lease, release } = mode === 'write' ? await this.#writers.enter(() => this.#begin('write'), isUnreachable) : { connection: await this.#begin('read'), release: undefined };
        try {
            if (mode === 'write')
                await this.#takeWriteLock(lease);
            const tx = new PgTx(lease.client, this.location);
            let broken;
            try {
                const result = await current.run(this, () => fn(tx));
                await this.#exec(lease.client, 'COMMIT');
                return result;
            }
            catch (e) {
                broken = await this.#rollback(lease.client);
                throw e;
            }
            finally {
                tx.finish();
                lease.release(broken);
            }
        }
        finally {
            release?.();
        }
    }
    /**
     * The installation's write lock, taken after BEGIN and outside the writer
     * queue's connect timer: waiting for another replica's write is not the
     * database being unreachable (lock_timeout bounds the wait). Both numbers are
     * ours, not input.
     */
    async #takeWriteLock(lease) {
        try {
            await lease.client.query(`SELECT pg_advisory_xact_lock(${this.location.lockSpace}, ${PG_LOCKS.write})`);
        }
        catch (e) {
            lease.release(await this.#rollback(lease.client));
            throw mapPgError(e, this.location);
        }
    }
    async #begin(mode) {
        const sql = mode === 'write' ? 'BEGIN' : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
        for (let attempt = 1;; attempt++) {
            const lease = await leaseClient(this.#pool, this.location);
            try {
                await lease.client.query(sql);
                return lease;
            }
            catch (e) {
                lease.release(asError(e));
                if (!isConnectionError(e) || attempt >= this.#beginAttempts)
                    throw mapPgError(e, this.location);
            }
        }
    }
    async #exec(client, sql) {
        try {
            await client.query(sql);
        }
        catch (e) {
            throw mapPgError(e, this.location);
        }
    }
    /** Rolls back; returns the error when that failed too (the connection is then dropped). */
    async #rollback(client) {
        try {
            await client.query('ROLLBACK');
            return undefined;
        }
        catch (e) {
            return asError(e);
        }
    }
}
/**
 * Opens the PostgreSQL store at `options.url`: creates its schema and applies
 * migrations unless read-only (then checks the schema version instead).
 * Connection failures reject with CP_ERR_STORE "database unreachable at <url>".
 */
export async function openPgStore(options) {
    const location = parsePgUrl(options.url);
    const poolSize = options.poolSize ?? DEFAULT_PG_POOL_SIZE;
    const readOnly = options.readOnly === true;
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_PG_CONNECT_TIMEOUT_MS;
    const pool = new pg.Pool({
        ...pgConnection(location, options.applicationName ?? 'keymesh', [
            `-c search_path=${location.schema}`,
            `-c lock_timeout=${ms(options.lockTimeoutMs ?? DEFAULT_PG_LOCK_TIMEOUT_MS)}`,
            `-c idle_in_transaction_session_timeout=${ms(options.idleInTransactionTimeoutMs ?? DEFAULT_PG_IDLE_IN_TRANSACTION_TIMEOUT_MS)}`,
        ]),
        max: poolSize,
        connectionTimeoutMillis: connectTimeoutMs,
        types: PG_TYPES,
    });
    // An idle connection that dies (server restart, pg_terminate_backend) is
    // dropped by the pool, which then emits 'error': never let that crash us.
    pool.on('error', (err) => options.onIdleError?.(err));
    let lease;
    try {
        lease = await leaseClient(pool, location);
        await preparePgSchema(lease.client, location, {
            readOnly,
            migrations: options.migrations ?? PG_MIGRATIONS,
            now: options.now ?? Date.now,
        });
        lease.release();
    }
    catch (e) {
        // Dropping the connection also ends its session: an unfinished migration
        // rolls back and its advisory lock is released.
        lease?.release(asError(e));
        await pool.end();
        throw isKeymeshError(e) ? e : mapPgError(e, location);
    }
    return new PgStore(pool, location, readOnly, {
        poolSize,
        connectTimeoutMs,
        maxWaitingWriters: options.maxWaitingWriters ?? DEFAULT_PG_MAX_WAITING_WRITERS,
        now: options.now ?? Date.now,
    });
}
//# sourceMappingURL=pg-store.js.map