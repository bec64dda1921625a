// Refusals of unauthenticated connections, summarised per source and reason so
// that a flood cannot write one audit entry (or log line) per refusal: the first
// refusal of a (source, reason) is recorded at once with count 1; later ones in the
// same window are only counted, and when the window ends the count is recorded as
// one entry and a new window starts. So each (source, reason) yields at most one
// entry per window, and no refusal goes uncounted. Pure: the caller records the
// entries and calls due() when nextDue() says (a timer on its clock).
//
// Bounded: at most maxKeys (source, reason) pairs are tracked; refusals past that
// are counted under the source OTHER_SOURCE.
import type { MonotonicClock } from './clock.js'

export const OTHER_SOURCE = '(other)'

export interface TallyEntry {
  readonly source: string
  readonly reason: string
  /** Refusals this entry stands for. */
  readonly count: number
}

export interface RefusalTallyOptions {
  readonly windowMs: number
  readonly maxKeys: number
}

interface Window {
  readonly source: string
  readonly reason: string
  ends: number
  count: number
}

export class RefusalTally {
  readonly #o: RefusalTallyOptions
  readonly #clock: MonotonicClock
  readonly #windows = new Map<string, Window>()

  constructor(o: RefusalTallyOptions, clock: MonotonicClock) {
    if (!Number.isSafeInteger(o.windowMs) || o.windowMs < 1) throw new RangeError('refusal tally windowMs must be a positive integer')
    if (!Number.isSafeInteger(o.maxKeys) || o.maxKeys < 1) throw new RangeError('refusal tally maxKeys must be a positive integer')
    this.#o = o
    this.#clock = clock
  }

  /** One refusal; returns the entry to record now, or undefined when it waits for its window's summary. */
  note(source: string, reason: string): TallyEntry | undefined {
    let key = `${reason}\n${source}`
    if (!this.#windows.has(key) && this.#windows.size >= this.#o.maxKeys) {
      source = OTHER_SOURCE
      key = `${reason}\n${source}`
    }
    const w = this.#windows.get(key)
    if (w !== undefined) {
      w.count++
      return undefined
    }
    this.#windows.set(key, { source, reason, ends: this.#clock.monotonicMs() + this.#o.windowMs, count: 0 })
    return { source, reason, count: 1 }
  }

  /** The summaries of windows that have ended with refusals counted; windows with none are forgotten. */
  due(): TallyEntry[] {
    const now = this.#clock.monotonicMs()
    const out: TallyEntry[] = []
    for (const [key, w] of this.#windows) {
      if (w.ends > now) continue
      if (w.count === 0) {
        this.#windows.delete(key)
        continue
      }
      out.push({ source: w.source, reason: w.reason, count: w.count })
      w.count = 0
      w.ends = now + this.#o.windowMs
    }
    return out
  }

  /** The summaries of every window with refusals counted, ended or not; all windows are forgotten (shutdown). */
  flush(): TallyEntry[] {
    const out: TallyEntry[] = []
    for (const w of this.#windows.values()) if (w.count > 0) out.push({ source: w.source, reason: w.reason, count: w.count })
    this.#windows.clear()
    return out
  }

  /** When the next window ends (the clock's monotonic ms), or undefined when none is open. */
  nextDue(): number | undefined {
    let next: number | undefined
    for (const w of this.#windows.values()) if (next === undefined || w.ends < next) next = w.ends
    return next
  }
}
