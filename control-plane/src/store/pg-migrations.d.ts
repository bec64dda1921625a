import type { Migration } from './migrations.js';
export declare const PG_MIGRATIONS: readonly Migration[];
