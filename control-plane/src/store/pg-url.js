// What `--store postgres://…` means: a libpq-style URL for `pg`, plus one
// parameter of ours, `schema` (default `public`), naming the schema that holds
// keymesh's tables. Several installations (and every test) can share a database
// in schemas of their own; LISTEN channels and advisory locks are per database,
// so their names are derived from the schema too.
import { createHash } from 'node:crypto';
import { userInfo } from 'node:os';
import { cpError } from '../errors.js';
const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
export function isPgUrl(spec) {
    return /^postgres(ql)?:\/\//i.test(spec);
}
/** Parses a `--store` PostgreSQL URL; CP_ERR_STORE on anything unusable. */
export function parsePgUrl(spec) {
    let url;
    try {
        url = new URL(spec);
    }
    catch {
        throw cpError('CP_ERR_STORE', 'the store URL is not a valid URL (expected postgres://HOST[:PORT]/DB[?schema=NAME])');
    }
    if (!isPgUrl(spec))
        throw cpError('CP_ERR_STORE', `unsupported store URL scheme ${url.protocol} (expected postgres://)`);
    if (url.pathname.length <= 1)
        throw cpError('CP_ERR_STORE', 'name the database (postgres://HOST[:PORT]/DB)');
    const schema = url.searchParams.get('schema') ?? 'public';
    if (!SCHEMA.test(schema)) {
        throw cpError('CP_ERR_STORE', `schema ${JSON.stringify(schema)} is not a plain lower-case SQL identifier`);
    }
    // pg lets the URL's `options` replace the connection's own, which carries our
    // search_path: the tables would silently land in another schema.
    if (url.searchParams.has('options')) {
        throw cpError('CP_ERR_STORE', 'the store URL may not set options (keymesh sets the search_path itself; use ?schema=NAME)');
    }
    url.searchParams.delete('schema');
    const display = displayPgUrl(url);
    // libpq (psql) falls back to the operating-system user; pg only to $USER, and
    // services started by systemd or cron often have none. Do as libpq does.
    if (url.username === '' && !process.env['PGUSER'] && !process.env['USER'])
        url.username = encodeURIComponent(userInfo().username);
    const connectionString = url.toString();
    // Advisory locks and LISTEN channels are per database, so the schema alone names
    // the installation within it. (Hashing the host too made two spellings of one
    // server, 127.0.0.1 and localhost, two installations that ignored each other's locks.)
    const digest = createHash('sha256').update(`keymesh:${schema}`).digest();
    return {
        connectionString,
        schema,
        display,
        channel: `keymesh_${digest.subarray(0, 8).toString('hex')}`,
        lockSpace: digest.readInt32BE(8),
    };
}
/**
 * A PostgreSQL URL as logs and errors show it: scheme, user, host, port and
 * database only. Query parameters (`password=`, `sslpassword=` …) and the
 * password are left out.
 */
function displayPgUrl(url) {
    const user = url.username === '' ? '' : `${url.username}${url.password === '' ? '' : ':***'}@`;
    return `${url.protocol}//${user}${url.host}${url.pathname}`;
}
/** Any store spec with its credentials hidden, for usage errors (it may not even parse as ours). */
export function redactStoreSpec(spec) {
    try {
        const url = new URL(spec);
        if (url.host !== '')
            return displayPgUrl(url);
    }
    catch {
        // not a URL: hide anything that looks like user:password@ all the same
    }
    return spec.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@').replace(/([?&](?:ssl)?password=)[^&]*/gi, '$1***');
}
/** The two halves of an advisory lock of this installation, for `pg_advisory_lock($1, $2)`. */
export const PG_LOCKS = {
    /** Held by every write transaction: writers run one at a time across replicas, as on SQLite. */
    write: 1,
    /** Held while migrations run, so replicas starting together migrate once. */
    migrate: 2,
    /** Held (session-level) by the replica that runs the scheduler. */
    scheduler: 3,
};
//# sourceMappingURL=pg-url.js.map