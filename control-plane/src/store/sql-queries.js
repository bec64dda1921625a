import { cpError } from '../errors.js';
import { toBlob } from './sql-rows.js';
// Parameters per statement in importRows: under SQLite's historical limit (999).
const MAX_PARAMS = 900;
const SQL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
function sqlName(name) {
    if (!SQL_NAME.test(name))
        throw cpError('CP_ERR_STORE', `${JSON.stringify(name.slice(0, 64))} is not a plain SQL name`);
    return name;
}
const bind = (v) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? toBlob(v) : v);
export class SqlQueries {
    #state = 'active';
    /** Called when the transaction ends: a tx kept past its callback must not write outside it. */
    finish() {
        this.#state = 'finished';
    }
    run(sql, ...params) {
        return this.#call(() => this.runSql(sql, params.map(bind)));
    }
    get(sql, ...params) {
        return this.#call(() => this.getSql(sql, params.map(bind)));
    }
    all(sql, ...params) {
        return this.#call(() => this.allSql(sql, params.map(bind)));
    }
    /** UPDATE with only the fields present in `patch`; an empty patch reports whether the row exists. */
    async patch(table, columns, patch, whereSql, args) {
        const sets = [];
        const values = [];
        for (const [field, value] of Object.entries(patch)) {
            const column = columns[field];
            if (column === undefined || value === undefined)
                continue;
            sets.push(`${column} = ?`);
            values.push(value);
        }
        if (sets.length === 0)
            return (await this.get(`SELECT 1 AS one FROM ${table} WHERE ${whereSql}`, ...args)) !== undefined;
        return (await this.run(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${whereSql}`, ...values, ...args)) > 0;
    }
    // Whole-table access for copying a store to another back-end (copy.ts). Rows
    // are what the driver returns (numbers, strings, Buffers, nulls), which every
    // back-end binds back unchanged. Names come from copy.ts's table list and the
    // source's own columns; each is checked to be a plain identifier before it
    // reaches SQL.
    /** One page of `table`, ordered by its primary key `key`, after the row whose key is `after`. */
    exportRows(table, key, after, limit) {
        const k = key.map(sqlName).join(', ');
        const from = after === null ? '' : ` WHERE (${k}) > (${key.map(() => '?').join(', ')})`;
        return this.all(`SELECT * FROM ${sqlName(table)}${from} ORDER BY ${k} LIMIT ?`, ...(after ?? []), limit);
    }
    /** Inserts rows as exportRows returned them, several per statement; resolves to how many. */
    async importRows(table, rows) {
        const first = rows[0];
        if (first === undefined)
            return 0;
        const columns = Object.keys(first).map(sqlName);
        const perStatement = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
        const tuple = `(${columns.map(() => '?').join(', ')})`;
        let n = 0;
        for (let i = 0; i < rows.length; i += perStatement) {
            const chunk = rows.slice(i, i + perStatement);
            const values = chunk.flatMap((r) => columns.map((c) => r[c]));
            n += await this.run(`INSERT INTO ${sqlName(table)} (${columns.join(', ')}) VALUES ${chunk.map(() => tuple).join(', ')}`, ...values);
        }
        return n;
    }
    /** Removes every row of `table` (a row a migration seeded, before importing over it). */
    clearRows(table) {
        return this.run(`DELETE FROM ${sqlName(table)}`);
    }
    async #call(f) {
        if (this.#state === 'finished')
            throw cpError('CP_ERR_STORE', 'transaction is finished; use the store again');
        if (this.#state === 'failed')
            throw cpError('CP_ERR_STORE', 'an earlier statement of this transaction failed; it can only roll back');
        try {
            return await f();
        }
        catch (e) {
            if (this.#state === 'active')
                this.#state = 'failed';
            throw this.mapError(e);
        }
    }
}
//# sourceMappingURL=sql-queries.js.map