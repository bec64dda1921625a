// npm run bench:cp [-- --quick] — the control plane under load, on loopback.
//
// The control plane runs alone in a child process (test/kit/cp-child.ts: 127.0.0.1,
// port 0, a temporary data directory) so that its RSS, read from
// /proc/<pid>/status, is its own; the admin-API client and every simulated agent
// (test/kit/fake-agent.ts: real Noise XK, real records) live in this process.
// Both processes share this machine's cores, so every figure is printed beside a
// baseline measured in the same run, with the ratio, and with the CPU each
// process used while it was measured (100% = one core).
//
// Prints:
//   1. Admin API requests/s — key create and pair rotate, sequential and 8 in flight —
//      beside GET /healthz (the HTTP floor) at the same concurrency, and beside a bare
//      SQLite commit on the same file system with the store's settings (WAL,
//      synchronous=FULL): every change is one such commit, so that is the write floor.
//   2. Agent enrolments/s — fresh static key + pre-created join token each, full XK +
//      welcome + first key set, 16 in flight — beside in-process XK handshakes/s (the
//      crypto floor of one enrolment) and the SQLite commit floor. Target >= 200/s.
//      The agents are enrolled into 'web' and 'api' before any intention exists, so no
//      enrolment triggers pushes; a last row enrols a few more 'web' agents while the
//      'api' agents are connected, where each enrolment changes the peers' key sets.
//   3. Rotate-to-delivery — with 500 (then 1,000) agents connected (reconnecting with
//      their enrolled static keys), half 'web' and half 'api' with the intention
//      web -> api: the time from sending POST /v1/pairs/web/api/rotate to each agent
//      holding the pair.update with the new version, p50/p99/max over all agents and
//      rotations, beside the rotate request's own latency. Target p99 <= 1 s at 1,000.
//   4. The control plane's RSS at 0, 500 and 1,000 connected agents. Target <= 300 MB
//      at 1,000.
// Everything stops by itself: the child exits when its stdin pipe closes, and a hard
// deadline ends the run.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'

import { Database } from '../control-plane/src/index.js'
import { CONTROL_FEATURES, nodeSuite } from '../protocol/src/index.js'
import type { KeyPair } from '../protocol/src/index.js'
import { pairId } from '../protocol/src/index.js'
import { createXkInitiator, createXkResponder } from '../protocol/src/index.js'
import { runHandshake } from './handshake.js'
import { startChildControlPlane, type ChildControlPlane } from '../test/kit/cp.js'
import { FakeAgent } from '../test/kit/fake-agent.js'
import { withTimeout } from '../test/kit/wait.js'
import { cpuMeter, fmt, measure, openFileLimit, pct, percentile, procMemory, ratio, sortNum, table, verdict } from './measure.js'
import { installHardStop } from './tunnel-procs.js'

const quick = process.argv.includes('--quick')
// The control features the simulated agents name in hello (control-features.ts): all by
// default, as this keymesh's agents do; BENCH_CP_FEATURES=none is an agent from before
// them (whole pair.update pushes when a peer enrols, instead of pair.peers).
const AGENT_FEATURES: readonly string[] = (() => {
  const v = process.env['BENCH_CP_FEATURES']
  return v === undefined ? CONTROL_FEATURES : v === 'none' ? [] : v.split(',').filter((f) => f !== '')
})()
const CFG = quick
  ? { httpMs: 400, warmMs: 100, levels: [100, 200], rotations: 3, peerEnrolN: 16, deadlineMs: 150_000 }
  : { httpMs: 2_000, warmMs: 300, levels: [500, 1_000], rotations: 10, peerEnrolN: 32, deadlineMs: 420_000 }
const HTTP_CONC = 8
const ENROLL_CONC = 16
const CONNECT_CONC = 32
const ROTATE_PAIRS = 16
const DELIVERY_TIMEOUT_MS = 15_000
const PAIR = pairId('web', 'api')
const MB = 1024 * 1024

const started = performance.now()

// ---------------------------------------------------------------- small helpers

/** Runs fn(0..n-1) with at most `conc` in flight. */
async function pool(n: number, conc: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++)
  }
  await Promise.all(Array.from({ length: Math.min(conc, n) }, worker))
}

/** The file system type under `path` (SQLite's fsync cost depends on it). */
function fsType(path: string): string {
  try {
    let best = { mount: '', type: '?' }
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, mount, type] = line.split(' ')
      if (mount && type && (path === mount || path.startsWith(mount.endsWith('/') ? mount : mount + '/')) && mount.length >= best.mount.length) best = { mount, type }
    }
    return best.type
  } catch {
    return '?'
  }
}

/** CPU use of the control plane and of this process over a window, as % of one core, and the window's length. */
interface CpuUse { cp: number; bench: number; wallSec: number }
function cpMeter(cpPid: number): () => CpuUse {
  const t0 = performance.now()
  const meter = cpuMeter({ cp: cpPid, bench: process.pid })
  return () => {
    const { cp = NaN, bench = NaN } = meter()
    return { cp, bench, wallSec: (performance.now() - t0) / 1000 }
  }
}

// ---------------------------------------------------------------- the child control plane

interface ChildStats { rss: number; heapUsed: number; external: number; arrayBuffers: number; connected: number; pending: number }

/** The control plane (test/kit/cp-child.ts); --expose-gc: 'stats' collects before it reports, so heap figures are steadier. */
// BENCH_CP_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR' profiles the control plane (each start writes its own profile).
const startCp = (dataDir: string): Promise<ChildControlPlane> => startChildControlPlane({ dataDir, nodeArgs: ['--expose-gc', ...(process.env['BENCH_CP_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '')], stderr: 'inherit' })
const statsOf = async (c: ChildControlPlane): Promise<ChildStats> => (await c.ask<{ stats: ChildStats }>('stats', 'stats')).stats
/** Key-set pushes handed to sessions since the last call: count, first and last (epoch ms). */
const pushesOf = async (c: ChildControlPlane): Promise<{ count: number; first: number; last: number }> =>
  (await c.ask<{ pushes: { count: number; first: number; last: number } }>('pushes', 'pushes')).pushes

// ---------------------------------------------------------------- the admin API client

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 })
let baseUrl = ''
let adminToken = ''

function request(method: string, path: string, body?: unknown, auth = true): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers: Record<string, string | number> = {}
  if (auth) headers['authorization'] = `Bearer ${adminToken}`
  if (payload !== undefined) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = Buffer.byteLength(payload)
  }
  return new Promise((resolve, reject) => {
    const req = http.request(baseUrl + path, { method, headers, agent: httpAgent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined })
        } catch (e) {
          reject(e)
        }
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

async function expectOk(method: string, path: string, body?: unknown, auth = true): Promise<any> {
  const r = await request(method, path, body, auth)
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} -> ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

interface HttpRate { perSec: number; p50: number; p99: number; n: number; cp: number; bench: number }

/** Requests/s with `conc` in flight for CFG.httpMs (after a warm-up), latency percentiles and CPU use. */
async function httpRate(cpPid: number, conc: number, op: (i: number) => Promise<void>): Promise<HttpRate> {
  let i = 0
  const run = async (ms: number, lat: number[] | null): Promise<number> => {
    const start = performance.now()
    const end = start + ms
    await Promise.all(
      Array.from({ length: conc }, async () => {
        while (performance.now() < end) {
          const t = performance.now()
          await op(i++)
          lat?.push(performance.now() - t)
        }
      }),
    )
    return performance.now() - start
  }
  await run(CFG.warmMs, null)
  const lat: number[] = []
  const cpu = cpMeter(cpPid)
  const elapsed = await run(CFG.httpMs, lat)
  const used = cpu()
  sortNum(lat)
  return { perSec: (lat.length * 1000) / elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length, ...used }
}

// ---------------------------------------------------------------- baselines measured in this process

/** Full XK handshakes per second, both sides in this process: the crypto of one enrolment. */
function xkHandshakesPerSec(): number {
  const cp = nodeSuite.x25519Generate()
  const run = (): void => {
    runHandshake(
      createXkInitiator({ suite: nodeSuite, staticKey: nodeSuite.x25519Generate(), controlPlaneKey: cp.publicKey }),
      createXkResponder({ suite: nodeSuite, staticKey: cp }),
    )
  }
  return measure(run, quick ? 200 : 600).opsPerSec
}

/** Bare SQLite commits per second (one small row each) beside the store's file, with its settings. */
function sqliteCommitsPerSec(dir: string): number {
  const db = new Database(join(dir, 'bench-floor.db'))
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)')
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)')
    const row = Buffer.alloc(256)
    return measure(() => {
      db.exec('BEGIN IMMEDIATE')
      insert.run(row)
      db.exec('COMMIT')
    }, quick ? 300 : 1_000).opsPerSec
  } finally {
    db.close()
    for (const f of ['bench-floor.db', 'bench-floor.db-wal', 'bench-floor.db-shm']) rmSync(join(dir, f), { force: true })
  }
}

// ---------------------------------------------------------------- simulated agents

/** A fake agent plus the first time it held each version of the web/api pair (a thin wrapper; fake-agent.ts is unchanged). */
interface SimAgent {
  readonly agent: FakeAgent
  readonly service: string
  readonly seen: Map<number, number>
}

let lastPushAt = 0
let cpKey = ''

const currentVersion = (versions: readonly { version: number; state: string }[]): number | undefined => versions.find((v) => v.state === 'current')?.version

/** Takes every pair.update as it arrives (so none piles up) and stamps new versions of the pair. */
async function consumeUpdates(s: SimAgent): Promise<void> {
  try {
    for (;;) {
      const m = await s.agent.next('pair.update')
      const t = performance.now()
      lastPushAt = t
      if (m.pair.pairId !== PAIR) continue
      const v = currentVersion(m.pair.versions)
      if (v !== undefined && !s.seen.has(v)) s.seen.set(v, t)
    }
  } catch {
    // Closed.
  }
}

/**
 * Connects one agent and waits for welcome and its whole first key set: with a join
 * token it enrols (a fresh static key unless one is given), without one it reconnects.
 */
async function connect(service: string, o: { token?: string; staticKey?: KeyPair }): Promise<SimAgent> {
  const agent = new FakeAgent({
    url: baseUrl,
    cpKey,
    service,
    features: AGENT_FEATURES,
    ...(o.token !== undefined ? { joinToken: o.token } : {}),
    ...(o.staticKey !== undefined ? { staticKey: o.staticKey } : {}),
  })
  try {
    await withTimeout(
      (async () => {
        await agent.welcome()
        await agent.keyset()
      })(),
      30_000,
      `connecting a ${service} agent`,
    )
  } catch (e) {
    agent.ws.terminate()
    const close = await Promise.race([agent.closed, sleep(100, 'still open')])
    throw new Error(`${(e as Error).message}; close ${JSON.stringify(close)}${agent.channelError ? ` ${agent.channelError.code}` : ''}`)
  }
  const s: SimAgent = { agent, service, seen: new Map() }
  for (const m of agent.messages) {
    if (m.type !== 'keyset.pair' || m.pair.pairId !== PAIR) continue
    const v = currentVersion(m.pair.versions)
    if (v !== undefined) s.seen.set(v, 0)
  }
  agent.messages.length = 0
  // Synchronous from here to its first await, so no pair.update slips past unstamped.
  void consumeUpdates(s)
  return s
}

async function joinTokens(service: string, n: number): Promise<string[]> {
  const out: string[] = new Array(n)
  await pool(n, HTTP_CONC, async (i) => {
    out[i] = ((await expectOk('POST', '/v1/join-tokens', { service })) as { token: string }).token
  })
  return out
}

/** Waits until no pair.update has arrived for `quietMs` (pushes triggered earlier are done). */
async function quiesce(quietMs = 300, maxMs = 20_000): Promise<void> {
  const until = performance.now() + maxMs
  while (performance.now() < until && performance.now() - lastPushAt < quietMs) await sleep(50)
}

// ---------------------------------------------------------------- the run

const fdLimit = openFileLimit()
const maxLevel = Math.max(...CFG.levels)
if (fdLimit < maxLevel + CFG.peerEnrolN + 256) {
  console.error(`open-file limit ${fdLimit} is too low for ${maxLevel} agents (each process needs about one fd per agent plus slack): raise it with ulimit -n`)
  process.exit(1)
}

const dataDir = mkdtempSync(join(tmpdir(), 'keymesh-bench-cp-'))
let child: ChildControlPlane | undefined
const live: SimAgent[] = []

let cleaned = false
async function cleanup(): Promise<void> {
  if (cleaned) return
  cleaned = true
  await child?.stop()
  await Promise.race([Promise.all(live.map((a) => a.agent.closed)), sleep(5_000)])
  for (const a of live) a.agent.ws.terminate()
  httpAgent.destroy()
  rmSync(dataDir, { recursive: true, force: true })
}

installHardStop('bench:cp', dataDir, CFG.deadlineMs)

try {
  child = await startCp(dataDir)
  baseUrl = child.url
  adminToken = child.adminToken() as string
  cpKey = child.identityPub()
  let pid = child.pid

  console.log(
    `keymesh control-plane benchmark — node ${process.version}, ${quick ? 'quick' : 'full'} run, ${cpus().length} cores, ` +
      `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, open files ${fdLimit}, data dir on ${fsType(dataDir)}`,
  )
  console.log(`control plane in a child process (pid ${child.pid}, ${child.url}); admin client and simulated agents in this process (pid ${process.pid})`)

  const rssRows: Array<Array<string | number>> = []
  const rssRow = async (label: string, base: number | null, perAgentFrom: { rss: number; agents: number } | null, target: string): Promise<number> => {
    const raw = procMemory(pid).rss
    const st = await statsOf(child as ChildControlPlane)
    const gced = procMemory(pid).rss
    const perAgent = perAgentFrom && st.connected > perAgentFrom.agents ? `${fmt((gced - perAgentFrom.rss) / (st.connected - perAgentFrom.agents) / 1024)} KB` : '-'
    rssRows.push([label, String(st.connected), raw / MB, gced / MB, st.heapUsed / MB, base === null ? '-' : ratio(gced, base), perAgent, target])
    return gced
  }
  rssRows.push(['0 (fresh start, empty store)', '0', procMemory(pid).rss / MB, '-', '-', '-', '-', '-'])

  // ---- 1. admin API
  const commits = sqliteCommitsPerSec(dataDir)
  const adminRows: Array<Array<string | number>> = [['SQLite commit, WAL + synchronous=FULL, same fs (write floor)', '1', commits, 1000 / commits, '-', '-', '-', '-']]
  for (let i = 0; i < ROTATE_PAIRS; i++) await expectOk('POST', '/v1/intentions', { src: `rs${i}`, dst: `rd${i}` })
  for (const conc of [1, HTTP_CONC]) {
    const floor = await httpRate(pid, conc, async () => {
      await expectOk('GET', '/healthz', undefined, false)
    })
    adminRows.push(['GET /healthz (HTTP floor)', String(conc), floor.perSec, floor.p50, floor.p99, '1.00x', '-', `${pct(floor.cp)} / ${pct(floor.bench)}`])
    const create = await httpRate(pid, conc, async (i) => {
      await expectOk('POST', '/v1/keys', { name: `k${conc}-${i}`, type: 'aead' })
    })
    adminRows.push(['POST /v1/keys {type: aead}', String(conc), create.perSec, create.p50, create.p99, ratio(create.perSec, floor.perSec), ratio(create.perSec, commits), `${pct(create.cp)} / ${pct(create.bench)}`])
    const rotate = await httpRate(pid, conc, async (i) => {
      const p = i % ROTATE_PAIRS
      await expectOk('POST', `/v1/pairs/rs${p}/rd${p}/rotate`)
    })
    adminRows.push([`POST /v1/pairs/:a/:b/rotate (${ROTATE_PAIRS} pairs, no agents)`, String(conc), rotate.perSec, rotate.p50, rotate.p99, ratio(rotate.perSec, floor.perSec), ratio(rotate.perSec, commits), `${pct(rotate.cp)} / ${pct(rotate.bench)}`])
  }
  const pairs = (await expectOk('GET', '/v1/pairs')) as Array<{ pairId: string; primaryVersion: number }>
  const rotatedTo = pairs.find((p) => p.pairId === pairId('rs0', 'rd0'))?.primaryVersion ?? NaN

  // ---- 2. enrolment: maxLevel agents, half web, half api, before any intention exists (no pushes)
  const xk = xkHandshakesPerSec()
  const enrolN = maxLevel
  const services = Array.from({ length: enrolN }, (_, i) => (i % 2 === 0 ? 'web' : 'api'))
  const tokens = { web: await joinTokens('web', enrolN / 2), api: await joinTokens('api', enrolN / 2) }
  const keys: KeyPair[] = new Array(enrolN)
  const enrolLat: number[] = []
  const enrolled: SimAgent[] = []
  let cpu = cpMeter(pid)
  const e0 = performance.now()
  await pool(enrolN, ENROLL_CONC, async (i) => {
    const service = services[i] as 'web' | 'api'
    const t = performance.now()
    const s = await connect(service, { token: tokens[service][i >> 1] as string })
    enrolLat.push(performance.now() - t)
    keys[i] = s.agent.staticKey
    enrolled.push(s)
  })
  const enrolRate = enrolN / ((performance.now() - e0) / 1000)
  let used = cpu()
  sortNum(enrolLat)
  await Promise.all(enrolled.map((s) => s.agent.close()))
  const enrolRows: Array<Array<string | number>> = [
    ['XK handshake, both sides in this process (crypto floor)', '-', '-', xk, 1000 / xk, '-', '1.00x', '-', '-', '-'],
    ['SQLite commit, same fs (write floor; one per enrolment)', '-', '1', commits, 1000 / commits, '-', ratio(commits, xk), '1.00x', '-', '-'],
    [
      'enrol: fresh key + join token, XK + welcome + key set',
      String(enrolN),
      String(ENROLL_CONC),
      enrolRate,
      percentile(enrolLat, 50),
      percentile(enrolLat, 99),
      ratio(enrolRate, xk),
      ratio(enrolRate, commits),
      `${pct(used.cp)} / ${pct(used.bench)}`,
      `>= 200/s: ${verdict(enrolRate >= 200)}`,
    ],
  ]

  await sleep(300)
  await rssRow(`0 (end of 1-2; ${enrolN} were connected)`, null, null, '-')
  // A fresh control plane on the same data directory for sections 3-4, so their RSS
  // figures do not carry the high-water mark of sections 1-2.
  await child.stop()
  child = await startCp(dataDir)
  baseUrl = child.url
  pid = child.pid
  const rssBase = await rssRow('0 (restarted, same data dir)', null, null, '-')
  ;(rssRows[rssRows.length - 1] as unknown[])[5] = '1.00x'
  let prev = { rss: rssBase, agents: 0 }

  // ---- 3 and 4. reconnect the enrolled agents level by level; RSS and rotate-to-delivery at each
  const deliveryRows: Array<Array<string | number>> = []
  let reconnected = 0
  for (const [li, level] of CFG.levels.entries()) {
    const from = reconnected
    const lat: number[] = []
    cpu = cpMeter(pid)
    const c0 = performance.now()
    await pool(level - from, CONNECT_CONC, async (j) => {
      const i = from + j
      const t = performance.now()
      live.push(await connect(services[i] as string, { staticKey: keys[i] as KeyPair }))
      lat.push(performance.now() - t)
    })
    const rate = (level - from) / ((performance.now() - c0) / 1000)
    used = cpu()
    sortNum(lat)
    reconnected = level
    enrolRows.push([`reconnect (known key, no token): ${from} -> ${level} connected`, String(level - from), String(CONNECT_CONC), rate, percentile(lat, 50), percentile(lat, 99), ratio(rate, xk), ratio(rate, commits), `${pct(used.cp)} / ${pct(used.bench)}`, '-'])

    await quiesce()
    await sleep(300)
    const rss = await rssRow(`${level} agents`, rssBase, prev, level === 1000 ? '' : '-')
    if (level === 1000) (rssRows[rssRows.length - 1] as unknown[])[7] = `<= 300 MB: ${verdict(rss <= 300 * MB)}`
    prev = { rss, agents: level }

    if (li === 0) {
      // The intention after the first level is up: its one push reaches everyone, and no
      // reconnect pushes anything (only enrolments and endpoint changes change peers' sets).
      await expectOk('POST', '/v1/intentions', { src: 'web', dst: 'api' })
      const until = performance.now() + DELIVERY_TIMEOUT_MS
      while (performance.now() < until && live.some((a) => a.seen.size === 0)) await sleep(10)
    }

    const deliveries: number[] = []
    const httpLat: number[] = []
    const cpPushed: number[] = []
    let missed = 0
    // CPU counted only from each request to its last delivery, not in the pauses between.
    const inFlight = { cpSec: 0, benchSec: 0, wallSec: 0 }
    for (let r = 0; r < CFG.rotations; r++) {
      await quiesce(200)
      await pushesOf(child) // resets the child's count
      const meter = cpMeter(pid)
      const t0 = performance.now()
      const res = (await expectOk('POST', '/v1/pairs/web/api/rotate')) as { version: number }
      httpLat.push(performance.now() - t0)
      const v = res.version
      const until = t0 + DELIVERY_TIMEOUT_MS
      while (performance.now() < until && live.some((a) => !a.seen.has(v))) await sleep(5)
      const u = meter()
      const pushed = await pushesOf(child)
      if (pushed.count > 0) cpPushed.push(pushed.last - (performance.timeOrigin + t0))
      inFlight.cpSec += (u.cp * u.wallSec) / 100
      inFlight.benchSec += (u.bench * u.wallSec) / 100
      inFlight.wallSec += u.wallSec
      for (const a of live) {
        const t = a.seen.get(v)
        if (t === undefined) missed++
        else deliveries.push(t - t0)
      }
    }
    for (const a of live) a.agent.messages.length = 0
    sortNum(deliveries)
    sortNum(httpLat)
    sortNum(cpPushed)
    const p99 = percentile(deliveries, 99)
    deliveryRows.push([
      String(level),
      String(CFG.rotations),
      `${deliveries.length}${missed ? ` (${missed} missed)` : ''}`,
      percentile(deliveries, 50),
      p99,
      deliveries[deliveries.length - 1] ?? NaN,
      percentile(httpLat, 50),
      ratio(p99, percentile(httpLat, 50)),
      `${fmt(percentile(cpPushed, 50))} (${fmt(cpPushed[cpPushed.length - 1] ?? NaN)})`,
      `${pct((100 * inFlight.cpSec) / inFlight.wallSec)} / ${pct((100 * inFlight.benchSec) / inFlight.wallSec)}`,
      level === 1000 ? `<= 1000 ms: ${verdict(p99 <= 1000 && missed === 0)}` : '-',
    ])
  }

  // ---- 2, last row: enrolments that change connected peers' key sets
  const apiConnected = live.filter((a) => a.service === 'api').length
  const extra = await joinTokens('web', CFG.peerEnrolN)
  const peerLat: number[] = []
  const apiAgents = live.filter((a) => a.service === 'api')
  const apiBytes = (): number => apiAgents.reduce((n, a) => n + a.agent.bytesIn, 0)
  const bytes0 = apiBytes()
  cpu = cpMeter(pid)
  const p0 = performance.now()
  await pool(CFG.peerEnrolN, ENROLL_CONC, async (i) => {
    const t = performance.now()
    live.push(await connect('web', { token: extra[i] as string }))
    peerLat.push(performance.now() - t)
  })
  const peerRate = CFG.peerEnrolN / ((performance.now() - p0) / 1000)
  await quiesce()
  // Bytes, unlike rates, do not depend on the machine: what one enrolment costs the peers' sessions.
  const pushedPerEnrol = (apiBytes() - bytes0) / CFG.peerEnrolN
  used = cpu()
  sortNum(peerLat)
  enrolRows.push([`enrol 'web' with ${apiConnected} 'api' peers connected (${fmt(pushedPerEnrol / 1024)} KiB pushed to them each; ${AGENT_FEATURES.includes('pair.peers') ? 'pair.peers' : 'whole pairs'})`, String(CFG.peerEnrolN), String(ENROLL_CONC), peerRate, percentile(peerLat, 50), percentile(peerLat, 99), ratio(peerRate, xk), ratio(peerRate, commits), `${pct(used.cp)} / ${pct(used.bench)}`, '-'])

  // ---- report
  const cpuNote = "CPU: control plane / this process (agents + client) while measured, % of one core"
  console.log(`\n1. Admin API over HTTP/1.1 keep-alive (each figure ${CFG.httpMs} ms after ${CFG.warmMs} ms warm-up; ratios vs /healthz at the same concurrency and vs a bare SQLite commit)`)
  console.log(table(['request', 'in flight', 'per s', 'ms p50', 'ms p99', 'vs healthz', 'vs commit', 'CPU cp/bench'], adminRows))
  console.log(`   pair rotate spread over ${ROTATE_PAIRS} pairs (rs0:rd0 ended at v${rotatedTo}); ${cpuNote}`)
  console.log(`\n2. Agent enrolments per second (target >= 200/s; ratios vs in-process XK handshakes/s and vs a bare SQLite commit)`)
  console.log(table(['what', 'agents', 'in flight', 'per s', 'ms p50', 'ms p99', 'vs XK', 'vs commit', 'CPU cp/bench', 'target'], enrolRows))
  console.log(`\n3. Rotate-to-delivery: POST /v1/pairs/web/api/rotate sent -> each agent holds the pair.update with the new version (half web, half api; ratio: p99 vs the rotate request's own p50)`)
  console.log(table(['agents', 'rotations', 'deliveries', 'ms p50', 'ms p99', 'ms max', 'rotate HTTP ms p50', 'p99 vs HTTP', 'CP last push ms p50 (max)', 'CPU cp/bench', 'target (1,000)'], deliveryRows))
  console.log("   'CP last push': request sent -> the control plane handed the new key set to its last session's socket (clocks compared through performance.timeOrigin);")
  console.log('   the rest, up to the p99, is the simulated agents, all in this one process, decrypting and decoding their pair.update one after another.')
  console.log(`\n4. Control-plane RSS (child process, /proc/<pid>/status VmRSS; 'after GC' follows a forced gc() in the child; ratio vs 0 agents after the restart)`)
  console.log(table(['connected', 'CP counts', 'VmRSS MB', 'after GC MB', 'heap used MB', 'vs 0', 'per added agent', 'target (1,000)'], rssRows))
  console.log(`   peak VmHWM of the restarted control plane ${fmt(procMemory(pid).hwm / MB)} MB (sections 3-4 and the last row of 2)`)
} catch (e) {
  console.error(`bench:cp failed: ${(e as Error).stack ?? String(e)}`)
  process.exitCode = 1
} finally {
  await cleanup()
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  process.exit(process.exitCode ?? 0)
}
