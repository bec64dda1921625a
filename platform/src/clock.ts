// keymesh code never reads the time itself: everything that depends on it takes a
// `Clock` or a plain `now`, and production passes `systemClock`; tests pass
// test/kit/fake-clock.ts and move it instead of sleeping.
//
// Two readings, for two kinds of question:
//   - now(): wall time, milliseconds since the Unix epoch. For what is wall time by
//     nature: timestamps in the audit log and in logs, dates shown to people
//     (notAfter, destroyAt, token expiry), dates that cross a wire or a disk. It can
//     step: NTP corrects it, an operator sets it, a VM resumes.
//   - monotonicMs(): milliseconds from an arbitrary origin that only moves forward,
//     at the rate of real time, whatever the wall clock does. For every interval:
//     settling windows, backoffs, re-handshake timers, liveness, rate-limiter windows,
//     timeouts. A difference of two readings is elapsed time; one reading alone means
//     nothing, is never stored, and never leaves the process.
// A deadline that cannot be undone (destroying key material) needs both: the wall
// time shown to people reached, and the elapsed time actually observed
// (control-plane/src/elapsed-ledger.ts). Timers (setTimer) run on monotonic time, as
// Node's own timers do.

/** Time units in milliseconds, shared by every default and limit that is a duration. */
export const SECOND = 1_000
export const MINUTE = 60 * SECOND
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

export interface Clock {
  /** Wall time: milliseconds since the Unix epoch. May step either way. */
  now(): number
}

/** Elapsed-time readings, for code that measures intervals and nothing else. */
export interface MonotonicClock {
  /** Whole milliseconds from an arbitrary origin; never decreases, unaffected by wall-clock steps. */
  monotonicMs(): number
}

/** Cancels a timer; calling it again, or after the timer fired, does nothing. */
export type CancelTimer = () => void

/**
 * A clock that can also wake its caller later. Kept apart from `Clock` so that pure
 * code that only reads the wall time can be given `{ now: () => t }` and nothing more.
 */
export interface TimerClock extends Clock, MonotonicClock {
  /** Runs `fn` once, `delayMs` of elapsed (monotonic) time from now (negative delays count as 0). */
  setTimer(delayMs: number, fn: () => void): CancelTimer
}

export const systemClock: TimerClock = {
  now: () => Date.now(),
  // performance.now() reads CLOCK_MONOTONIC through libuv, as setTimeout does. Whole
  // milliseconds, as Date.now() gives: durations derived from it go into usage reports
  // and messages that take integers.
  monotonicMs: () => Math.floor(performance.now()),
  setTimer(delayMs, fn) {
    const handle = setTimeout(fn, Math.max(0, delayMs))
    // A pending rotation or expiry timer must not keep a shutting-down process alive.
    handle.unref()
    return () => clearTimeout(handle)
  },
}
