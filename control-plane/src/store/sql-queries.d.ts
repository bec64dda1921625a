import type { KeymeshError } from '../../../protocol/src/index.js';
import { type Row } from './sql-rows.js';
export type MaybePromise<T> = T | Promise<T>;
export declare abstract class SqlQueries {
    #private;
    /**
     * Appended to the SELECT that reads the audit head in `lockAuditHead`:
     * ' FOR UPDATE' where rows must be locked explicitly (PostgreSQL), '' where
     * the write transaction already holds the only write lock (SQLite).
     */
    protected abstract readonly rowLock: string;
    protected abstract runSql(sql: string, params: unknown[]): MaybePromise<number>;
    protected abstract getSql(sql: string, params: unknown[]): MaybePromise<Row | undefined>;
    protected abstract allSql(sql: string, params: unknown[]): MaybePromise<Row[]>;
    /** The driver's error as a CP_ERR_CONFLICT / CP_ERR_NOT_FOUND / CP_ERR_STORE. */
    protected abstract mapError(e: unknown): KeymeshError;
    /** Called when the transaction ends: a tx kept past its callback must not write outside it. */
    finish(): void;
    protected run(sql: string, ...params: unknown[]): Promise<number>;
    protected get(sql: string, ...params: unknown[]): Promise<Row | undefined>;
    protected all(sql: string, ...params: unknown[]): Promise<Row[]>;
    /** UPDATE with only the fields present in `patch`; an empty patch reports whether the row exists. */
    protected patch(table: string, columns: Record<string, string>, patch: object, whereSql: string, args: unknown[]): Promise<boolean>;
    /** One page of `table`, ordered by its primary key `key`, after the row whose key is `after`. */
    exportRows(table: string, key: readonly string[], after: readonly unknown[] | null, limit: number): Promise<Row[]>;
    /** Inserts rows as exportRows returned them, several per statement; resolves to how many. */
    importRows(table: string, rows: readonly Row[]): Promise<number>;
    /** Removes every row of `table` (a row a migration seeded, before importing over it). */
    clearRows(table: string): Promise<number>;
}
