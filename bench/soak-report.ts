// The memory table of bench/soak.bench.ts, from the samples of a run in progress or
// from the JSON a run wrote (`--report FILE`): per process, least-squares slopes of RSS,
// its anonymous part, heap, external memory and open fds after the warm-up, and over
// the last half of that window too, which tells growth that levels off (a cache filling
// up) from growth that goes on.
//
// The verdict is on anonymous RSS (RssAnon) when the samples have it: total RSS also
// counts file pages (node's own code, ~45 MB) that the kernel drops and reads back when
// other processes need memory, so on a shared machine it jumps by tens of MB, all
// processes at once, for reasons outside the process. A leak is anonymous memory.
import { fmt, slope, table, verdict } from './measure.js'

export interface Sample {
  /** Milliseconds since the load started. */
  readonly t: number
  readonly rss: number
  /** RssAnon from /proc/<pid>/status (absent in files from before it was sampled). */
  readonly anon?: number
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

export interface Trend {
  /** Per hour after the warm-up (MB of 10^6 B, or fds). */
  readonly perHour: number
  /** Twice the standard error: the slope is known to about ± this. */
  readonly pm: number
  readonly r2: number
  /** Per hour over the last half of the window after the warm-up. */
  readonly lastHalf: number
}

export interface Slopes {
  readonly samples: number
  /** What the verdict is on: 'anon' (RssAnon) when every sample has it, else 'rss'. */
  readonly judgedOn: 'anon' | 'rss'
  readonly rss: Trend
  readonly anon: Trend | undefined
  readonly heap: Trend
  readonly external: Trend
  readonly fds: Trend
}

export const GOAL_MB_PER_HOUR = 1
const MB = 1e6
const HOUR_MS = 3_600_000

export function slopesOf(samples: readonly Sample[], warmupMs: number): Slopes {
  const after = samples.filter((s) => s.t >= warmupMs)
  const end = after[after.length - 1]?.t ?? 0
  const lastHalf = after.filter((s) => s.t >= (warmupMs + end) / 2)
  const trend = (y: (s: Sample) => number, scale: number): Trend => {
    const fit = (from: readonly Sample[]): ReturnType<typeof slope> => slope(from.map((s) => [s.t / HOUR_MS, y(s) / scale]))
    const all = fit(after)
    return { perHour: all.slope, pm: 2 * all.se, r2: all.r2, lastHalf: fit(lastHalf).slope }
  }
  const hasAnon = after.length > 0 && after.every((s) => s.anon !== undefined)
  return {
    samples: after.length,
    judgedOn: hasAnon ? 'anon' : 'rss',
    rss: trend((s) => s.rss, MB),
    anon: hasAnon ? trend((s) => s.anon as number, MB) : undefined,
    heap: trend((s) => s.heapUsed, MB),
    external: trend((s) => s.external, MB),
    fds: trend((s) => s.fds, 1),
  }
}

const judged = (s: Slopes): Trend => (s.judgedOn === 'anon' ? (s.anon as Trend) : s.rss)

/** Prints the table and the verdict line; returns each process's slopes and whether every judged one met the goal. */
export function memoryReport(procs: readonly SampledProc[], warmupMin: number, minutes: number): { slopes: Record<string, Slopes>; pass: boolean } {
  const warmupMs = warmupMin * 60_000
  const slopes = Object.fromEntries(procs.map((p) => [p.name, slopesOf(p.samples, warmupMs)]))
  const of = (p: SampledProc): Slopes => slopes[p.name] as Slopes
  const first = (p: SampledProc): Sample | undefined => p.samples.find((s) => s.t >= warmupMs)
  const last = (p: SampledProc): Sample | undefined => p.samples[p.samples.length - 1]
  const range = (p: SampledProc, y: (s: Sample) => number | undefined, scale = MB): string => {
    const [a, b] = [first(p), last(p)]
    const f = (v: number | undefined): string => (v === undefined ? '-' : scale === 1 ? String(v) : fmt(v / scale))
    return a && b ? `${f(y(a))} → ${f(y(b))}` : '-'
  }
  const signed = (n: number | undefined): string => (n !== undefined && Number.isFinite(n) ? `${n >= 0 ? '+' : ''}${n.toFixed(2)}` : '-')
  const pm = (t: Trend | undefined): string => (t !== undefined && Number.isFinite(t.pm) ? `±${t.pm.toFixed(2)}` : '')
  const on = procs.every((p) => of(p).judgedOn === 'anon') ? 'anonymous RSS (RssAnon)' : 'RSS'
  console.log(
    `\n2. Memory and open files after the ${warmupMin} min warm-up: least-squares slope over the samples, MB (10^6 B) per hour, ± twice its standard error ` +
      `(GC makes memory swing, so a short run knows its slope only roughly); r² how well a line fits (near 0: no trend); 'last half': the slope over the second half of the window. ` +
      `Judged on ${on}: total RSS also counts file pages the kernel drops and reads back under other processes' pressure.`,
  )
  console.log(
    table(['process', 'pid', 'samples', 'RSS MB', 'RSS MB/h', 'anon MB', 'anon MB/h', 'r²', 'last half MB/h', 'heap MB', 'heap MB/h', 'external MB/h', 'fds', 'fds/h', `< ${GOAL_MB_PER_HOUR} MB/h`], procs.map((p) => {
      const s = of(p)
      return [
        p.name, String(p.pid), String(s.samples),
        range(p, (x) => x.rss), `${signed(s.rss.perHour)} ${pm(s.rss)}`,
        range(p, (x) => x.anon), s.anon ? `${signed(s.anon.perHour)} ${pm(s.anon)}` : '-',
        judged(s).r2.toFixed(2), signed(judged(s).lastHalf),
        range(p, (x) => x.heapUsed), signed(s.heap.perHour), signed(s.external.perHour),
        range(p, (x) => x.fds, 1), signed(s.fds.perHour), p.judged ? verdict(judged(s).perHour < GOAL_MB_PER_HOUR) : '(not judged)',
      ]
    })),
  )
  const cp = procs.find((p) => p.samples.some((s) => s.dbBytes !== undefined))
  const db = cp ? [first(cp)?.dbBytes, last(cp)?.dbBytes] : []
  if (db[0] !== undefined && db[1] !== undefined) {
    console.log(`   the control plane's store (keymesh.db + WAL) grew ${(db[0] / MB).toFixed(1)} → ${(db[1] / MB).toFixed(1)} MB after the warm-up (the audit log: one entry per call)`)
  }
  if (minutes < 30) console.log(`   a ${minutes} min run: slopes of a few MB/h are within the noise of GC and allocator timing; the issue's figure is a 60 min run`)
  const miss = procs.filter((p) => p.judged && !(judged(of(p)).perHour < GOAL_MB_PER_HOUR))
  const figure = (p: SampledProc): string => `${p.name} ${judged(of(p)).perHour.toFixed(2)} MB/h ${pm(judged(of(p)))} (last half ${judged(of(p)).lastHalf.toFixed(2)})`
  console.log(`\nverdict on ${on}: ${miss.length === 0 ? `PASS, every process under ${GOAL_MB_PER_HOUR} MB/hour` : `MISS: ${miss.map(figure).join(', ')}`}`)
  return { slopes, pass: miss.length === 0 }
}
