// Control-plane replicas in child processes (cp-child.ts) on one PostgreSQL schema,
// for the tests that kill one with SIGKILL: what an operator runs, each replica
// with its own data directory and port, all with one master key file.
//
// The child runs from dist/ when dist/ is at least as new as every source it
// imports (`npm test` builds first): a child under tap's TypeScript loader takes
// ten seconds or more to start on a busy machine, compiled it takes one or two.
// Otherwise it runs through the loader, slowly but on the current sources.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import { systemClock } from '../../platform/src/index.js'
import { ADMIN_TOKEN_FILE, IDENTITY_PUB_FILE } from '../../control-plane/src/index.js'
import { PG_LOCKS } from '../../control-plane/src/index.js'
import type { AgentControlPlane } from '../kit/agent.js'
import { pgExec, pgSchema, type PgSchema } from '../kit/pg.js'

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
  plan(n: number, comment?: string): void
  fail(message: string): void
  comment(...args: unknown[]): void
}

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..', '..')
const compiled = !import.meta.url.endsWith('.ts')
const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'))
const STARTUP_LIMIT_MS = 60_000

/** The newest modification time of the .ts files under `dir`. */
function newest(dir: string): number {
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) t = Math.max(t, newest(p))
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs)
  }
  return t
}

/** node arguments that run cp-child: compiled when dist/ is fresh, else through the loader. */
function childEntry(): { args: string[]; how: string } {
  if (compiled) return { args: [join(here, 'cp-child.js')], how: 'compiled' }
  const dist = join(root, 'dist', 'test', 'ha', 'cp-child.js')
  // What cp-child imports: the control plane and the packages below it.
  const sources = ['control-plane/src', 'protocol/src', 'platform/src'].map((d) => newest(join(root, d)))
  sources.push(statSync(join(here, 'cp-child.ts')).mtimeMs)
  if (existsSync(dist) && statSync(dist).mtimeMs >= Math.max(...sources)) return { args: [dist], how: 'dist (fresh)' }
  return { args: [...loader, join(here, 'cp-child.ts')], how: 'TypeScript loader (dist/ is older than the sources; `npm run build` makes this faster)' }
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

export interface ChildReplica {
  readonly name: string
  readonly url: string
  readonly proc: ChildProcess
  readonly exited: Promise<unknown>
  /** What the child wrote on stderr (its warn and error logs). */
  readonly stderr: () => string
  /** Sends a command and resolves with the next line carrying `key`. */
  ask<T = Record<string, unknown>>(cmd: string, key: string): Promise<T>
  /** Resolves with the next line carrying `key`, prompted or not. */
  line<T = Record<string, unknown>>(key: string): Promise<T>
  /** SIGKILL, and resolves once the process is gone. */
  kill(): Promise<void>
}

export interface ReplicaOptions {
  readonly schedulerIntervalMs?: number
  readonly runScheduler?: boolean
}

export async function startChildReplica(t: Tap, i: Installation, name: string, o: ReplicaOptions = {}): Promise<ChildReplica> {
  const entry = childEntry()
  if (entry.how.startsWith('TypeScript')) t.comment(`${name} runs through the ${entry.how}`)
  const env = { ...process.env }
  delete env['NODE_OPTIONS'] // coverage hooks have nothing to record from a process killed with -9
  const options = { dataDir: join(i.base, name), storeUrl: i.storeUrlOf(name), masterKeyFile: i.masterKeyFile, ...o }
  const proc = spawn(process.execPath, [...entry.args, JSON.stringify(options)], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = once(proc, 'exit')
  t.teardown(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    proc.stdin?.end() // a graceful stop: the child closes its store and exits
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  })
  let stderr = ''
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))

  const lines: Array<Record<string, unknown>> = []
  const waiters: Array<{ key: string; resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }> = []
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    let m: Record<string, unknown>
    try {
      m = JSON.parse(text) as Record<string, unknown>
    } catch {
      return
    }
    const w = waiters.findIndex((x) => x.key in m)
    if (w >= 0) waiters.splice(w, 1)[0]!.resolve(m)
    else lines.push(m)
  })
  void exited.then(() => {
    for (const w of waiters.splice(0)) w.reject(new Error(`${name} exited while waiting for "${w.key}": ${stderr.slice(-2000)}`))
  })
  const line = <T>(key: string): Promise<T> => {
    const i = lines.findIndex((m) => key in m)
    if (i >= 0) return Promise.resolve(lines.splice(i, 1)[0] as T)
    if (proc.exitCode !== null || proc.signalCode !== null) return Promise.reject(new Error(`${name} has exited`))
    return new Promise<T>((resolve, reject) => waiters.push({ key, resolve: resolve as (m: Record<string, unknown>) => void, reject }))
  }

  const first = line<{ url: string }>('url')
  const timer = setTimeout(() => proc.kill('SIGKILL'), STARTUP_LIMIT_MS)
  const { url } = await first.finally(() => clearTimeout(timer)).catch((e: Error) => {
    throw new Error(`${name} did not start (${entry.how}): ${e.message}`)
  })
  return {
    name,
    url,
    proc,
    exited,
    stderr: () => stderr,
    ask: (cmd, key) => {
      const answer = line<never>(key)
      proc.stdin?.write(cmd + '\n')
      return answer
    },
    line,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL')
        await exited
      }
    },
  }
}

export type ApiCall = AgentControlPlane['api']

/** fetch() against a replica's admin API with `token`. */
export function apiOf(url: string, token: string): ApiCall {
  return async (method, path, body, as = token) => {
    const headers: Record<string, string> = {}
    if (as !== null) headers['authorization'] = `Bearer ${as}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    const text = await res.text()
    return { status: res.status, body: text ? JSON.parse(text) : undefined }
  }
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
  const tokenFile = names.map((n) => join(i.base, n, ADMIN_TOKEN_FILE)).find((p) => existsSync(p))
  if (tokenFile === undefined) throw new Error('no replica wrote admin.token')
  const adminToken = readFileSync(tokenFile, 'utf8').trim()
  const pubs = new Set(names.map((n) => readFileSync(join(i.base, n, IDENTITY_PUB_FILE), 'utf8').trim()))
  if (pubs.size !== 1) throw new Error('the replicas wrote different identity.pub files')
  const identityPub = [...pubs][0] as string
  return {
    replicas,
    adminToken,
    identityPub,
    handle: (r) => ({ cp: { url: r.url }, clock: systemClock, identityPub, api: apiOf(r.url, adminToken) }),
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

/** Polls `check` (a database query, say) every `everyMs` until it returns a value; fails after `ms`. */
export async function poll<T>(what: string, check: () => Promise<T | undefined>, ms = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
