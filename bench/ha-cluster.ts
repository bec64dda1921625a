// One deployment measured by bench/ha.bench.ts: N control planes (test/kit/cp-child.ts)
// on SQLite (N = 1) or on one PostgreSQL schema (N replicas, one master key file),
// a key the agents may encrypt with, and `keymesh agent` children spread over the
// replicas: agent i lists every replica, starting with replica i mod N, and is
// checked to be connected there. Also the PostgreSQL schema's life: created
// fresh for the deployment, dropped afterwards.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import pg from 'pg'

import { startChildControlPlane, type ChildControlPlane } from '../test/kit/cp.js'
import { GiveUp, until } from '../test/kit/wait.js'
import { cpuSeconds } from './measure.js'
import { AgentChild, freePort, requestJson } from './tunnel-procs.js'

export const KEY = 'bench-ha'
export const SERVICE = 'bench'

/** The server the bench uses: KEYMESH_HA_PG, else the local one the tests use. */
export const PG_URL = process.env['KEYMESH_HA_PG'] ?? `postgres://${encodeURIComponent(userInfo().username)}@127.0.0.1:5432/test`

async function pgQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 })
  await c.connect()
  try {
    return (await c.query<R>(sql, args)).rows
  } finally {
    await c.end()
  }
}

/** Schemas made by this process, so that a hard stop can drop them too. */
export const schemas = new Set<string>()

/**
 * A fresh schema name (created by the first replica) and its --store URL, which
 * also names the schema as application_name: every connection of the deployment
 * then shows under that name in pg_stat_activity (pgCpuMeter finds them so).
 */
export async function freshSchema(): Promise<{ schema: string; storeUrl: string }> {
  await pgQuery('SELECT 1')
  const schema = `keymesh_bench_ha_${randomBytes(5).toString('hex')}`
  schemas.add(schema)
  return { schema, storeUrl: `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}&application_name=${schema}` }
}

/**
 * CPU % (of one core) used by the PostgreSQL backends serving `schema`'s connections
 * over a window. The server must run on this machine (its /proc); backends that ended
 * during the window are missed, ones that started in it are counted whole. NaN when
 * the backends cannot be read (another machine, another user).
 */
export async function pgCpuMeter(schema: string): Promise<() => Promise<number>> {
  const backends = async (): Promise<number[]> =>
    (await pgQuery<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [schema])).map((r) => r.pid)
  const cpu = (pid: number): number | undefined => {
    try {
      return cpuSeconds(pid)
    } catch {
      return undefined
    }
  }
  const t0 = performance.now()
  const start = new Map((await backends()).map((pid) => [pid, cpu(pid)]))
  return async () => {
    const wall = (performance.now() - t0) / 1000
    let used = 0
    for (const pid of await backends()) {
      const now = cpu(pid)
      if (now === undefined) return NaN
      used += now - (start.get(pid) ?? 0)
    }
    return (100 * used) / wall
  }
}

export async function dropSchemas(): Promise<void> {
  for (const s of [...schemas]) {
    await pgQuery(`DROP SCHEMA IF EXISTS ${s} CASCADE`)
    schemas.delete(s)
  }
}

export interface DeploymentOptions {
  readonly name: string
  readonly dir: string
  readonly replicas: number
  /** A PostgreSQL --store URL; SQLite in the first replica's data directory when absent. */
  readonly storeUrl?: string
  readonly agents: number
  /** bin/keymesh.js */
  readonly bin: string
}

export interface Deployment {
  readonly cps: ChildControlPlane[]
  readonly urls: string[]
  readonly ports: number[]
  readonly token: string
  readonly identityFile: string
  readonly agents: AgentChild[]
  /** A join token for `service`, made through replica 0. */
  joinToken(service: string): Promise<string>
  stop(): Promise<void>
}

const portOf = (url: string): number => Number(new URL(url).port)

export async function startDeployment(o: DeploymentOptions): Promise<Deployment> {
  const cps: ChildControlPlane[] = []
  const agents: AgentChild[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)))
    await Promise.all(cps.map((c) => c.stop().catch(() => undefined)))
  }
  try {
    mkdirSync(o.dir, { recursive: true })
    const masterKeyFile = join(o.dir, 'master.key')
    writeFileSync(masterKeyFile, randomBytes(32), { mode: 0o600 })
    const start = async (n: number): Promise<string> => {
      const child = await startChildControlPlane({
        name: `${o.name} replica ${n + 1}`,
        dataDir: join(o.dir, `cp${n + 1}`),
        masterKeyFile,
        ...(o.storeUrl ? { storeUrl: o.storeUrl } : {}),
        stderr: 'inherit',
      })
      cps[n] = child
      return child.url
    }
    // The first replica initialises the store (identity, admin token); the others join it.
    const first = await start(0)
    const urls = [first, ...(await Promise.all(Array.from({ length: o.replicas - 1 }, (_, n) => start(n + 1))))]
    const token = readFileSync(join(o.dir, 'cp1', 'admin.token'), 'utf8').trim()
    const identityFile = join(o.dir, 'cp1', 'identity.pub')
    await requestJson('POST', `${first}/v1/keys`, { name: KEY, type: 'aead' }, token)
    await requestJson('POST', `${first}/v1/keys/${KEY}/grants`, { service: SERVICE, rights: ['encrypt', 'decrypt'] }, token)
    const joinToken = async (service: string): Promise<string> =>
      ((await requestJson('POST', `${first}/v1/join-tokens`, { service }, token)) as { token: string }).token

    for (let i = 0; i < o.agents; i++) {
      const home = i % urls.length
      const list = [...urls.slice(home), ...urls.slice(0, home)].join(',')
      const [apiPort, tunnelPort] = [await freePort(), await freePort()]
      agents.push(new AgentChild(`${o.name} agent ${i + 1}`, apiPort, o.bin, [
        '--cp', list, '--cp-key-file', identityFile, '--service', SERVICE, '--join-token', await joinToken(SERVICE),
        '--state-dir', join(o.dir, `agent${i + 1}`), '--tunnel-listen', `127.0.0.1:${tunnelPort}`,
        '--api', `127.0.0.1:${apiPort}`, '--log-level', 'warn',
      ]))
    }
    await Promise.all(agents.map((a, i) => until(async () => {
      if (!a.running) throw new GiveUp(`${a.name} exited: ${a.log.slice(-5).join(' | ')}`)
      const s = (await a.status()) as unknown as { ready: boolean; controlPlane?: { state: string; url: string | null } }
      const on = s.controlPlane?.url ? portOf(s.controlPlane.url) : undefined
      return s.ready && s.controlPlane?.state === 'connected' && on === portOf(urls[i % urls.length] as string) ? true : undefined
    }, `${a.name} connected to its replica`, { ms: 60_000, everyMs: 100, retryErrors: true })))
    return { cps, urls, ports: urls.map(portOf), token, identityFile, agents, joinToken, stop }
  } catch (e) {
    await stop()
    throw e
  }
}
