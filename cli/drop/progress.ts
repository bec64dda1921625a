// The progress line of `keymesh drop seal|open`: bytes done, percent (when the
// size is known), MB/s. Drawn on stderr only when stderr is a terminal, so a
// script that pipes or captures stderr sees nothing but the one-line error (if
// any). Redrawn at most every REDRAW_MS; the clock is injected for tests.
import { performance } from 'node:perf_hooks'

export interface ProgressTarget {
  write(s: string): unknown
  readonly isTTY?: boolean
  readonly columns?: number
}

const REDRAW_MS = 100
const MB = 1e6

export interface Progress {
  /** Counts `n` more bytes done. */
  add(n: number): void
  /** Draws the final figures and ends the line. */
  done(): void
  /** Erases the line (before an error message). */
  clear(): void
}

const NONE: Progress = { add: () => undefined, done: () => undefined, clear: () => undefined }

const mb = (n: number): string => `${(n / MB).toFixed(1)} MB`

/**
 * A progress line for `label` (e.g. 'seal') on `out`, or a no-op when `out` is not
 * a TTY. `total` is the expected byte count, unknown for a pipe.
 */
export function progressLine(out: ProgressTarget, label: string, total: number | undefined, now: () => number = () => performance.now()): Progress {
  if (out.isTTY !== true) return NONE
  const start = now()
  let bytes = 0
  let drawnAt = -Infinity
  let drawn = false
  const draw = (): void => {
    const t = now()
    drawnAt = t
    drawn = true
    const secs = (t - start) / 1000
    const rate = secs > 0 ? `${(bytes / MB / secs).toFixed(1)} MB/s` : '- MB/s'
    let line: string
    if (total !== undefined && total > 0) {
      const frac = Math.min(1, bytes / total)
      const width = Math.max(10, Math.min(40, (out.columns ?? 80) - 50))
      const fill = Math.round(frac * width)
      line = `${label} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${mb(bytes)} / ${mb(total)}  ${rate}`
    } else {
      line = `${label} ${mb(bytes)}  ${rate}`
    }
    // \r and erase-to-end-of-line: redraw in place, whatever the previous length.
    out.write(`\r${line}\x1b[K`)
  }
  return {
    add(n: number): void {
      bytes += n
      if (now() - drawnAt >= REDRAW_MS) draw()
    },
    done(): void {
      draw()
      out.write('\n')
    },
    clear(): void {
      if (drawn) out.write('\r\x1b[K')
    },
  }
}
