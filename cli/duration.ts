// Durations on the command line: `90s`, `15m`, `1h`, `7d`, `2w`, or a bare number
// of milliseconds. One unit per value keeps them unambiguous.
import { cpError } from '../control-plane/src/errors.js'

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d{1,12})(ms|s|m|h|d|w)?$/.exec(String(text).trim())
  if (!m) throw cpError('CP_ERR_USAGE', `${what} must look like 90s, 15m, 1h, 7d or 2w`)
  const ms = Number(m[1]) * (UNITS[m[2] ?? 'ms'] as number)
  if (!Number.isSafeInteger(ms)) throw cpError('CP_ERR_USAGE', `${what} is too long`)
  return ms
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [['w', 604_800_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}
