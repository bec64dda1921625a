import type { KeymeshError } from '../../../protocol/src/index.js';
export type SqlValue = string | number | bigint | Buffer | null;
export interface SqliteStatement {
    run(...params: SqlValue[]): {
        changes: number;
    };
    get(...params: SqlValue[]): unknown;
    all(...params: SqlValue[]): unknown[];
}
export interface SqliteDatabase {
    prepare(sql: string): SqliteStatement;
    exec(sql: string): void;
    pragma(source: string, options?: {
        simple?: boolean;
    }): unknown;
    close(): void;
    readonly inTransaction: boolean;
    readonly open: boolean;
    readonly name: string;
}
export type SqliteDatabaseConstructor = new (filename: string, options?: {
    readonly?: boolean;
    fileMustExist?: boolean;
    timeout?: number;
}) => SqliteDatabase;
export declare const Database: SqliteDatabaseConstructor;
/**
 * Turns a driver error into the store contract's codes: a duplicate natural key
 * is a conflict, a dangling reference is "not found", anything else a store
 * failure. The detail carries SQLite's constraint text (table and column names,
 * never values); the driver error stays attached as the cause.
 */
export declare function mapSqliteError(e: unknown): KeymeshError;
