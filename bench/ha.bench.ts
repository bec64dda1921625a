// npm run bench:ha [-- --quick] — several control planes on PostgreSQL (issue 6, "Performance").
//
// Three deployments, one after the other, each with 3 `keymesh agent` children
// (bench/ha-cluster.ts):
//   SQLite  one control plane on its embedded store (the single-process baseline)
//   PG x1   one control plane on a fresh PostgreSQL schema
//   PG x3   three replicas on a fresh schema, one agent on each
// and for each:
//   1. admin requests/s: GET /v1/keys (a read) and POST /v1/keys (a write; writes
//      take one database-wide lock in turn, so they cannot scale out), 8 keep-alive
//      clients spread over the replicas (bench/data-load.ts);
//   2. encrypt operations/s through the agents' API, every agent loaded at once
//      (bench/data-load.ts): one 1 KiB item per request, and batches of 50;
//   3. rotation-to-delivery: simulated agents (test/kit/fake-agent.ts) of web
//      on replica 2 and of api on replica 3, the pair rotated through replica 1's
//      admin API; the time from sending the rotation to each agent holding the
//      new version, p50/p99 (on one control plane: the same, on the one);
//   4. failover, where there are several replicas: replica 2 is stopped (SIGSTOP:
//      silent, as a host that lost power; only the agents' liveness check can tell)
//      and replica 1 killed (SIGKILL: a reset), each timed from the signal to its
//      agent being connected to another replica (polled every 20 ms).
// Then the ratios PG x3 / PG x1 and the targets (encrypt >= 2x, cross-replica
// delivery p99 <= 1 s, failover <= 5 s), PASS or MISS, with the CPU each kind of
// process used: on a 2-core machine the cores are the ceiling, whatever the replica
// count. The tests (test/ha/*-failover.test.ts, replicas.test.ts) check that these
// things happen; how fast is measured here, where a busy machine shows as a figure
// instead of a failed test.
// Everything binds 127.0.0.1, each PostgreSQL deployment uses a schema of its own,
// dropped afterwards, and a hard deadline kills every child, drops the schemas and
// removes the temp dir. KEYMESH_HA_PG names another server (default: the local one).
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

import type { MessageOf } from '../protocol/src/index.js'
import { pairId } from '../protocol/src/index.js'
import { killAll, type JsonChild } from '../test/kit/child.js'
import { FakeAgent } from '../test/kit/fake-agent.js'
import { until, withTimeout } from '../test/kit/wait.js'
import { httpLoad, type LoadResult } from './data-load.js'
import { dropSchemas, freshSchema, KEY, pgCpuMeter, PG_URL, startDeployment, type Deployment } from './ha-cluster.js'
import { cpuMeter, fmt, pct, percentile, ratio, table, verdict } from './measure.js'
import { installHardStop, requestJson } from './tunnel-procs.js'

const quick = process.argv.includes('--quick')
const CFG = quick
  ? { warmMs: 300, measureMs: 1_200, rotations: 4, deadlineMs: 120_000 }
  : { warmMs: 500, measureMs: 3_000, rotations: 12, deadlineMs: 175_000 }
const AGENTS = 3
const ADMIN_CONC = 8
const ENC_CONC = 16 // per agent
const BATCH = 50
const BATCH_CONC = 2 // per agent
const ITEM = 1024
const FAKES = 4 // simulated agents per side of the pair
const TARGET = { encryptRatio: 2, deliveryP99Ms: 1_000, failoverMs: 5_000 }
const PAIR = pairId('web', 'api')

const here = dirname(fileURLToPath(import.meta.url))
const bin = join(here, '..', '..', 'bin', 'keymesh.js')
const started = performance.now()
const tmp = mkdtempSync(join(tmpdir(), 'keymesh-bench-ha-'))

// The hard stop also drops the schemas.
installHardStop('bench:ha', tmp, CFG.deadlineMs, dropSchemas)

interface Figures {
  readonly name: string
  readonly replicas: number
  readonly adminGet: LoadResult
  readonly adminPost: LoadResult
  readonly encrypt: LoadResult
  readonly batched: LoadResult
  readonly cpu: Record<string, number | undefined>
  readonly delivery: number[]
  readonly rotateMs: number[]
  readonly failover: Failover | undefined
}

/** Milliseconds from a replica's failure to its agent being connected to another replica, and what the agent logged as the cause. */
interface Move {
  readonly ms: number
  readonly cause: string
}
interface Failover {
  readonly silent: Move
  readonly kill: Move
}

/** Every agent loaded at once; rates and latencies summed/merged. */
async function encryptLoad(d: Deployment, path: string, body: (i: number) => Buffer, concurrency: number, opsPerRequest: number): Promise<LoadResult> {
  const runs = await Promise.all(d.agents.map((a) =>
    httpLoad({ port: a.apiPort, path, body, concurrency, warmMs: CFG.warmMs, measureMs: CFG.measureMs, opsPerRequest, token: a.apiToken() })))
  return {
    opsPerSec: runs.reduce((s, r) => s + r.opsPerSec, 0),
    requests: runs.reduce((s, r) => s + r.requests, 0),
    latencies: runs.flatMap((r) => r.latencies).sort((a, b) => a - b),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    firstError: runs.find((r) => r.firstError)?.firstError,
  }
}


const current = (m: MessageOf<'pair.update'>): number | undefined => m.pair.versions.find((v) => v.state === 'current')?.version

/** Rotations through replica 1, timed to each simulated agent on replicas 2 and 3 holding the new version. */
async function delivery(d: Deployment): Promise<{ delivery: number[]; rotateMs: number[] }> {
  const [first] = d.urls as [string]
  await requestJson('POST', `${first}/v1/intentions`, { src: 'web', dst: 'api' }, d.token)
  const cpKey = readFileSync(d.identityFile, 'utf8').trim()
  const fakes: FakeAgent[] = []
  try {
    for (const [service, home] of [['web', 1], ['api', 2]] as const) {
      const url = d.urls[home % d.urls.length] as string
      for (let i = 0; i < FAKES; i++) {
        const a = new FakeAgent({ url, cpKey, service, joinToken: await d.joinToken(service) })
        fakes.push(a)
        await withTimeout(a.welcome().then(() => a.keyset()), 15_000, `a simulated ${service} agent`)
      }
    }
    const times: number[] = []
    const rotateMs: number[] = []
    for (let r = 1; r <= CFG.rotations; r++) {
      const version = r + 1
      const t0 = performance.now()
      const held = fakes.map((a) => a.next('pair.update', (m) => m.pair.pairId === PAIR && current(m) === version).then(() => performance.now() - t0))
      await requestJson('POST', `${first}/v1/pairs/web/api/rotate`, undefined, d.token)
      rotateMs.push(performance.now() - t0)
      times.push(...(await withTimeout(Promise.all(held), 15_000, `delivery of v${version}`)))
    }
    return { delivery: times.sort((a, b) => a - b), rotateMs: rotateMs.sort((a, b) => a - b) }
  } finally {
    await Promise.all(fakes.map((a) => a.close().catch(() => undefined)))
  }
}

/** Fails replica `i` with `fail` and times until agent `i` (whose first replica it is) is connected to another. */
async function movedOff(d: Deployment, i: number, fail: () => void): Promise<Move> {
  const agent = d.agents[i] as Deployment['agents'][number]
  const home = d.ports[i]
  const linesBefore = agent.logLines
  const t0 = performance.now()
  fail()
  await until(async () => {
    const s = (await agent.status()) as unknown as { controlPlane?: { state: string; url: string | null } }
    const on = s.controlPlane?.url ? Number(new URL(s.controlPlane.url).port) : undefined
    return s.controlPlane?.state === 'connected' && on !== home
  }, `${agent.name} on another replica than ${i + 1}`, { ms: 60_000, everyMs: 20 })
  const ms = performance.now() - t0
  // The agent logs (at warn) why it left: the liveness check, or a lost connection.
  const fresh = agent.logLines - linesBefore
  const logged = fresh > 0 ? agent.log.slice(-fresh).join('\n') : ''
  const cause = /stopped answering/.test(logged)
    ? 'liveness: nothing heard for controlDeadMs'
    : /control session lost|not reachable/.test(logged) ? 'the connection closed' : 'not logged'
  return { ms, cause }
}

/** Replica 2 goes silent (SIGSTOP, resumed afterwards), then replica 1 dies (SIGKILL). */
async function failover(d: Deployment): Promise<Failover> {
  const [first, second] = d.cps as unknown as [JsonChild, JsonChild]
  const silent = await movedOff(d, 1, () => second.proc.kill('SIGSTOP'))
  second.proc.kill('SIGCONT')
  const kill = await movedOff(d, 0, () => first.proc.kill('SIGKILL'))
  return { silent, kill }
}

async function measureDeployment(name: string, replicas: number, pg: boolean): Promise<Figures> {
  process.stdout.write(`${name}: starting`)
  const fresh = pg ? await freshSchema() : undefined
  const storeUrl = fresh?.storeUrl
  const d = await startDeployment({
    name, dir: join(tmp, name.replace(/\W+/g, '-')), replicas, agents: AGENTS, bin,
    ...(storeUrl ? { storeUrl } : {}),
  })
  try {
    const pids = Object.fromEntries([
      ['bench', process.pid], ...d.cps.map((c, i) => [`cp${i}`, c.pid]), ...d.agents.map((a, i) => [`agent${i}`, a.pid]),
    ])
    process.stdout.write(', admin')
    const common = { port: d.ports, token: d.token, concurrency: ADMIN_CONC, warmMs: CFG.warmMs, measureMs: CFG.measureMs }
    const adminGet = await httpLoad({ ...common, method: 'GET', path: '/v1/keys' })
    const adminPost = await httpLoad({ ...common, method: 'POST', path: '/v1/keys', body: (i) => Buffer.from(JSON.stringify({ name: `k-${i}`, type: 'aead' })) })
    process.stdout.write(', encrypt')
    const plaintexts = Array.from({ length: 64 }, () => randomBytes(ITEM).toString('base64'))
    const single = plaintexts.map((p) => Buffer.from(JSON.stringify({ key: KEY, plaintext: p })))
    const batch = Buffer.from(JSON.stringify({ items: Array.from({ length: BATCH }, (_, i) => ({ key: KEY, plaintext: plaintexts[i % plaintexts.length] })) }))
    const meter = cpuMeter(pids)
    const pgMeter = fresh ? await pgCpuMeter(fresh.schema) : undefined
    const encrypt = await encryptLoad(d, '/v1/encrypt', (i) => single[i % single.length] as Buffer, ENC_CONC, 1)
    const use = meter()
    const pgUse = pgMeter ? await pgMeter() : undefined
    const batched = await encryptLoad(d, '/v1/encrypt', () => batch, BATCH_CONC, BATCH)
    process.stdout.write(', delivery')
    const sum = (prefix: string): number => Object.entries(use).filter(([k]) => k.startsWith(prefix)).reduce((s, [, v]) => s + v, 0)
    const cpu: Record<string, number | undefined> = { bench: use['bench'], cps: sum('cp'), agents: sum('agent'), pg: pgUse }
    const { delivery: times, rotateMs } = await delivery(d)
    let fo: Failover | undefined
    if (replicas > 1 && d.agents.length > 1) {
      process.stdout.write(', failover')
      fo = await failover(d)
    }
    console.log(' — done')
    return { name, replicas, adminGet, adminPost, encrypt, batched, cpu, delivery: times, rotateMs, failover: fo }
  } finally {
    await d.stop()
    await dropSchemas()
  }
}

const errs = (...rs: LoadResult[]): string => {
  const n = rs.reduce((s, r) => s + r.errors, 0)
  return n === 0 ? '-' : `${n} (${(rs.find((r) => r.firstError)?.firstError ?? '').slice(0, 50)})`
}

try {
  console.log(`keymesh HA benchmark — node ${process.version}, ${quick ? 'quick' : 'full'} run, ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  console.log(`PostgreSQL: ${PG_URL.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')} (on this machine: its CPU counts against the same cores)`)
  const busy = loadavg()[0] ?? 0
  if (busy > cpus().length * 0.75) console.log(`warning: load average ${busy.toFixed(2)} on ${cpus().length} cores: other work competes for the CPU, so the figures will be low and noisy`)
  const sqlite = await measureDeployment('SQLite', 1, false)
  const pg1 = await measureDeployment('PG x1', 1, true)
  const pg3 = await measureDeployment('PG x3', 3, true)
  const all = [sqlite, pg1, pg3]

  console.log(`\n1. Per deployment (${AGENTS} agents; ${CFG.measureMs / 1000} s windows after ${CFG.warmMs / 1000} s warm-up)`)
  console.log(table(['deployment', 'admin GET/s', 'admin POST/s', 'encrypt ops/s', `encrypt items/s (x${BATCH})`, 'enc p50 ms', 'enc p99 ms', 'CPU cps', 'CPU pg', 'CPU agents', 'CPU bench', 'errors'], all.map((f) => [
    f.name, f.adminGet.opsPerSec, f.adminPost.opsPerSec, f.encrypt.opsPerSec, f.batched.opsPerSec,
    fmt(percentile(f.encrypt.latencies, 50)), fmt(percentile(f.encrypt.latencies, 99)),
    pct(f.cpu['cps']), pct(f.cpu['pg']), pct(f.cpu['agents']), pct(f.cpu['bench']), errs(f.adminGet, f.adminPost, f.encrypt, f.batched),
  ])))
  console.log(`   admin: ${ADMIN_CONC} keep-alive clients over the replicas; encrypt: ${ENC_CONC} clients per agent, one ${ITEM} B item per request, or ${BATCH_CONC} per agent with ${BATCH} items`)
  console.log("   CPU: % of one core during the single-item encrypt run, summed over the control planes / the PostgreSQL backends of the deployment's connections / the agents / this load")

  console.log(`\n2. Rotation-to-delivery (${CFG.rotations} rotations x ${2 * FAKES} simulated agents; rotated through replica 1, agents on replicas 2 and 3 where there are three)`)
  console.log(table(['deployment', 'p50 ms', 'p99 ms', 'max ms', 'rotate request p50 ms'], all.map((f) => [
    f.replicas > 1 ? `${f.name} (across replicas)` : `${f.name} (one control plane)`,
    fmt(percentile(f.delivery, 50)), fmt(percentile(f.delivery, 99)), fmt(f.delivery[f.delivery.length - 1] ?? NaN), fmt(percentile(f.rotateMs, 50)),
  ])))

  console.log(`\n3. Failover (${pg3.name}): from the signal to the agent of that replica connected to another, default agent limits`)
  const fo = pg3.failover
  console.log(table(['replica', 'how', 'ms', 'the agent left on'], [
    ['replica 2', 'SIGSTOP (silent)', fmt(fo?.silent.ms ?? NaN), fo?.silent.cause ?? '-'],
    ['replica 1', 'SIGKILL', fmt(fo?.kill.ms ?? NaN), fo?.kill.cause ?? '-'],
  ]))

  console.log('\n4. Ratios and the targets of issues 6 and 11')
  const p99 = percentile(pg3.delivery, 99)
  console.log(table(['what', 'measured', 'target', 'verdict'], [
    ['admin GET/s, PG x3 / PG x1', ratio(pg3.adminGet.opsPerSec, pg1.adminGet.opsPerSec), '-', '-'],
    ['admin POST/s, PG x3 / PG x1 (writes take turns)', ratio(pg3.adminPost.opsPerSec, pg1.adminPost.opsPerSec), '-', '-'],
    ['PG x1 / SQLite, encrypt ops/s', ratio(pg1.encrypt.opsPerSec, sqlite.encrypt.opsPerSec), '-', '-'],
    ['encrypt ops/s, PG x3 / PG x1', ratio(pg3.encrypt.opsPerSec, pg1.encrypt.opsPerSec), `>= ${TARGET.encryptRatio}x`, verdict(pg3.encrypt.opsPerSec >= TARGET.encryptRatio * pg1.encrypt.opsPerSec)],
    [`encrypt items/s (x${BATCH}), PG x3 / PG x1`, ratio(pg3.batched.opsPerSec, pg1.batched.opsPerSec), `>= ${TARGET.encryptRatio}x`, verdict(pg3.batched.opsPerSec >= TARGET.encryptRatio * pg1.batched.opsPerSec)],
    ['cross-replica delivery p99 (PG x3)', `${fmt(p99)} ms`, `<= ${TARGET.deliveryP99Ms} ms`, verdict(p99 <= TARGET.deliveryP99Ms)],
    ...(fo
      ? [
          ['failover from a silent replica (PG x3)', `${fmt(fo.silent.ms)} ms`, `<= ${TARGET.failoverMs} ms`, verdict(fo.silent.ms <= TARGET.failoverMs)],
          ['failover from a killed replica (PG x3)', `${fmt(fo.kill.ms)} ms`, `<= ${TARGET.failoverMs} ms`, verdict(fo.kill.ms <= TARGET.failoverMs)],
        ]
      : []),
  ]))
  console.log(`   on ${cpus().length} cores every process of a deployment (control planes, agents, PostgreSQL, this load) shares the same CPUs,`)
  console.log('   so more replicas add no cores: the encrypt ratio shows what a replica costs or saves, not what more machines would give')
  const failed = all.reduce((n, f) => n + f.adminGet.errors + f.adminPost.errors + f.encrypt.errors + f.batched.errors, 0)
  if (failed > 0) {
    console.log(`   ${failed} request(s) failed`)
    process.exitCode = 1
  }
} catch (e) {
  console.error(`\nbench:ha failed: ${(e as Error).stack ?? String(e)}`)
  process.exitCode = 1
} finally {
  killAll()
  await dropSchemas().catch((e: Error) => console.error(`could not drop every schema: ${e.message}`))
  rmSync(tmp, { recursive: true, force: true })
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  process.exit(process.exitCode ?? 0)
}
