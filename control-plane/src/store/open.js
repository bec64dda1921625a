// What `--store` means: no value or `sqlite:` → the embedded SQLite store in
// the data directory; `sqlite:DIR` → SQLite in DIR; `postgres://…` or
// `postgresql://…` → the PostgreSQL store (pg-url.ts). Anything else is refused.
import { cpError } from '../errors.js';
import { isPgUrl, redactStoreSpec } from './pg-url.js';
import { openSqliteStore } from './sqlite-store.js';
export const STORE_FORMS = 'sqlite:DIR, or postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]';
/** Opens the store `spec` names; `dataDir` is where SQLite lives when no directory is given. */
export function openStore(spec, dataDir, options = {}) {
    const common = {
        ...(options.readOnly !== undefined ? { readOnly: options.readOnly } : {}),
        ...(options.now ? { now: options.now } : {}),
    };
    if (spec !== undefined && isPgUrl(spec)) {
        // Loaded on demand: `pg` costs ~15 MB of RSS that SQLite installations and
        // every other CLI command (a 1 GiB drop runs in < 100 MB) should not carry.
        return import('./pg-store.js').then(({ openPgStore }) => openPgStore({ ...options.pg, ...common, url: spec, ...(options.pgMigrations ? { migrations: options.pgMigrations } : {}) }));
    }
    if (spec === undefined || spec === '' || spec === 'sqlite:' || spec.startsWith('sqlite:')) {
        const dir = spec?.startsWith('sqlite:') && spec.length > 'sqlite:'.length ? spec.slice('sqlite:'.length) : dataDir;
        const sqlite = {
            ...common,
            dir,
            ...(options.busyTimeoutMs !== undefined ? { busyTimeoutMs: options.busyTimeoutMs } : {}),
            ...(options.sqliteMigrations ? { migrations: options.sqliteMigrations } : {}),
        };
        return openSqliteStore(sqlite);
    }
    return Promise.reject(cpError('CP_ERR_STORE', `unsupported store ${JSON.stringify(redactStoreSpec(spec))} (expected ${STORE_FORMS})`));
}
//# sourceMappingURL=open.js.map