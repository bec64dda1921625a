// The numbers of every benchmark script, in one place: rates, percentiles, ratios
// and verdicts, least-squares slopes, tables, and what /proc says of a process (RSS,
// CPU seconds, open files, the open-file limit). Figures from this shared, noisy machine are only meaningful as
// ratios against a baseline measured in the same run, so every bench prints its
// baseline beside the figure.
import { readdirSync, readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

const CLK_TCK = 100 // Linux USER_HZ, the unit of utime/stime in /proc/<pid>/stat

export interface Rate {
  /** Operations per second. */
  opsPerSec: number
  /** Mean milliseconds per operation. */
  msPerOp: number
  ops: number
}

/**
 * Runs `fn` in batches until `minMs` have passed (after a warm-up of `warmupMs`),
 * and returns the rate. Batching keeps the clock reads out of the measured cost.
 */
export function measure(fn: () => void, minMs = 400, warmupMs = 100): Rate {
  const run = (ms: number): { ops: number; elapsed: number } => {
    let ops = 0
    let batch = 1
    const start = performance.now()
    let elapsed = 0
    while (elapsed < ms) {
      for (let i = 0; i < batch; i++) fn()
      ops += batch
      elapsed = performance.now() - start
      if (elapsed < ms / 20) batch *= 2
    }
    return { ops, elapsed }
  }
  run(warmupMs)
  const { ops, elapsed } = run(minMs)
  return { opsPerSec: (ops * 1000) / elapsed, msPerOp: elapsed / ops, ops }
}

/** Best of `n` runs: the least disturbed by other work on the machine. */
export function bestOf(n: number, fn: () => Rate): Rate {
  let best: Rate | undefined
  for (let i = 0; i < n; i++) {
    const r = fn()
    if (!best || r.opsPerSec > best.opsPerSec) best = r
  }
  return best as Rate
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ')
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n')
}

export function fmt(n: number): string {
  if (n >= 100) return n.toFixed(0)
  if (n >= 10) return n.toFixed(1)
  return n.toFixed(2)
}

/** The p-th percentile of ascending `sorted` (nearest rank); NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] as number
}

/** The median of `values` (the mean of the middle two when even); NaN when empty. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = v.length >> 1
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2
}

/** Sorts numbers ascending, in place. */
export const sortNum = (a: number[]): number[] => a.sort((x, y) => x - y)

/** a / b as "1.23x", or '-' when that is no number. */
export const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-')

/** A CPU share as "42%", or '-' when unknown. */
export const pct = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '-' : `${n.toFixed(0)}%`)

/** A target met or missed, as the tables print it. */
export const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS')

/**
 * VmRSS (and its peak, VmHWM) of a process in bytes, from /proc/<pid>/status, and the
 * anonymous part of it (RssAnon): the process's own memory, without the file pages
 * (node's code, mapped files) that the kernel drops and reads again under pressure
 * from other processes, which makes total RSS jump on a shared machine.
 */
export function procMemory(pid: number): { rss: number; hwm: number; anon: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon') }
}

/** VmRSS of a process in bytes. */
export const rssOf = (pid: number): number => procMemory(pid).rss

/** Open file descriptors of a process (entries of /proc/<pid>/fd); NaN when unreadable. */
export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return NaN
  }
}

/**
 * The least-squares slope of y over x, with how well a line explains the points
 * (r², 0 when y does not vary) and the slope's standard error (NaN with fewer than
 * three points); NaN slope with fewer than two distinct x.
 */
export function slope(points: ReadonlyArray<readonly [x: number, y: number]>): { slope: number; r2: number; se: number } {
  const n = points.length
  const mx = points.reduce((s, [x]) => s + x, 0) / n
  const my = points.reduce((s, [, y]) => s + y, 0) / n
  let sxx = 0
  let sxy = 0
  let syy = 0
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2
    sxy += (x - mx) * (y - my)
    syy += (y - my) ** 2
  }
  if (!(sxx > 0)) return { slope: NaN, r2: 0, se: NaN }
  const r2 = syy > 0 ? (sxy * sxy) / (sxx * syy) : 0
  return { slope: sxy / sxx, r2, se: n > 2 ? Math.sqrt(((1 - r2) * syy) / ((n - 2) * sxx)) : NaN }
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // After "pid (comm) ", field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** Starts a CPU meter over several processes; the result is % of one core each, by name. */
export function cpuMeter(pids: Record<string, number>): () => Record<string, number> {
  const t0 = performance.now()
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]))
  return () => {
    const wall = (performance.now() - t0) / 1000
    return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (100 * (cpuSeconds(pid) - (start[k] ?? 0))) / wall]))
  }
}

/** The soft limit on open files, from /proc/self/limits (Infinity when unlimited or unreadable). */
export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const soft = line?.split(/\s{2,}/)[1]
    return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft)
  } catch {
    return Infinity
  }
}
