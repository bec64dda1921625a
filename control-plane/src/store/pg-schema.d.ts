import type pg from 'pg';
import type { Migration } from './migrations.js';
import { type PgLocation } from './pg-url.js';
export interface PgSchemaOptions {
    readonly readOnly: boolean;
    readonly migrations: readonly Migration[];
    readonly now: () => number;
}
/** Migrates (or, read-only, checks) the schema; runs on `client`, which the caller releases. */
export declare function preparePgSchema(client: pg.ClientBase, location: PgLocation, options: PgSchemaOptions): Promise<void>;
