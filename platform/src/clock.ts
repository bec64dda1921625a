// keymesh code never reads the time itself: everything that depends on it
// (destruction windows, rotation schedules, token expiry, grace periods) takes a
// `Clock` or a plain `now` in milliseconds since the epoch. Production passes
// `systemClock`; tests pass test/helpers/fake-clock.ts and move it instead of sleeping.

/** Time units in milliseconds, shared by every default and limit that is a duration. */
export const SECOND = 1_000
export const MINUTE = 60 * SECOND
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
}

/** Cancels a timer; calling it again, or after the timer fired, does nothing. */
export type CancelTimer = () => void

/**
 * A clock that can also wake its caller later. Kept apart from `Clock` so that pure
 * code that only reads the time can be given `{ now: () => t }` and nothing more.
 */
export interface TimerClock extends Clock {
  /** Runs `fn` once, `delayMs` from now (negative delays count as 0). */
  setTimer(delayMs: number, fn: () => void): CancelTimer
}

export const systemClock: TimerClock = {
  now: () => Date.now(),
  setTimer(delayMs, fn) {
    const handle = setTimeout(fn, Math.max(0, delayMs))
    // A pending rotation or expiry timer must not keep a shutting-down process alive.
    handle.unref()
    return () => clearTimeout(handle)
  },
}
