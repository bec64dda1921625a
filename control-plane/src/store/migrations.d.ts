export interface Migration {
    readonly version: number;
    readonly name: string;
    readonly sql: string;
}
export declare const SQLITE_MIGRATIONS: readonly Migration[];
/** The newest schema version this code knows. */
export declare const LATEST_SCHEMA_VERSION: number;
