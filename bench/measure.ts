// Small timing helpers shared by the benchmark scripts. Figures from this shared,
// noisy machine are only meaningful as ratios against a baseline measured in the
// same run, so every bench prints its baseline beside the figure.
import { performance } from 'node:perf_hooks'

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
