// Control-plane replicas in child processes (the kit's cp-child.ts, with its fault
// hooks) on one PostgreSQL schema, for the tests that kill one with SIGKILL: what an
// operator runs, each replica with its own data directory and port, all with one
// master key file.
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { systemClock } from '../../platform/src/index.js'
import { PG_LOCKS } from '../../control-plane/src/index.js'
import type { AgentControlPlane } from '../kit/agent.js'
import { adminApi, startChildControlPlane, type ChildControlPlane } from '../kit/cp.js'
import { pgExec, pgSchema, type PgSchema } from '../kit/pg.js'

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
  plan(n: number, comment?: string): void
  fail(message: string): void
}

export interface Installation {
  readonly db: PgSchema
  /** db.url with application_name=<schema>: every connection of this test's replicas carries it. */
  readonly storeUrl: string
  /** The same, with application_name=<schema>_<name>: one replica's connections. */
  storeUrlOf(name: string): string
  readonly masterKeyFile: string
  readonly base: string
}

/** A fresh schema and master key for one test, or null when PostgreSQL is not there (skipped). */
export async function installation(t: Tap): Promise<Installation | null> {
  const db = await pgSchema(t)
  if (!db) return null
  const base = t.testdir()
  const masterKeyFile = join(base, 'master.key')
  writeFileSync(masterKeyFile, randomBytes(32), { mode: 0o600 })
  const storeUrlOf = (name: string): string => `${db.url}&application_name=${db.schema}_${name}`
  return { db, storeUrl: `${db.url}&application_name=${db.schema}`, storeUrlOf, masterKeyFile, base }
}

/** Ends every database session of the installation (what a database restart does to them). */
export async function terminateSessions(i: Installation): Promise<number> {
  const rows = await pgExec<{ ok: boolean }>(
    'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE left(application_name, length($1)) = $1 AND pid <> pg_backend_pid()',
    [i.db.schema],
  )
  return rows.length
}

/** A replica: the kit's child control plane (ask, next, kill …), named. */
export type ChildReplica = ChildControlPlane

export interface ReplicaOptions {
  readonly schedulerIntervalMs?: number
  readonly runScheduler?: boolean
}

export function startChildReplica(t: Tap, i: Installation, name: string, o: ReplicaOptions = {}): Promise<ChildReplica> {
  return startChildControlPlane({
    t,
    name,
    dataDir: join(i.base, name),
    storeUrl: i.storeUrlOf(name),
    masterKeyFile: i.masterKeyFile,
    faults: true,
    runScheduler: false,
    schedulerIntervalMs: 1_000,
    ...o,
  })
}

export interface Cluster {
  readonly replicas: ChildReplica[]
  readonly adminToken: string
  readonly identityPub: string
  /** What startTestAgent needs to enrol an agent through `replica` (real clock). */
  handle(replica: ChildReplica): AgentControlPlane
}

/** Starts replicas `names` together; the one that initialised the store wrote admin.token. */
export async function startCluster(t: Tap, i: Installation, names: readonly string[], o: ReplicaOptions = {}): Promise<Cluster> {
  const replicas = await Promise.all(names.map((n) => startChildReplica(t, i, n, o)))
  const adminToken = replicas.map((r) => r.adminToken()).find((token) => token !== undefined)
  if (adminToken === undefined) throw new Error('no replica wrote admin.token')
  const pubs = new Set(replicas.map((r) => r.identityPub()))
  if (pubs.size !== 1) throw new Error('the replicas wrote different identity.pub files')
  const identityPub = [...pubs][0] as string
  return {
    replicas,
    adminToken,
    identityPub,
    handle: (r) => ({ cp: { url: r.url }, clock: systemClock, identityPub, api: adminApi(r.url, adminToken) }),
  }
}

/** The names of the replicas holding the scheduler lease (from pg_locks: at most one). */
export async function leaseHolders(i: Installation): Promise<string[]> {
  // pg_advisory_lock(int4, int4) shows as classid/objid with objsubid 2; objid is the purpose.
  const rows = await pgExec<{ name: string }>(
    `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.objid = $2 AND l.granted
        AND left(a.application_name, length($1)) = $1`,
    [`${i.db.schema}_`, PG_LOCKS.scheduler],
  )
  return rows.map((r) => r.name.slice(i.db.schema.length + 1))
}
