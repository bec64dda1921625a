import type { CryptoSuite } from '../../../protocol/src/index.js';
import type { AuditHead } from './records.js';
import type { Store } from './store.js';
export interface StoreTable {
    readonly name: string;
    /** The primary key: the order rows are read in, and where the next page starts. */
    readonly key: readonly string[];
}
/** Every table of an installation, parents before the tables that refer to them. */
export declare const STORE_TABLES: readonly StoreTable[];
/** Kept by each store for itself, never copied. */
export declare const SCHEMA_TABLE = "schema_migrations";
export declare const DEFAULT_COPY_PAGE = 1000;
export interface CopyOptions {
    /** Rows read (and written) per statement round; tests make it small to cross pages. */
    readonly pageSize?: number;
    readonly suite?: CryptoSuite;
}
export interface CopyResult {
    readonly schemaVersion: number;
    /** Rows copied per table, in STORE_TABLES order. */
    readonly rows: Readonly<Record<string, number>>;
    /** The target's chain as verified after the commit; its head is the source's. */
    readonly audit: {
        readonly count: number;
        readonly head: AuditHead;
    };
}
/**
 * Copies the installation in `source` into the empty `target` (see the file
 * comment), then verifies the target's audit chain. `source` may be read-only
 * and in use: rows committed after its snapshot are not copied.
 */
export declare function copyStore(source: Store, target: Store, options?: CopyOptions): Promise<CopyResult>;
/**
 * Verifies the audit chain of `target` through the store and that it ends at
 * `expected` (the source's head); CP_ERR_STORE otherwise, naming what differs.
 */
export declare function verifyCopy(target: Store, expected: AuditHead, suite?: CryptoSuite): Promise<{
    count: number;
    head: AuditHead;
}>;
