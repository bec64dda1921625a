// What `--store postgres://…` means: a libpq-style URL for `pg`, plus one
// parameter of ours, `schema` (default `public`), naming the schema that holds
// keymesh's tables. Several installations (and every test) can share a database
// in schemas of their own; LISTEN channels and advisory locks are per database,
// so their names are derived from the schema too.
import { createHash } from 'node:crypto'

import { cpError } from '../errors.js'

export interface PgLocation {
  /** The URL for `pg` (without our `schema` parameter). */
  readonly connectionString: string
  /** The schema keymesh's tables live in. */
  readonly schema: string
  /** The URL with any password replaced by `***`, for logs and errors. */
  readonly display: string
  /** LISTEN/NOTIFY channel of this installation. */
  readonly channel: string
  /** Advisory-lock key space of this installation (two int4 halves: [installation, purpose]). */
  readonly lockSpace: number
}

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/

export function isPgUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec)
}

/** Parses a `--store` PostgreSQL URL; CP_ERR_STORE on anything unusable. */
export function parsePgUrl(spec: string): PgLocation {
  let url: URL
  try {
    url = new URL(spec)
  } catch {
    throw cpError('CP_ERR_STORE', 'the store URL is not a valid URL (expected postgres://HOST[:PORT]/DB[?schema=NAME])')
  }
  if (!isPgUrl(spec)) throw cpError('CP_ERR_STORE', `unsupported store URL scheme ${url.protocol} (expected postgres://)`)
  const schema = url.searchParams.get('schema') ?? 'public'
  if (!SCHEMA.test(schema)) {
    throw cpError('CP_ERR_STORE', `schema ${JSON.stringify(schema)} is not a plain lower-case SQL identifier`)
  }
  url.searchParams.delete('schema')
  const connectionString = url.toString()
  if (url.password !== '') url.password = '***'
  const display = url.toString()
  const digest = createHash('sha256').update(`keymesh:${url.host}${url.pathname}:${schema}`).digest()
  return {
    connectionString,
    schema,
    display,
    channel: `keymesh_${schema}`.slice(0, 63),
    lockSpace: digest.readInt32BE(0),
  }
}

/** The two halves of an advisory lock of this installation, for `pg_advisory_lock($1, $2)`. */
export const PG_LOCKS = {
  /** Held by every write transaction: writers run one at a time across replicas, as on SQLite. */
  write: 1,
  /** Held while migrations run, so replicas starting together migrate once. */
  migrate: 2,
  /** Held (session-level) by the replica that runs the scheduler. */
  scheduler: 3,
} as const
