// npm run bench:tunnel [-- --quick] — the keymesh tunnel against stunnel, raw TCP and
// a plaintext Node relay pair of the same shape, in one run on loopback (issues 4 and
// 13). Paths (bench/tunnel-paths.ts, bench/tunnel-stunnel.ts), each client -> [A] -> [B] -> server:
//   raw TCP          client straight to the server
//   plaintext relay  relay A (TCP in -> ws out) and relay B (ws in -> TCP out), two children
//   stunnel          stunnel A (client) and B (server): TLS 1.3, TLS_CHACHA20_POLY1305_SHA256
//                    forced on both ends, a self-signed certificate A verifies
//   keymesh tunnel   agent A (--connect) and agent B (--expose), two `keymesh agent` children,
//                    enrolled with a control plane child; Noise KKpsk0 over WebSocket
// The client and the server (bench/tunnel-load.ts) live in this process for every path.
// Measured, metric by metric, in rounds that alternate the paths (each round starts
// with the next path) so they see the same machine load; every figure is the median
// of the rounds (at least 3):
//   1. new connection through the path (connect + first byte echoed), p50/p99, one at a time
//   2. RSS (/proc/<pid>/status VmRSS) of A and B with 0 and with N idle connections,
//      held open until each hop reports N open; KiB per idle connection (one pass)
//   3. 64-byte request/response round trip p50/p99 on one connection, after a warm-up
//   4. throughput, 1 and 4 streams, each direction, Gbit/s over a fixed window after a
//      warm-up, with each process's CPU (/proc/<pid>/stat) during the counted window,
//      and the CPU seconds both ends spent per GB carried
//   5. redis-benchmark -t get,set -c 50 against the local Redis through each path
//      (skipped, saying why, when there is no Redis on 127.0.0.1:6379)
// then the ratios and the targets of issue 13 (bench/tunnel-report.ts). Everything binds
// 127.0.0.1, stops by itself (a hard deadline kills every child) and removes its temp dir.
// BENCH_TUNNEL_BASELINE=DIR adds the agents of another built checkout (DIR/bin/keymesh.js,
// e.g. main before a change) as the path 'keymesh baseline': before/after in one run.
// For profiling runs: BENCH_TUNNEL_ONLY=keymesh,stunnel measures only the paths named,
// BENCH_TUNNEL_STEPS=up1,down1 only the steps named (conn, memory, rtt, up1, down1, up4,
// down4, redis).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { until } from '../test/kit/wait.js'
import { cpuMeter, openFileLimit, percentile, rssOf } from './measure.js'
import { LoadServer, newConnections, openIdle, roundTrips, throughput } from './tunnel-load.js'
import { keymeshPath, rawPath, relayPath, type KeymeshPath, type Path } from './tunnel-paths.js'
import { installHardStop } from './tunnel-procs.js'
import { REDIS_PORT, redisBenchmark, redisMissing } from './tunnel-redis.js'
import { report, RUNS, type Cfg, type Row } from './tunnel-report.js'
import { ensureStunnel, stunnelPath } from './tunnel-stunnel.js'

const quick = process.argv.includes('--quick')
const CFG: Cfg = quick
  ? { warmMs: 200, measureMs: 700, rounds: 3, rttWarm: 100, rttN: 500, connWarm: 5, connN: 60, idle: 200, redisN: 5_000, deadlineMs: 600_000 }
  : { warmMs: 500, measureMs: 1_500, rounds: 3, rttWarm: 500, rttN: 3_000, connWarm: 10, connN: 200, idle: 1_000, redisN: 10_000, deadlineMs: 1_800_000 }
const IDLE_CONC = 32
const only = process.env['BENCH_TUNNEL_ONLY']?.split(',').map((s) => s.trim())
const wanted = (name: string): boolean => only === undefined || only.some((o) => name.toLowerCase().startsWith(o.toLowerCase()))
const steps = process.env['BENCH_TUNNEL_STEPS']?.split(',').map((s) => s.trim())
const step = (name: string): boolean => steps === undefined || steps.includes(name)

// The idle step holds both ends of every connection in this process, and each hop two sockets per connection.
if (openFileLimit() < 2 * CFG.idle + 256) {
  console.error(`open-file limit ${openFileLimit()} is too low for ${CFG.idle} idle connections: raise it with ulimit -n`)
  process.exit(1)
}

const here = dirname(fileURLToPath(import.meta.url))
const started = performance.now()
const tmp = mkdtempSync(join(tmpdir(), 'keymesh-bench-tunnel-'))
// For looking into what limits the agents: their log level, and node flags for them
// (e.g. BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof').
const logLevel = process.env['BENCH_AGENT_LOG_LEVEL'] ?? 'warn'
const agentNodeArgs = (process.env['BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '')

// Past the deadline, what was measured is still printed before everything stops.
let reported = false
const printReport = (): void => {
  if (reported) return
  reported = true
  report({ cfg: CFG, paths, rows, broken })
}
installHardStop('bench:tunnel', tmp, CFG.deadlineMs, async () => {
  if (reported) return
  console.log('\n(partial figures: the deadline came first)\n')
  printReport()
})

const server = new LoadServer()
const paths: Path[] = []
const notMeasured: string[] = []

/**
 * Waits until the server and every hop of `p` hold no connection (the last step's
 * closes are done); the error names what is still open.
 */
async function settle(p: Path): Promise<void> {
  let last = ''
  try {
    await until(async () => {
      const open = p.open ? await p.open() : {}
      last = `server ${server.open}, ${Object.entries(open).map(([k, n]) => `${k} ${n}`).join(', ')}`
      return server.open === 0 && Object.values(open).every((n) => n === 0) ? true : undefined
    }, `${p.name}: connections closed`, { ms: 20_000, everyMs: 50, retryErrors: true })
  } catch (e) {
    throw new Error(`${(e as Error).message}; still open: ${last}`)
  }
}

/**
 * Runs one measurement step of `p`, then waits until its connections are closed, so
 * that a step which leaves connections behind is blamed on its own path. Why measuring
 * stopped is kept per path: one path's failure leaves the others measured.
 */
const broken = new Map<Path, string>()
async function attempt(p: Path, what: string, fn: () => Promise<void>): Promise<void> {
  if (broken.has(p)) return
  try {
    await fn()
    await settle(p)
  } catch (e) {
    broken.set(p, `${what}: ${(e as Error).message}`)
    process.stdout.write(` [${p.name} stopped]`)
    server.dropAll() // so that the next path starts clean
  }
}

/** `fn` for every path, CFG.rounds times; each round starts with the next path. */
async function rounds(what: string, fn: (p: Path, round: number) => Promise<void>): Promise<void> {
  for (let round = 0; round < CFG.rounds; round++) {
    for (let i = 0; i < paths.length; i++) {
      const p = paths[(i + round) % paths.length] as Path
      await attempt(p, `${what}, round ${round + 1}`, () => fn(p, round))
    }
  }
}

const rows = new Map<Path, Row>()
const row = (p: Path): Row => rows.get(p) as Row

/** RSS of each hop with 0 and with CFG.idle idle connections through the path. */
async function idleMemory(p: Path): Promise<Record<string, { rss0: number; rssN: number }>> {
  await sleep(500)
  const rss0 = Object.fromEntries(Object.entries(p.hops).map(([k, pid]) => [k, rssOf(pid)]))
  const sockets = await openIdle(p.port, CFG.idle, IDLE_CONC)
  try {
    await until(async () => {
      const open = p.open ? await p.open() : {}
      return Object.values(open).every((n) => n >= CFG.idle) ? true : undefined
    }, `${p.name}: ${CFG.idle} open at each hop`, { ms: 30_000, everyMs: 100, retryErrors: true })
    await sleep(500)
    return Object.fromEntries(Object.entries(p.hops).map(([k, pid]) => [k, { rss0: rss0[k] as number, rssN: rssOf(pid) }]))
  } finally {
    for (const s of sockets) s.destroy()
  }
}

/** Starts a path, or notes why it is not measured. */
async function add(name: string, start: () => Promise<Path>): Promise<void> {
  if (!wanted(name)) return
  try {
    paths.push(await start())
  } catch (e) {
    notMeasured.push(`${name} not measured: ${(e as Error).message}`)
    console.log(`${name} not measured: ${(e as Error).message}`)
  }
}

let km: KeymeshPath | undefined
try {
  const serverPort = await server.listen()
  console.log(
    `keymesh tunnel benchmark — node ${process.version}, ${quick ? 'quick' : 'full'} run, ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  )
  const noRedis = await redisMissing()
  if (noRedis !== undefined) console.log(`redis-benchmark not run: ${noRedis}`)
  const redis = noRedis === undefined ? REDIS_PORT : undefined
  await add('raw TCP', async () => rawPath(serverPort, redis))
  await add('plaintext relay', () => relayPath(here, serverPort, redis))
  await add('stunnel', () => stunnelPath(ensureStunnel((l) => console.log(l)), tmp, serverPort, redis))
  await add('keymesh tunnel', async () => (km = await keymeshPath(here, tmp, serverPort, logLevel, agentNodeArgs, redis)))
  const baseline = process.env['BENCH_TUNNEL_BASELINE']
  if (baseline !== undefined) {
    const bin = join(baseline, 'bin', 'keymesh.js')
    mkdirSync(join(tmp, 'baseline'))
    await add('keymesh baseline', () => keymeshPath(here, join(tmp, 'baseline'), serverPort, logLevel, agentNodeArgs, redis, { name: 'keymesh baseline', bin }))
  }
  for (const p of paths) rows.set(p, { conn: [], rtt: [], tp: {}, redis: [] })
  const busy = loadavg()[0] ?? 0
  if (busy > cpus().length * 0.75) console.log(`warning: load average ${busy.toFixed(2)} on ${cpus().length} cores: other work competes for the CPU, so the figures will be low and noisy; read the ratios`)
  console.log(`client and server in this process (pid ${process.pid}); ${paths.map((p) => `${p.name}: ${Object.entries(p.hops).map(([k, pid]) => `${k} pid ${pid}`).join(', ') || 'no hops'}`).join('; ')}`)

  process.stdout.write('measuring: new connections')
  if (step('conn')) await rounds('new connections', async (p) => {
    const t = await newConnections(p.port, CFG.connWarm, CFG.connN)
    row(p).conn.push({ p50: percentile(t, 50), p99: percentile(t, 99) })
  })
  process.stdout.write(', idle memory')
  for (const p of paths) {
    if (Object.keys(p.hops).length > 0 && step('memory')) {
      await attempt(p, 'idle memory', async () => {
        row(p).mem = await idleMemory(p)
      })
    }
  }
  process.stdout.write(', round trips')
  if (step('rtt')) await rounds('round trips', async (p) => {
    const t = await roundTrips(p.port, 64, CFG.rttWarm, CFG.rttN)
    row(p).rtt.push({ p50: percentile(t, 50), p99: percentile(t, 99) })
  })
  process.stdout.write(', throughput')
  for (const run of RUNS.filter((r) => step(r.key))) {
    await rounds(`throughput, ${run.label}`, async (p) => {
      const r = await throughput(p.port, server, run.dir, run.streams, CFG.warmMs, CFG.measureMs, () => cpuMeter({ bench: process.pid, ...p.hops }))
      const cpu = r.window ?? {}
      const hops = Object.keys(p.hops)
      // CPU seconds of both ends per GB carried: % of a core × seconds / GB.
      const cpuPerGb = hops.length === 0 || r.bytes === 0 ? NaN : (hops.reduce((a, k) => a + (cpu[k] ?? NaN), 0) / 100) * r.secs / (r.bytes / 1e9)
      ;(row(p).tp[run.key] ??= []).push({ gbps: r.gbps, cpu, cpuPerGb })
    })
  }
  if (redis !== undefined && step('redis')) {
    process.stdout.write(', redis-benchmark')
    await rounds('redis-benchmark', async (p) => {
      if (p.redisPort !== undefined) row(p).redis.push(await redisBenchmark(p.redisPort, CFG.redisN))
    })
  }
  console.log(' — done\n')

  printReport()
  if (km) {
    for (const a of Object.values(km.agents)) if (a.logLines > 0) console.log(`   ${a.name} wrote ${a.logLines} log line(s) at level ${logLevel}; last: ${a.log[a.log.length - 1] ?? ''}`)
  }
  for (const line of notMeasured) {
    console.log(`   ${line.split('\n')[0]}`)
    process.exitCode = 1
  }
  if (broken.size > 0) process.exitCode = 1
} catch (e) {
  console.error(`\nbench:tunnel failed: ${(e as Error).stack ?? String(e)}`)
  process.exitCode = 1
} finally {
  await Promise.all(paths.map((p) => p.stop().catch(() => undefined)))
  await server.close()
  rmSync(tmp, { recursive: true, force: true })
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  process.exit(process.exitCode ?? 0)
}
