import type { KeymeshError } from '../../../protocol/src/index.js';
import { type SqliteDatabase, type SqliteStatement } from './sqlite-driver.js';
import type { Row } from './sql-rows.js';
import { SqlTx } from './sql-tx.js';
export declare class SqliteTx extends SqlTx {
    #private;
    private readonly db;
    private readonly cache;
    protected readonly rowLock = "";
    constructor(db: SqliteDatabase, cache: Map<string, SqliteStatement>);
    protected runSql(sql: string, params: unknown[]): number;
    protected getSql(sql: string, params: unknown[]): Row | undefined;
    protected allSql(sql: string, params: unknown[]): Row[];
    protected mapError(e: unknown): KeymeshError;
}
