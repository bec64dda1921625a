// What bench/tunnel.bench.ts prints: the figures by path (medians of the rounds), CPU
// per path and run with the CPU seconds both ends spend per GB, memory per idle
// connection, and the targets of issue 13 — keymesh against stunnel in the same run —
// with the ratios to the other paths beside them.
import { cpus } from 'node:os'

import { fmt, median, pct, table, verdict } from './measure.js'
import type { Path } from './tunnel-paths.js'

export interface Cfg {
  warmMs: number
  measureMs: number
  rounds: number
  rttWarm: number
  rttN: number
  connWarm: number
  connN: number
  idle: number
  redisN: number
  deadlineMs: number
}

export const RUNS = [
  { key: 'up1', dir: 'up', streams: 1, label: '1 stream up' },
  { key: 'down1', dir: 'down', streams: 1, label: '1 stream down' },
  { key: 'up4', dir: 'up', streams: 4, label: '4 streams up' },
  { key: 'down4', dir: 'down', streams: 4, label: '4 streams down' },
] as const

export interface Round {
  gbps: number
  /** % of one core during the counted window, by process ('bench', 'A', 'B'). */
  cpu: Record<string, number>
  /** CPU seconds of A and B together per GB carried (NaN without hops). */
  cpuPerGb: number
}

/** Every round's figures of one path. */
export interface Row {
  conn: Array<{ p50: number; p99: number }>
  rtt: Array<{ p50: number; p99: number }>
  /** By run key ('up1', ...). */
  tp: Record<string, Round[]>
  redis: Array<{ get: number; set: number }>
  mem?: Record<string, { rss0: number; rssN: number }>
}

const TARGET = { ofStunnel: 1, stretch: 1.25, connP99Ms: 5, kibPerTunnel: 64 }
const KIB = 1024
const MIB = 1024 * 1024

const num = (n: number | undefined): string | number => (n === undefined || !Number.isFinite(n) ? '-' : n)
const finite = (n: number | undefined): number | undefined => (n !== undefined && Number.isFinite(n) ? n : undefined)
const div = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : finite(a / b))
const x = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(2)}x`)

/** The medians of one path's rounds. */
function medians(r: Row | undefined) {
  const tp = (key: string): Round[] => r?.tp[key] ?? []
  /** The round whose rate is the median (its CPU figures go with it). */
  const mid = (key: string): Round | undefined => {
    const rs = [...tp(key)].sort((a, b) => a.gbps - b.gbps)
    return rs[(rs.length - 1) >> 1]
  }
  return {
    gbps: (key: string) => finite(median(tp(key).map((t) => t.gbps))),
    cpuPerGb: (key: string) => finite(median(tp(key).map((t) => t.cpuPerGb))),
    cpu: (key: string) => mid(key)?.cpu,
    rtt50: finite(median((r?.rtt ?? []).map((t) => t.p50))),
    rtt99: finite(median((r?.rtt ?? []).map((t) => t.p99))),
    conn50: finite(median((r?.conn ?? []).map((t) => t.p50))),
    conn99: finite(median((r?.conn ?? []).map((t) => t.p99))),
    get: finite(median((r?.redis ?? []).map((t) => t.get))),
    set: finite(median((r?.redis ?? []).map((t) => t.set))),
  }
}

export function report(o: { cfg: Cfg; paths: Path[]; rows: Map<Path, Row>; broken: Map<Path, string> }): void {
  const { cfg, paths, rows } = o
  const m = new Map(paths.map((p) => [p, medians(rows.get(p))]))
  const byName = (name: string): ReturnType<typeof medians> => medians(rows.get(paths.find((p) => p.name === name) as Path))
  const us = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : ms * 1000)

  console.log(
    `1. Figures by path, each the median of ${cfg.rounds} rounds that alternate the paths. Throughput (Gbit/s): ${cfg.measureMs / 1000} s after ${cfg.warmMs / 1000} s warm-up;\n` +
      `   up = client -> server, down = server -> client. Round trip: 64 B request/response, ${cfg.rttN} after ${cfg.rttWarm}. New connection: connect + first\n` +
      `   byte echoed, ${cfg.connN} after ${cfg.connWarm}, one at a time. Redis: redis-benchmark -t get,set -c 50 -n ${cfg.redisN}, requests/s.`,
  )
  console.log(
    table(
      ['path', ...RUNS.map((r) => r.label), 'RTT p50 µs', 'RTT p99 µs', 'conn p50 ms', 'conn p99 ms', 'redis GET/s', 'redis SET/s'],
      paths.map((p) => {
        const r = m.get(p) as ReturnType<typeof medians>
        return [p.name, ...RUNS.map((run) => num(r.gbps(run.key))), num(us(r.rtt50)), num(us(r.rtt99)), num(r.conn50), num(r.conn99), num(r.get), num(r.set)]
      }),
    ),
  )
  console.log(`\n2. CPU during the counted window of the median round, % of one core (${cpus().length} cores; 'bench' = the client and server in this process),\n   and the CPU seconds A and B spent together per GB carried (median of the rounds)`)
  console.log(
    table(
      ['path', 'run', 'bench', 'A', 'B', 'CPU s/GB (A+B)'],
      paths.flatMap((p) => RUNS.map((run) => {
        const r = m.get(p) as ReturnType<typeof medians>
        const c = r.cpu(run.key)
        return [p.name, run.label, pct(c?.['bench']), pct(c?.['A']), pct(c?.['B']), num(r.cpuPerGb(run.key))]
      })),
    ),
  )
  console.log(`\n3. Memory: VmRSS of each hop with 0 and with ${cfg.idle} idle connections through it (each proven with one echoed byte and counted open by the hop)`)
  const memRows: Array<Array<string | number>> = []
  for (const p of paths) {
    for (const [hop, mm] of Object.entries(rows.get(p)?.mem ?? {})) memRows.push([`${p.name} ${hop}`, mm.rss0 / MIB, mm.rssN / MIB, (mm.rssN - mm.rss0) / cfg.idle / KIB])
  }
  console.log(table(['process', 'RSS 0 MiB', `RSS ${cfg.idle} MiB`, 'KiB per idle connection'], memRows))

  console.log('\n4. The targets of issue 13: keymesh against stunnel, measured in this run (ratios; the absolute figures are above)')
  const km = byName('keymesh tunnel')
  const st = byName('stunnel')
  const relay = byName('plaintext relay')
  const raw = byName('raw TCP')
  const kmRow = rows.get(paths.find((p) => p.name === 'keymesh tunnel') as Path)
  const rowsOut: Array<Array<string | number>> = []
  const target = (what: string, v: number | undefined, shown: string, goal: string, ok: (v: number) => boolean): void => {
    rowsOut.push([what, v === undefined ? '-' : shown, goal, v === undefined ? 'not measured' : verdict(ok(v))])
  }
  for (const run of RUNS) {
    const r = div(km.gbps(run.key), st.gbps(run.key))
    const goal = run.streams === 1 ? `>= ${TARGET.ofStunnel.toFixed(2)}x (stretch ${TARGET.stretch}x)` : `>= ${TARGET.ofStunnel.toFixed(2)}x`
    target(`keymesh / stunnel, ${run.label}`, r, x(r), goal, (v) => v >= TARGET.ofStunnel)
  }
  const rtt = div(km.rtt50, st.rtt50)
  target('keymesh / stunnel, 64 B round trip p50', rtt, x(rtt), '<= 1.00x', (v) => v <= 1)
  for (const k of ['get', 'set'] as const) {
    const r = div(km[k], st[k])
    target(`keymesh / stunnel, redis ${k.toUpperCase()} requests/s`, r, x(r), '>= 1.00x', (v) => v >= 1)
  }
  const c99 = km.conn99
  const c99r = div(c99, st.conn99)
  target('keymesh new connection p99', c99, `${fmt(c99 ?? 0)} ms (${x(c99r)} stunnel)`, `<= ${TARGET.connP99Ms} ms and <= stunnel`, (v) => v <= TARGET.connP99Ms && (c99r ?? Infinity) <= 1)
  rowsOut.push(['enrolments/s', 'see npm run bench:cp', '>= 200', '-'])
  for (const hop of ['A', 'B']) {
    const mm = kmRow?.mem?.[hop]
    const v = mm ? (mm.rssN - mm.rss0) / cfg.idle / KIB : undefined
    target(`keymesh agent ${hop} per idle tunnel`, v, `${fmt(v ?? 0)} KiB`, `<= ${TARGET.kibPerTunnel} KiB`, (y) => y <= TARGET.kibPerTunnel)
  }
  for (const run of RUNS.filter((r) => r.streams === 1)) {
    const r = div(km.cpuPerGb(run.key), st.cpuPerGb(run.key))
    target(`CPU per GB (both agents) / stunnel's, ${run.label}`, r, x(r), '<= 1.00x', (v) => v <= 1)
  }
  console.log(table(['what', 'measured', 'target', 'verdict'], rowsOut))

  console.log('\n5. Other ratios in this run (keymesh / baseline: against the agents of BENCH_TUNNEL_BASELINE, when given)')
  const base = byName('keymesh baseline')
  const other: Array<Array<string | number>> = []
  for (const run of RUNS) {
    other.push([
      run.label,
      x(div(km.gbps(run.key), relay.gbps(run.key))),
      x(div(st.gbps(run.key), raw.gbps(run.key))),
      x(div(relay.gbps(run.key), raw.gbps(run.key))),
      x(div(km.cpuPerGb(run.key), relay.cpuPerGb(run.key))),
      x(div(km.gbps(run.key), base.gbps(run.key))),
      x(div(km.cpuPerGb(run.key), base.cpuPerGb(run.key))),
    ])
  }
  other.push(['64 B round trip p50', x(div(km.rtt50, relay.rtt50)), x(div(st.rtt50, raw.rtt50)), x(div(relay.rtt50, raw.rtt50)), '-', x(div(km.rtt50, base.rtt50)), '-'])
  other.push(['new connection p99', x(div(km.conn99, relay.conn99)), x(div(st.conn99, raw.conn99)), x(div(relay.conn99, raw.conn99)), '-', x(div(km.conn99, base.conn99)), '-'])
  other.push(['redis GET requests/s', x(div(km.get, relay.get)), x(div(st.get, raw.get)), x(div(relay.get, raw.get)), '-', x(div(km.get, base.get)), '-'])
  other.push(['redis SET requests/s', x(div(km.set, relay.set)), x(div(st.set, raw.set)), x(div(relay.set, raw.set)), '-', x(div(km.set, base.set)), '-'])
  console.log(table(['figure', 'keymesh / relay', 'stunnel / raw', 'relay / raw', 'CPU/GB keymesh / relay', 'keymesh / baseline', 'CPU/GB keymesh / baseline'], other))
  for (const [p, why] of o.broken) console.log(`   ${p.name}: measuring stopped at ${why}`)
}
