// npm run bench:soak [-- --minutes N | --quick] [--out FILE] — memory under steady load
// (issue 17, "Memory"). Does any process grow while the work stays the same?
//
// A control plane (test/kit/cp-child.ts) and two `keymesh agent` children (bench-client
// --connect, bench-server --expose, bench/tunnel-paths.ts) run as their own processes;
// this process makes the load (bench/soak-load.ts), modest so the machine stays shared:
//   - encrypt and decrypt through both agents' local APIs, RATE calls a second in all
//     (default 200), 1 KiB plaintexts with a context, every decrypt checked
//   - STREAMS (3) long-lived echo connections through the tunnel, a 16 KiB chunk each
//     every 250 ms, checked byte for byte, and a new short connection every 2 s
//   - a pair-key rotation every 30 s (the control plane runs with a 90 s pair grace, so
//     the agents hold a few versions, not a pile that grows for an hour by design)
// Every SAMPLE seconds (30; --quick 10) it reads each process's own metrics
// (keymesh_process_resident_memory_bytes, keymesh_nodejs_heap_size_used_bytes,
// keymesh_nodejs_external_memory_bytes, keymesh_process_open_fds from /metrics; and
// RssAnon, the anonymous part of RSS, from /proc/<pid>/status) and prints a line. At
// the end (bench/soak-report.ts): per process, the least-squares slopes of RSS, RssAnon,
// heap and open fds after the warm-up (the first 5 minutes; --quick 1), in MB (10^6
// bytes) per hour with their error, over the last half of that window too (growth that
// levels off shows there as none), and the verdict against the goal, < 1 MB/hour,
// on RssAnon: total RSS also moves with file pages the kernel drops and reads back under
// other processes' pressure. The load generator itself is shown, not judged.
//
// Options: --minutes N (default 60), --quick (5 minutes), --warmup M (minutes),
// --sample S (seconds), --rate N (KMS calls a second), --out FILE (config, every sample,
// counts and slopes as JSON; rewritten after each sample, so a run cut short keeps
// what it saw), --report FILE (no run: the memory table of such a file, with
// --warmup). BENCH_SOAK_CP_NODE_ARGS='…' passes node flags to the control plane
// (--heapsnapshot-signal=SIGUSR2, say). Exits 1 when an answer was wrong (a plaintext
// or an echo that differs) or the run failed; a missed goal is printed, as every bench
// does. Binds 127.0.0.1 only, stops by itself, removes its temp dir.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { metric, parseMetrics } from '../test/kit/metrics.js'
import { openFds, procMemory, rssOf, table } from './measure.js'
import { KmsLoad, Rotations, TunnelLoad } from './soak-load.js'
import { memoryReport, type Sample, type SampledProc } from './soak-report.js'
import { LoadServer } from './tunnel-load.js'
import { CLIENT_SERVICE, SERVER_SERVICE, keymeshPath, type KeymeshPath } from './tunnel-paths.js'
import { installHardStop, requestJson } from './tunnel-procs.js'

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string' },
    quick: { type: 'boolean', default: false },
    warmup: { type: 'string' },
    sample: { type: 'string' },
    rate: { type: 'string' },
    out: { type: 'string' },
    report: { type: 'string' },
  },
})
const num = (v: string | undefined, dflt: number, what: string): number => {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!(n > 0)) {
    console.error(`bench:soak: --${what} wants a positive number, not ${v}`)
    process.exit(2)
  }
  return n
}
const minutes = num(args.minutes, args.quick ? 5 : 60, 'minutes')
const CFG = {
  minutes,
  warmupMin: num(args.warmup, Math.min(5, minutes / 5), 'warmup'),
  sampleSecs: num(args.sample, args.quick ? 10 : 30, 'sample'),
  rate: num(args.rate, 200, 'rate'),
  streams: 3,
  chunkBytes: 16 * 1024,
  streamEveryMs: 250,
  newEveryMs: 2_000,
  rotateEveryMs: 30_000,
  pairGraceMs: 90_000,
}
const KEY = 'bench-soak'
const MB = 1e6

if (args.report !== undefined) {
  // The analysis of a run's JSON (--out) alone: no processes, no load.
  const saved = JSON.parse(readFileSync(args.report, 'utf8')) as { config: { minutes: number; warmupMin: number }; procs: Array<Omit<SampledProc, 'judged'> & { judged?: boolean }> }
  const warmupMin = args.warmup === undefined ? saved.config.warmupMin : CFG.warmupMin
  memoryReport(saved.procs.map((p) => ({ ...p, judged: p.judged ?? !p.name.startsWith('load') })), warmupMin, saved.config.minutes)
  process.exit(0)
}

const here = dirname(fileURLToPath(import.meta.url))
const started = performance.now()
const tmp = mkdtempSync(join(tmpdir(), 'keymesh-bench-soak-'))
installHardStop('bench:soak', tmp, (CFG.minutes + 3) * 60_000)

interface Proc extends SampledProc {
  /** Its name in the progress lines. */
  readonly short: string
  /** Base URL of its /metrics; none for this process. */
  readonly metricsBase?: string
  readonly samples: Sample[]
}

const fileSize = (f: string): number => {
  try {
    return statSync(f).size
  } catch {
    return 0
  }
}

/** A process's figures: from its own /metrics (prom-client's process metrics), and RssAnon from /proc, which no metric carries. */
async function sampleOf(p: Proc, t: number, dataDir: string): Promise<Sample> {
  const anon = procMemory(p.pid).anon
  if (p.metricsBase === undefined) {
    const m = process.memoryUsage()
    return { t, rss: m.rss, anon, heapUsed: m.heapUsed, external: m.external, fds: openFds(p.pid) }
  }
  const res = await fetch(`${p.metricsBase}/metrics`)
  if (!res.ok) throw new Error(`${p.name} /metrics answered ${res.status}`)
  const series = parseMetrics(await res.text())
  const m = (name: string): number => metric(series, `keymesh_${name}`)
  const s: Sample = { t, rss: m('process_resident_memory_bytes') || rssOf(p.pid), anon, heapUsed: m('nodejs_heap_size_used_bytes'), external: m('nodejs_external_memory_bytes'), fds: m('process_open_fds') || openFds(p.pid) }
  return p.name === 'control plane' ? { ...s, dbBytes: fileSize(join(dataDir, 'keymesh.db')) + fileSize(join(dataDir, 'keymesh.db-wal')) } : s
}

const server = new LoadServer()
let path: KeymeshPath | undefined
let wrong = 0
try {
  console.log(
    `keymesh soak — node ${process.version}, ${CFG.minutes} min (warm-up ${CFG.warmupMin} min, a sample every ${CFG.sampleSecs} s), ` +
      `${CFG.rate} KMS calls/s, ${CFG.streams} tunnel streams, a rotation every ${CFG.rotateEveryMs / 1000} s; ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  )
  const serverPort = await server.listen()
  const cpNodeArgs = (process.env['BENCH_SOAK_CP_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '')
  path = await keymeshPath(here, tmp, serverPort, 'warn', [], undefined, { cp: { pairGraceMs: CFG.pairGraceMs, nodeArgs: cpNodeArgs } })
  const { A, B } = path.agents
  await requestJson('POST', `${path.cpUrl}/v1/keys`, { name: KEY, type: 'aead' }, path.adminToken)
  for (const service of [CLIENT_SERVICE, SERVER_SERVICE]) {
    await requestJson('POST', `${path.cpUrl}/v1/keys/${KEY}/grants`, { service, rights: ['encrypt', 'decrypt'] }, path.adminToken)
  }
  const procs: Proc[] = [
    { name: 'control plane', short: 'cp', pid: path.cp.pid, metricsBase: path.cpUrl, judged: true, samples: [] },
    { name: 'agent A (connects)', short: 'A', pid: A.pid, metricsBase: `http://127.0.0.1:${A.apiPort}`, judged: true, samples: [] },
    { name: 'agent B (exposes)', short: 'B', pid: B.pid, metricsBase: `http://127.0.0.1:${B.apiPort}`, judged: true, samples: [] },
    { name: 'load (this process)', short: 'load', pid: process.pid, judged: false, samples: [] },
  ]
  console.log(procs.map((p) => `${p.name} pid ${p.pid}`).join(', '))

  const kms = new KmsLoad([{ port: A.apiPort, token: A.apiToken() as string }, { port: B.apiPort, token: B.apiToken() as string }], KEY, CFG.rate)
  const tunnels = new TunnelLoad({ port: path.port, streams: CFG.streams, chunkBytes: CFG.chunkBytes, everyMs: CFG.streamEveryMs, newEveryMs: CFG.newEveryMs })
  const rotations = new Rotations(path.cpUrl, path.adminToken, CLIENT_SERVICE, SERVER_SERVICE, CFG.rotateEveryMs)
  const counts = (): Record<string, unknown> => ({
    kms: { ...kms.counts, failures: kms.failures.toJSON() },
    tunnels: { ...tunnels.counts, failures: tunnels.failures.toJSON() },
    rotations: { done: rotations.done, failures: rotations.failures.toJSON() },
  })
  const write = (extra: Record<string, unknown> = {}): void => {
    if (args.out === undefined) return
    const body = { config: CFG, startedAt: new Date(Date.now() - (performance.now() - t0)).toISOString(), procs: procs.map((p) => ({ name: p.name, pid: p.pid, judged: p.judged, samples: p.samples })), counts: counts(), ...extra }
    writeFileSync(args.out, JSON.stringify(body, null, 1) + '\n')
  }

  const t0 = performance.now()
  kms.start()
  tunnels.start()
  rotations.start()
  const endAt = t0 + CFG.minutes * 60_000
  const mb = (n: number): string => (n / MB).toFixed(1)
  for (let k = 0; ; k++) {
    const t = performance.now() - t0
    for (const p of procs) {
      try {
        p.samples.push(await sampleOf(p, t, path.cp.dataDir))
      } catch (e) {
        console.log(`  ${p.name}: no sample (${(e as Error).message})`)
      }
    }
    for (const a of [A, B]) if (!a.running) throw new Error(`${a.name} exited: ${a.log.slice(-5).join(' | ')}`)
    if (!path.cp.running) throw new Error('the control plane exited')
    const last = (p: Proc): Sample | undefined => (p.samples[p.samples.length - 1]?.t === t ? p.samples[p.samples.length - 1] : undefined)
    const cpDb = last(procs[0] as Proc)?.dbBytes
    console.log(
      `${(t / 60_000).toFixed(1).padStart(5)} min  ` +
        procs.map((p) => {
          const s = last(p)
          return s ? `${p.short} rss ${mb(s.rss)} anon ${mb(s.anon ?? NaN)} heap ${mb(s.heapUsed)} fds ${s.fds}` : `${p.name}: -`
        }).join(' | ') +
        `  db ${cpDb === undefined ? '-' : mb(cpDb)} MB | kms ${kms.counts.encrypt + kms.counts.decrypt} (fail ${kms.failures.total}, skip ${kms.counts.skipped}) tunnel rt ${tunnels.counts.roundTrips} new ${tunnels.counts.newConnections} (fail ${tunnels.failures.total}) rot ${rotations.done}`,
    )
    write()
    const next = t0 + (k + 1) * CFG.sampleSecs * 1000
    if (next > endAt + 1) break
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())))
  }
  await rotations.stop()
  await tunnels.stop()
  await kms.stop()

  // ---- report
  const loadSecs = (performance.now() - t0) / 1000
  const n = (x: number): string => String(x)
  console.log(`\n1. Load over ${(loadSecs / 60).toFixed(1)} min`)
  console.log(
    table(['what', 'done', 'per second', 'failed', 'wrong answers', 'failures by kind'], [
      ['KMS encrypt + decrypt', n(kms.counts.encrypt + kms.counts.decrypt), (kms.counts.encrypt + kms.counts.decrypt) / loadSecs, n(kms.failures.total), n(kms.counts.wrongPlaintext), kms.failures.toString()],
      ['KMS calls skipped (all in flight)', n(kms.counts.skipped), '-', '-', '-', '-'],
      [`tunnel echo round trips (${CFG.chunkBytes / 1024} KiB)`, n(tunnels.counts.roundTrips), tunnels.counts.roundTrips / loadSecs, n(tunnels.failures.total), n(tunnels.counts.wrongEcho), tunnels.failures.toString()],
      ['new tunnel connections', n(tunnels.counts.newConnections), tunnels.counts.newConnections / loadSecs, '-', '-', `${tunnels.counts.reopened} long-lived reopened`],
      ['pair-key rotations', n(rotations.done), rotations.done / loadSecs, n(rotations.failures.total), '-', rotations.failures.toString()],
    ]),
  )
  wrong = kms.counts.wrongPlaintext + tunnels.counts.wrongEcho

  const { slopes, pass } = memoryReport(procs, CFG.warmupMin, CFG.minutes)
  if (wrong > 0) console.log(`${wrong} WRONG ANSWER(S): a decrypt or an echo gave back something else`)
  write({ slopes, verdict: pass ? 'PASS' : 'MISS', wrongAnswers: wrong })
  if (args.out !== undefined) console.log(`samples: ${args.out}`)
  if (wrong > 0) process.exitCode = 1
} catch (e) {
  console.error(`\nbench:soak failed: ${(e as Error).stack ?? String(e)}`)
  process.exitCode = 1
} finally {
  await path?.stop().catch(() => undefined)
  await server.close()
  rmSync(tmp, { recursive: true, force: true })
  console.log(`\ntotal ${((performance.now() - started) / 60_000).toFixed(1)} min, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  process.exit(process.exitCode ?? 0)
}
