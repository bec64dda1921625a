// The memory table of bench/soak.bench.ts, from the samples of a run in progress or
// from the JSON a run wrote (`--report FILE`): per process, least-squares slopes of RSS,
// heap, external memory and open fds after the warm-up, and of RSS over the last half
// of that window too, which tells growth that levels off (a cache filling up) from
// growth that goes on.
import { fmt, slope, table, verdict } from './measure.js'

export interface Sample {
  /** Milliseconds since the load started. */
  readonly t: number
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly fds: number
  /** The control plane's keymesh.db and its WAL, bytes. */
  readonly dbBytes?: number
}

export interface SampledProc {
  readonly name: string
  readonly pid: number
  /** False for the load generator: shown, not judged. */
  readonly judged: boolean
  readonly samples: readonly Sample[]
}

export interface Slopes {
  /** MB (10^6 B) per hour after the warm-up, and its r². */
  readonly rss: number
  readonly rssR2: number
  /** Twice the standard error of the RSS slope: the slope is known to about ± this. */
  readonly rssPm: number
  /** RSS MB per hour over the last half of the window after the warm-up. */
  readonly rssLastHalf: number
  readonly heap: number
  readonly external: number
  /** Open fds per hour. */
  readonly fds: number
  readonly samples: number
}

export const GOAL_MB_PER_HOUR = 1
const MB = 1e6
const HOUR_MS = 3_600_000

export function slopesOf(samples: readonly Sample[], warmupMs: number): Slopes {
  const after = samples.filter((s) => s.t >= warmupMs)
  const per = (from: readonly Sample[], y: (s: Sample) => number, scale: number): { slope: number; r2: number; se: number } => slope(from.map((s) => [s.t / HOUR_MS, y(s) / scale]))
  const rss = per(after, (s) => s.rss, MB)
  const end = after[after.length - 1]?.t ?? 0
  const lastHalf = after.filter((s) => s.t >= (warmupMs + end) / 2)
  return {
    rss: rss.slope,
    rssR2: rss.r2,
    rssPm: 2 * rss.se,
    rssLastHalf: per(lastHalf, (s) => s.rss, MB).slope,
    heap: per(after, (s) => s.heapUsed, MB).slope,
    external: per(after, (s) => s.external, MB).slope,
    fds: per(after, (s) => s.fds, 1).slope,
    samples: after.length,
  }
}

/** Prints the table and the verdict line; returns each process's slopes and whether every judged one met the goal. */
export function memoryReport(procs: readonly SampledProc[], warmupMin: number, minutes: number): { slopes: Record<string, Slopes>; pass: boolean } {
  const warmupMs = warmupMin * 60_000
  const slopes = Object.fromEntries(procs.map((p) => [p.name, slopesOf(p.samples, warmupMs)]))
  const of = (p: SampledProc): Slopes => slopes[p.name] as Slopes
  const first = (p: SampledProc): Sample | undefined => p.samples.find((s) => s.t >= warmupMs)
  const last = (p: SampledProc): Sample | undefined => p.samples[p.samples.length - 1]
  const range = (p: SampledProc, y: (s: Sample) => number, scale = MB): string => {
    const [a, b] = [first(p), last(p)]
    const f = (v: number): string => (scale === 1 ? String(v) : fmt(v / scale))
    return a && b ? `${f(y(a))} → ${f(y(b))}` : '-'
  }
  const signed = (n: number): string => (Number.isFinite(n) ? `${n >= 0 ? '+' : ''}${n.toFixed(2)}` : '-')
  console.log(`\n2. Memory and open files after the ${warmupMin} min warm-up: least-squares slope over the samples, MB (10^6 B) per hour; ± is twice the slope's standard error (GC makes RSS swing, so a short run knows its slope only roughly); r² says how well a line fits (near 0: no trend, noise); 'last half': the slope over the second half of that window`)
  console.log(
    table(['process', 'pid', 'samples', 'RSS MB', 'RSS MB/h', '±', 'r²', 'last half MB/h', 'heap MB', 'heap MB/h', 'external MB/h', 'fds', 'fds/h', `RSS < ${GOAL_MB_PER_HOUR} MB/h`], procs.map((p) => {
      const s = of(p)
      return [
        p.name, String(p.pid), String(s.samples), range(p, (x) => x.rss), signed(s.rss), Number.isFinite(s.rssPm) ? s.rssPm.toFixed(2) : '-', s.rssR2.toFixed(2), signed(s.rssLastHalf), range(p, (x) => x.heapUsed), signed(s.heap), signed(s.external),
        range(p, (x) => x.fds, 1), signed(s.fds), p.judged ? verdict(s.rss < GOAL_MB_PER_HOUR) : '(not judged)',
      ]
    })),
  )
  const cp = procs.find((p) => p.samples.some((s) => s.dbBytes !== undefined))
  const db = cp ? [first(cp)?.dbBytes, last(cp)?.dbBytes] : []
  if (db[0] !== undefined && db[1] !== undefined) {
    console.log(`   the control plane's store (keymesh.db + WAL) grew ${(db[0] / MB).toFixed(1)} → ${(db[1] / MB).toFixed(1)} MB after the warm-up (the audit log: one entry per call)`)
  }
  if (minutes < 30) console.log(`   a ${minutes} min run: slopes of a few MB/h are within the noise of GC and allocator timing; the issue's figure is a 60 min run`)
  const miss = procs.filter((p) => p.judged && !(of(p).rss < GOAL_MB_PER_HOUR))
  console.log(`\nverdict: ${miss.length === 0 ? `PASS, every process under ${GOAL_MB_PER_HOUR} MB/hour of RSS` : `MISS: ${miss.map((p) => `${p.name} ${of(p).rss.toFixed(2)} MB/h (last half ${of(p).rssLastHalf.toFixed(2)})`).join(', ')}`}`)
  return { slopes, pass: miss.length === 0 }
}
