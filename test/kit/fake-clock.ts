// A clock that moves only when a test moves it. Timers set through it fire during
// `advance`/`set`, in due order (ties in the order they were set), each seeing
// `now()` equal to its own due time — so a test can step over a week of scheduled
// rotations in one call and still observe them one by one.
import type { CancelTimer, TimerClock } from '../../platform/src/index.js'

/** 2026-01-01T00:00:00Z: a fixed, readable start so that test times are reproducible. */
export const FAKE_EPOCH = Date.UTC(2026, 0, 1)

export { DAY, HOUR, MINUTE, SECOND } from '../../platform/src/index.js'

interface Pending {
  readonly at: number
  readonly seq: number
  readonly fn: () => void
}

export class FakeClock implements TimerClock {
  #now: number
  #seq = 0
  #pending: Pending[] = []

  constructor(start: number = FAKE_EPOCH) {
    this.#now = FakeClock.#check(start, 'start')
  }

  now(): number {
    return this.#now
  }

  /** Jumps to `time` (backwards allowed, to test clock steps); fires timers due by then. */
  set(time: number): number {
    FakeClock.#check(time, 'time')
    if (time < this.#now) {
      this.#now = time
      return time
    }
    return this.#runUntil(time)
  }

  /** Moves forward by `ms` (≥ 0) and fires every timer due in between. Returns the new now. */
  advance(ms: number): number {
    if (FakeClock.#check(ms, 'advance') < 0) throw new RangeError('FakeClock cannot advance backwards; use set()')
    return this.#runUntil(this.#now + ms)
  }

  setTimer(delayMs: number, fn: () => void): CancelTimer {
    const entry: Pending = { at: this.#now + Math.max(0, delayMs), seq: this.#seq++, fn }
    this.#pending.push(entry)
    return () => {
      this.#pending = this.#pending.filter((p) => p !== entry)
    }
  }

  /** Timers set and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#pending.length
  }

  #runUntil(target: number): number {
    for (;;) {
      // Re-read each time: a timer may set or cancel others.
      const next = this.#pending
        .filter((p) => p.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0]
      if (!next) break
      this.#pending = this.#pending.filter((p) => p !== next)
      this.#now = Math.max(this.#now, next.at)
      next.fn()
    }
    this.#now = target
    return target
  }

  static #check(n: number, what: string): number {
    if (!Number.isFinite(n)) throw new RangeError(`FakeClock ${what} must be a finite number of ms`)
    return n
  }
}
