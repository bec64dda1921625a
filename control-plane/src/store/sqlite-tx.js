import { mapSqliteError } from './sqlite-driver.js';
import { SqlTx } from './sql-tx.js';
export class SqliteTx extends SqlTx {
    db;
    cache;
    // BEGIN IMMEDIATE already holds the database's only write lock, so a plain
    // read of the audit head is as good as a row lock.
    rowLock = '';
    constructor(db, cache) {
        super();
        this.db = db;
        this.cache = cache;
    }
    runSql(sql, params) {
        return this.#stmt(sql).run(...params).changes;
    }
    getSql(sql, params) {
        return this.#stmt(sql).get(...params);
    }
    allSql(sql, params) {
        return this.#stmt(sql).all(...params);
    }
    mapError(e) {
        return mapSqliteError(e);
    }
    #stmt(sql) {
        let s = this.cache.get(sql);
        if (!s) {
            s = this.db.prepare(sql);
            this.cache.set(sql, s);
        }
        return s;
    }
}
//# sourceMappingURL=sqlite-tx.js.map