import { cpError } from '../errors.js';
import { PG_LOCKS } from './pg-url.js';
const latest = (migrations) => migrations.reduce((m, x) => Math.max(m, x.version), 0);
const where = (location) => `schema ${location.schema} at ${location.display}`;
/** The highest applied migration; null when the schema has no schema_migrations table. */
async function schemaVersion(client, schema) {
    const table = await client.query("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = 'schema_migrations'", [schema]);
    if (table.rowCount === 0)
        return null;
    const row = await client.query('SELECT MAX(version)::text AS v FROM schema_migrations');
    return Number(row.rows[0]?.v ?? 0);
}
function refuseNewer(location, found, migrations) {
    const known = latest(migrations);
    if (found > known) {
        throw cpError('CP_ERR_STORE', `${where(location)} has schema version ${found}, newer than this keymesh understands (${known}); run a newer keymesh`);
    }
}
/** Migrates (or, read-only, checks) the schema; runs on `client`, which the caller releases. */
export async function preparePgSchema(client, location, options) {
    if (options.readOnly) {
        const found = await schemaVersion(client, location.schema);
        refuseNewer(location, found ?? 0, options.migrations);
        if (!found)
            throw cpError('CP_ERR_STORE', `${where(location)} is not an initialised keymesh store`);
        return;
    }
    const lock = [location.lockSpace, PG_LOCKS.migrate];
    await client.query('SELECT pg_advisory_lock($1::int4, $2::int4)', lock);
    // On failure the caller drops the connection, which ends the session: the
    // server rolls the transaction back and releases the lock.
    const ns = await client.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [location.schema]);
    if (ns.rowCount === 0)
        await client.query(`CREATE SCHEMA "${location.schema}"`);
    await client.query('BEGIN');
    let found = await schemaVersion(client, location.schema);
    if (found === null) {
        await client.query('CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
        found = 0;
    }
    refuseNewer(location, found, options.migrations);
    for (const m of [...options.migrations].sort((a, b) => a.version - b.version)) {
        if (m.version <= found)
            continue;
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, options.now()]);
    }
    await client.query('COMMIT');
    await client.query('SELECT pg_advisory_unlock($1::int4, $2::int4)', lock);
}
//# sourceMappingURL=pg-schema.js.map