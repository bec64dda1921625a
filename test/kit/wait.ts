// The one way tests and benches wait for something that has no promise of its own
// (a counter in a status, a log line, a database row, a child that is up). The
// condition decides, never the passage of time: it is checked now and again after
// each event that may change it, or, where there is no such event, after each turn
// of the event loop or every `everyMs`. The deadline only turns a hang into a
// failure that names what did not happen, so callers set it far above what they
// expect (the default is 10 s of real time, whatever clock the code under test uses).
import { performance } from 'node:perf_hooks'

export const WAIT_MS = 10_000

export interface WaitOptions {
  /** Real milliseconds before giving up (default WAIT_MS). */
  readonly ms?: number
  /**
   * Subscribes `wake` to whatever can make the condition hold, and returns the
   * unsubscribe. The condition is then re-checked one turn after each event (so the
   * emitter has finished recording its state), and only then.
   */
  readonly on?: (wake: () => void) => () => void
  /** Without `on`: re-check every `everyMs` (for costly checks: a query, a request); default each turn. */
  readonly everyMs?: number
  /** Errors thrown by the check count as "not yet" (a server not listening yet); GiveUp still ends the wait. */
  readonly retryErrors?: boolean
  /** Added to the timeout message (an agent's status, say). */
  readonly detail?: () => string
}

/** Thrown from a check to stop waiting at once (the child waited for has exited, say). */
export class GiveUp extends Error {}

type Found<T> = Exclude<T, undefined | null | false>

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * Resolves with the first value of `check` that is not undefined, null or false (for
 * a boolean check: once it returns true); rejects when `ms` pass first, with `what`.
 * A number for `o` is the deadline in milliseconds.
 */
export async function until<T>(check: () => T | Promise<T>, what: string, o: number | WaitOptions = {}): Promise<Found<T>> {
  const opts: WaitOptions = typeof o === 'number' ? { ms: o } : o
  const ms = opts.ms ?? WAIT_MS
  const deadline = performance.now() + ms
  // With `on`: an event seen since the last check, and the wake-up of a waiting loop.
  let pending = false
  let wakeLoop: (() => void) | undefined
  const off = opts.on?.(() => {
    pending = true
    wakeLoop?.()
  })
  const nextCheck = (left: number): Promise<void> => {
    if (opts.on === undefined) return opts.everyMs ? new Promise((resolve) => setTimeout(resolve, Math.min(opts.everyMs as number, left))) : turn()
    if (pending) {
      pending = false
      return turn()
    }
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, left)
      wakeLoop = () => {
        clearTimeout(timer)
        wakeLoop = undefined
        pending = false
        void turn().then(resolve)
      }
    })
  }
  let lastError: unknown
  try {
    for (;;) {
      try {
        const v = await check()
        if (v !== undefined && v !== null && v !== false) return v as Found<T>
      } catch (e) {
        if (!opts.retryErrors || e instanceof GiveUp) throw e
        lastError = e
      }
      const left = deadline - performance.now()
      if (left <= 0) {
        const last = lastError === undefined ? '' : ` (last error: ${(lastError as Error).message})`
        const detail = opts.detail ? `; ${opts.detail()}` : ''
        throw new Error(`timed out after ${ms} ms waiting for ${what}${last}${detail}`)
      }
      await nextCheck(left)
    }
  } finally {
    wakeLoop = undefined
    off?.()
  }
}

/** `p`, or a rejection naming `what` once `ms` pass first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing in ${ms} ms`)), ms)
    }),
  ])
}
