// The SQLite store's integrity: PRAGMA quick_check at start and then every
// `intervalMs` on the injected clock (store/sqlite-integrity.ts runs it off the
// main thread). A database whose pages are damaged answers most reads and
// writes until one touches a bad page; before, only `audit verify` found it.
//
// What must hold:
//   - at start the check is awaited for at most `startTimeoutMs` (real time: a
//     safety valve, like readiness.ts's, not protocol timing). Damage found in
//     that time refuses the start with CP_ERR_STORE_CORRUPT naming the file and
//     the fix; a check that takes longer goes on, and its verdict, when it
//     comes, is handled as a scheduled one's;
//   - a scheduled check never overlaps another; damage it finds logs at error
//     (once per verdict) and makes /readyz answer 503 CP_ERR_STORE_CORRUPT until
//     a later check passes;
//   - a check that could not run (the file could not be opened) is logged at
//     warn and changes nothing: not knowing is not damage;
//   - close() stops the schedule and gives up on a running check.
import type { Logger } from 'pino'

import { MINUTE, type CancelTimer, type Readiness, type TimerClock } from '../../../platform/src/index.js'
import { cpError } from '../errors.js'
import { corruptStoreFix } from '../store/sqlite-store.js'
import type { IntegrityResult, IntegrityRun } from '../store/store.js'

/** The shortest time between the end of a check and one started because a read met damage. */
export const SUSPECT_GAP_MS = MINUTE

export type IntegrityState =
  | { readonly status: 'unchecked' }
  | { readonly status: 'running'; readonly since: number }
  | { readonly status: 'ok'; readonly checkedAt: number; readonly ms: number }
  | { readonly status: 'damaged'; readonly checkedAt: number; readonly problems: readonly string[] }

export interface IntegrityWatchOptions {
  /** The database file, for messages. */
  readonly file: string
  readonly check: () => IntegrityRun
  readonly clock: TimerClock
  readonly logger: Logger
  /** Between scheduled checks; 0 turns them off (the start check still runs). */
  readonly intervalMs: number
}

export class IntegrityWatch {
  readonly #o: IntegrityWatchOptions
  #state: IntegrityState = { status: 'unchecked' }
  /** The verdict before the running check: readiness keeps answering from it meanwhile. */
  #verdict: IntegrityState = { status: 'unchecked' }
  #run: IntegrityRun | undefined
  #pending: Promise<IntegrityResult> | undefined
  #timer: CancelTimer | undefined
  /** A check that a damaged page asked for, waiting out SUSPECT_GAP_MS. */
  #suspected: CancelTimer | undefined
  #closed = false

  constructor(o: IntegrityWatchOptions) {
    if (!Number.isSafeInteger(o.intervalMs) || o.intervalMs < 0) throw new RangeError('intervalMs must be a whole number from 0')
    this.#o = o
  }

  get state(): IntegrityState {
    return this.#state
  }

  /**
   * The check at start. Resolves when the file passed, could not be checked, or the
   * check outlasted `timeoutMs` (it goes on); rejects with CP_ERR_STORE_CORRUPT when damaged.
   */
  async atStart(timeoutMs: number): Promise<void> {
    const running = this.#begin()
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => {
      // Not unref'd: until the server listens, this timer may be all that keeps the start alive.
      timer = setTimeout(() => resolve('late'), timeoutMs)
    })
    const first = await Promise.race([running, late]).finally(() => clearTimeout(timer))
    if (first === 'late') {
      this.#o.logger.warn({ file: this.#o.file, timeoutMs }, 'the integrity check of the store is still running; starting anyway, its verdict is logged and shown by /readyz when it comes')
      return
    }
    if (first.ok) return
    if (first.ran) {
      const n = first.problems.length
      throw cpError('CP_ERR_STORE_CORRUPT', `${this.#o.file} failed its integrity check (quick_check: ${first.problems[0] ?? 'no detail'}${n > 1 ? `, and ${n - 1} more` : ''}): ${corruptStoreFix(this.#o.file)}`)
    }
  }

  /** Starts the schedule. */
  start(): void {
    this.#arm()
  }

  /** One check now, unless one is running (then that one's verdict). */
  check(): Promise<IntegrityResult> {
    return this.#begin()
  }

  /**
   * A read or write met a damaged page: check now, unless a check is running or the
   * last verdict is damage already; when one ended less than SUSPECT_GAP_MS ago, when
   * that gap is over (a failing read per request must not become a full read of
   * the file per request).
   */
  suspect(): void {
    const s = this.#verdict
    if (this.#pending || this.#suspected !== undefined || s.status === 'damaged') return
    const wait = 'checkedAt' in s ? s.checkedAt + SUSPECT_GAP_MS - this.#o.clock.now() : 0
    this.#o.logger.warn({ file: this.#o.file, inMs: Math.max(0, wait) }, 'the store reported a damaged page: checking its integrity')
    if (wait <= 0) return void this.#begin()
    this.#suspected = this.#o.clock.setTimer(wait, () => {
      this.#suspected = undefined
      if (!this.#closed) void this.#begin()
    })
  }

  /** Not ready while the last verdict is damage. */
  readiness(): Readiness {
    const s = this.#verdict
    if (s.status !== 'damaged') return { ready: true }
    return { ready: false, code: 'CP_ERR_STORE_CORRUPT', reason: `${this.#o.file} failed its integrity check at ${new Date(s.checkedAt).toISOString()} (${s.problems[0] ?? 'no detail'}): ${corruptStoreFix(this.#o.file)}` }
  }

  /** For /readyz's body: the last verdict and whether a check is running. */
  report(): Record<string, unknown> {
    const s = this.#verdict
    return {
      status: s.status,
      ...('checkedAt' in s ? { checkedAt: new Date(s.checkedAt).toISOString() } : {}),
      ...(this.#state.status === 'running' ? { running: true } : {}),
    }
  }

  close(): void {
    this.#closed = true
    this.#timer?.()
    this.#timer = undefined
    this.#suspected?.()
    this.#suspected = undefined
    this.#run?.stop()
  }

  #begin(): Promise<IntegrityResult> {
    if (this.#pending) return this.#pending
    const run = this.#o.check()
    this.#run = run
    this.#state = { status: 'running', since: this.#o.clock.now() }
    this.#pending = run.result.then((r) => {
      this.#run = undefined
      this.#pending = undefined
      this.#settle(r)
      return r
    })
    return this.#pending
  }

  #settle(r: IntegrityResult): void {
    if (this.#closed) return
    const at = this.#o.clock.now()
    const before = this.#verdict
    if (r.ok) {
      this.#verdict = { status: 'ok', checkedAt: at, ms: r.ms }
      if (before.status === 'damaged') this.#o.logger.info({ file: this.#o.file }, 'the store passed its integrity check again')
      else this.#o.logger.debug({ file: this.#o.file, ms: r.ms }, 'the store passed its integrity check')
    } else if (r.ran) {
      this.#verdict = { status: 'damaged', checkedAt: at, problems: r.problems }
      if (before.status !== 'damaged') {
        this.#o.logger.error(
          { code: 'CP_ERR_STORE_CORRUPT', file: this.#o.file, problems: r.problems },
          `the store failed its integrity check: /readyz answers 503; ${corruptStoreFix(this.#o.file)}`,
        )
      }
    } else {
      this.#o.logger.warn({ file: this.#o.file, reason: r.problems[0] }, 'the integrity check of the store could not run; the last verdict stands')
    }
    this.#state = this.#verdict
  }

  #arm(): void {
    if (this.#closed || this.#o.intervalMs === 0 || this.#timer !== undefined) return
    this.#timer = this.#o.clock.setTimer(this.#o.intervalMs, () => {
      this.#timer = undefined
      void this.#begin().finally(() => this.#arm())
    })
  }
}
