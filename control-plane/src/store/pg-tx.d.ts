import type pg from 'pg';
import type { KeymeshError } from '../../../protocol/src/index.js';
import type { PgLocation } from './pg-url.js';
import type { Row } from './sql-rows.js';
import { SqlTx } from './sql-tx.js';
interface Prepared {
    readonly name: string;
    readonly text: string;
}
/** `?` → `$1…$n`. The repository's SQL has no `?` inside string literals. */
export declare function toPgSql(sql: string): Prepared;
export declare class PgTx extends SqlTx {
    #private;
    private readonly client;
    private readonly location;
    protected readonly rowLock = " FOR UPDATE";
    constructor(client: pg.ClientBase, location: PgLocation);
    /**
     * NOTIFY inside the transaction: PostgreSQL holds it until COMMIT and drops it on
     * rollback, so listeners hear of a change exactly when it becomes visible.
     */
    notify(channel: string, payload: string): Promise<void>;
    protected runSql(sql: string, params: unknown[]): Promise<number>;
    protected getSql(sql: string, params: unknown[]): Promise<Row | undefined>;
    protected allSql(sql: string, params: unknown[]): Promise<Row[]>;
    protected mapError(e: unknown): KeymeshError;
}
export {};
