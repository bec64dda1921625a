import { mapPgError } from './pg-errors.js';
import { SqlTx } from './sql-tx.js';
// Process-wide: the same SQL string gets the same statement name on every
// connection, and a name always stands for one text. The set of statements is
// finite (the repository builds them from fixed parts), so the map stays small.
const prepared = new Map();
/** `?` → `$1…$n`. The repository's SQL has no `?` inside string literals. */
export function toPgSql(sql) {
    let p = prepared.get(sql);
    if (!p) {
        let n = 0;
        p = { name: `km_${prepared.size + 1}`, text: sql.replace(/\?/g, () => `$${++n}`) };
        prepared.set(sql, p);
    }
    return p;
}
export class PgTx extends SqlTx {
    client;
    location;
    // Writers already run one at a time (the write advisory lock); FOR UPDATE
    // keeps the audit head safe even for a writer that did not take it.
    rowLock = ' FOR UPDATE';
    constructor(client, location) {
        super();
        this.client = client;
        this.location = location;
    }
    /**
     * NOTIFY inside the transaction: PostgreSQL holds it until COMMIT and drops it on
     * rollback, so listeners hear of a change exactly when it becomes visible.
     */
    async notify(channel, payload) {
        await this.get('SELECT pg_notify(?, ?)', channel, payload);
    }
    async runSql(sql, params) {
        return (await this.#query(sql, params)).rowCount ?? 0;
    }
    async getSql(sql, params) {
        return (await this.#query(sql, params)).rows[0];
    }
    async allSql(sql, params) {
        return (await this.#query(sql, params)).rows;
    }
    mapError(e) {
        return mapPgError(e, this.location);
    }
    // One connection runs one query at a time. Callers may start several at once
    // (Promise.all over look-ups, as SQLite allows); pg queues them itself but calls
    // that deprecated and pg 9 will refuse it, so they take turns here.
    #tail = Promise.resolve();
    #query(sql, params) {
        const { name, text } = toPgSql(sql);
        const run = () => this.client.query({ name, text, values: params });
        const result = this.#tail.then(run, run);
        this.#tail = result.catch(() => undefined);
        return result;
    }
}
//# sourceMappingURL=pg-tx.js.map