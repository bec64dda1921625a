// A clock that moves only when a test moves it. It has the two readings of a real
// clock (platform/src/clock.ts): wall time and monotonic time, which move together
// while time passes and apart when the wall clock is stepped. Timers set through it
// run on monotonic time, as Node's do, and fire during `advance`/`set`, in due order
// (ties in the order they were set), each seeing both readings at its own due time —
// so a test can step over a week of scheduled rotations in one call and still
// observe them one by one.
//
//   advance(ms)   time passes: both readings move, timers fire
//   set(time)     forward: time passes until the wall reads `time`; backward: the
//                 wall clock is stepped back (nothing passes, nothing fires)
//   jump(ms)      the wall clock is stepped by ms either way (NTP, an operator, a
//                 VM resuming): the monotonic reading stays, nothing fires
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
  /** Monotonic reading; starts at 0 (as a process's performance.now() nearly does), far from any wall time, so mixing the two shows. */
  #mono = 0
  /** Wall reading minus monotonic reading; only jumps change it. */
  #offset: number
  #seq = 0
  #pending: Pending[] = []

  constructor(start: number = FAKE_EPOCH) {
    this.#offset = FakeClock.#check(start, 'start')
  }

  now(): number {
    return this.#mono + this.#offset
  }

  monotonicMs(): number {
    return this.#mono
  }

  /** Forward: time passes until the wall reads `time` (timers fire); backward: a step of the wall clock alone. */
  set(time: number): number {
    FakeClock.#check(time, 'time')
    const now = this.now()
    if (time < now) return this.jump(time - now)
    this.#runUntil(this.#mono + (time - now))
    return this.now()
  }

  /** Time passes: `ms` (≥ 0) on both readings, firing every timer due in between. Returns the new wall time. */
  advance(ms: number): number {
    if (FakeClock.#check(ms, 'advance') < 0) throw new RangeError('FakeClock cannot advance backwards; use set() or jump()')
    this.#runUntil(this.#mono + ms)
    return this.now()
  }

  /** Steps the wall clock by `ms` (either way) while no time passes: no timer fires. Returns the new wall time. */
  jump(ms: number): number {
    this.#offset += FakeClock.#check(ms, 'jump')
    return this.now()
  }

  setTimer(delayMs: number, fn: () => void): CancelTimer {
    const entry: Pending = { at: this.#mono + Math.max(0, delayMs), seq: this.#seq++, fn }
    this.#pending.push(entry)
    return () => {
      this.#pending = this.#pending.filter((p) => p !== entry)
    }
  }

  /**
   * Another process's clock on the same time line: the monotonic reading and the
   * timers are this clock's, the wall clock is this one's plus steps of its own
   * (`jump`). Two agents whose wall clocks disagree, one test clock moving both.
   */
  view(): FakeClockView {
    return new FakeClockView(this)
  }

  /** Timers set and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#pending.length
  }

  #runUntil(target: number): void {
    for (;;) {
      // Re-read each time: a timer may set or cancel others.
      const next = this.#pending
        .filter((p) => p.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0]
      if (!next) break
      this.#pending = this.#pending.filter((p) => p !== next)
      this.#mono = Math.max(this.#mono, next.at)
      next.fn()
    }
    this.#mono = target
  }

  static #check(n: number, what: string): number {
    if (!Number.isFinite(n)) throw new RangeError(`FakeClock ${what} must be a finite number of ms`)
    return n
  }
}

export class FakeClockView implements TimerClock {
  readonly #base: FakeClock
  #offset = 0

  constructor(base: FakeClock) {
    this.#base = base
  }

  now(): number {
    return this.#base.now() + this.#offset
  }

  monotonicMs(): number {
    return this.#base.monotonicMs()
  }

  setTimer(delayMs: number, fn: () => void): CancelTimer {
    return this.#base.setTimer(delayMs, fn)
  }

  /** Steps this wall clock alone by `ms` (either way). Returns its new wall time. */
  jump(ms: number): number {
    if (!Number.isFinite(ms)) throw new RangeError('FakeClockView jump must be a finite number of ms')
    this.#offset += ms
    return this.now()
  }
}
