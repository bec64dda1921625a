// The embedded Store on SQLite (better-sqlite3): one connection to DIR/keymesh.db
// in WAL mode with synchronous=FULL, so an acknowledged commit survives kill -9
// and power loss. The driver is synchronous but transactions take async
// callbacks, so an in-process mutex keeps two transactions from interleaving on
// the one connection; BEGIN IMMEDIATE takes the write lock up front, so a second
// process waits (busy_timeout) instead of failing half-way through.
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { isKeymeshError } from '../../../protocol/src/index.js';
import { cpError } from '../errors.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { createMutex } from './mutex.js';
import { Database, mapSqliteError } from './sqlite-driver.js';
import { SqliteTx } from './sqlite-tx.js';
export const SQLITE_FILE = 'keymesh.db';
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
// Which store (if any) the current async call chain is inside a transaction of.
const current = new AsyncLocalStorage();
export class SqliteStore {
    readOnly;
    backend = 'sqlite';
    #db;
    #cache = new Map();
    #mutex = createMutex();
    #closed = false;
    constructor(db, readOnly) {
        this.readOnly = readOnly;
        this.#db = db;
    }
    transaction(fn) {
        if (this.readOnly)
            return Promise.reject(cpError('CP_ERR_STORE', 'the store was opened read-only'));
        return this.#run('BEGIN IMMEDIATE', fn);
    }
    read(fn) {
        // A deferred BEGIN gives a consistent snapshot (WAL) without taking the write lock.
        return this.#run('BEGIN', fn);
    }
    /** The connection's durability settings, for start-up logs and tests. */
    settings() {
        const p = (name) => this.#db.pragma(name, { simple: true });
        return {
            journalMode: String(p('journal_mode')),
            synchronous: Number(p('synchronous')),
            foreignKeys: Number(p('foreign_keys')),
            busyTimeoutMs: Number(p('busy_timeout')),
        };
    }
    async close() {
        if (this.#closed)
            return;
        this.#closed = true;
        const release = await this.#mutex.acquire();
        try {
            this.#db.close();
        }
        finally {
            release();
        }
    }
    async #run(begin, fn) {
        if (current.getStore() === this) {
            throw cpError('CP_ERR_STORE', 'transaction started inside a transaction; pass the open transaction down instead');
        }
        if (this.#closed)
            throw cpError('CP_ERR_STORE', 'the store is closed');
        const release = await this.#mutex.acquire();
        try {
            if (!this.#db.open)
                throw cpError('CP_ERR_STORE', 'the store is closed');
            this.#exec(begin);
            const tx = new SqliteTx(this.#db, this.#cache);
            try {
                const result = await current.run(this, () => fn(tx));
                this.#exec('COMMIT');
                return result;
            }
            catch (e) {
                if (this.#db.inTransaction)
                    this.#rollback(e);
                throw e;
            }
            finally {
                tx.finish();
            }
        }
        finally {
            release();
        }
    }
    #exec(sql) {
        try {
            this.#db.exec(sql);
        }
        catch (e) {
            throw mapSqliteError(e);
        }
    }
    #rollback(original) {
        try {
            this.#db.exec('ROLLBACK');
        }
        catch (e) {
            // The connection is in an unknown state; refuse further use rather than guess.
            this.#closed = true;
            throw cpError('CP_ERR_STORE', 'rollback failed; the store was closed', { cause: new AggregateError([original, e]) });
        }
    }
}
/** Opens (and, unless read-only, creates and migrates) the SQLite store under `dir`. */
export async function openSqliteStore(options) {
    const file = join(options.dir, SQLITE_FILE);
    const readOnly = options.readOnly === true;
    const migrations = options.migrations ?? SQLITE_MIGRATIONS;
    if (readOnly && !existsSync(file))
        throw cpError('CP_ERR_STORE', `no keymesh store at ${file}`);
    if (!readOnly)
        mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    let db;
    try {
        // The database holds sealed key material and token hashes: owner-only. SQLite
        // gives its -wal and -shm files the database file's mode, so creating the file
        // 0600 before SQLite first opens it covers all three.
        if (!readOnly)
            closeSync(openSync(file, 'a', 0o600));
        db = new Database(file, { readonly: readOnly, fileMustExist: readOnly, timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
    }
    catch (e) {
        throw cpError('CP_ERR_STORE', `cannot open ${file}`, { cause: e });
    }
    try {
        db.pragma('foreign_keys = ON');
        // Deleted and overwritten content is zeroed, so a destroyed version's sealed
        // material does not linger in free space of the database file.
        db.pragma('secure_delete = ON');
        db.pragma(`busy_timeout = ${Math.floor(options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS)}`);
        if (!readOnly) {
            db.pragma('journal_mode = WAL');
            db.pragma('synchronous = FULL');
            migrate(db, migrations, options.now ?? Date.now);
        }
        else {
            checkVersion(file, schemaVersion(db), migrations);
        }
    }
    catch (e) {
        db.close();
        throw isKeymeshError(e) ? e : mapSqliteError(e);
    }
    return new SqliteStore(db, readOnly);
}
function latest(migrations) {
    return migrations.reduce((m, x) => Math.max(m, x.version), 0);
}
/** The highest applied migration, 0 for a new file; throws when the file is not a keymesh store. */
function schemaVersion(db) {
    const table = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
    if (table === undefined)
        return 0;
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get();
    return row.v ?? 0;
}
function checkVersion(file, found, migrations) {
    const known = latest(migrations);
    if (found > known) {
        throw cpError('CP_ERR_STORE', `${file} has schema version ${found}, newer than this keymesh understands (${known}); run a newer keymesh`);
    }
    if (found === 0)
        throw cpError('CP_ERR_STORE', `${file} is not an initialised keymesh store`);
}
// Applies every migration newer than the file's version, each with its record in
// schema_migrations, all in one IMMEDIATE transaction so two processes starting
// on the same directory migrate once.
function migrate(db, migrations, now) {
    db.exec('BEGIN IMMEDIATE');
    try {
        db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
        const found = schemaVersion(db);
        if (found > latest(migrations))
            checkVersion(db.name, found, migrations);
        const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
        for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
            if (m.version <= found)
                continue;
            db.exec(m.sql);
            record.run(m.version, m.name, now());
        }
        db.exec('COMMIT');
    }
    catch (e) {
        db.exec('ROLLBACK');
        throw e;
    }
}
//# sourceMappingURL=sqlite-store.js.map