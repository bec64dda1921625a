export interface PgLocation {
    /** The URL for `pg` (without our `schema` parameter). */
    readonly connectionString: string;
    /** The schema keymesh's tables live in. */
    readonly schema: string;
    /** The URL with any password replaced by `***`, for logs and errors. */
    readonly display: string;
    /** LISTEN/NOTIFY channel of this installation. */
    readonly channel: string;
    /** Advisory-lock key space of this installation (two int4 halves: [installation, purpose]). */
    readonly lockSpace: number;
}
export declare function isPgUrl(spec: string): boolean;
/** Parses a `--store` PostgreSQL URL; CP_ERR_STORE on anything unusable. */
export declare function parsePgUrl(spec: string): PgLocation;
/** Any store spec with its credentials hidden, for usage errors (it may not even parse as ours). */
export declare function redactStoreSpec(spec: string): string;
/** The two halves of an advisory lock of this installation, for `pg_advisory_lock($1, $2)`. */
export declare const PG_LOCKS: {
    /** Held by every write transaction: writers run one at a time across replicas, as on SQLite. */
    readonly write: 1;
    /** Held while migrations run, so replicas starting together migrate once. */
    readonly migrate: 2;
    /** Held (session-level) by the replica that runs the scheduler. */
    readonly scheduler: 3;
};
