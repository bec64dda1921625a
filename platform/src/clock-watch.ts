// Notices when the wall clock steps: every `everyMs` of elapsed time it compares how
// far the wall clock moved with how far the monotonic clock moved; when the two
// disagree by more than `thresholdMs`, the wall clock jumped (NTP stepped it, an
// operator set it, a VM resumed with a stale clock) and `onJump` hears of it, once.
// Both servers watch: the agent logs it and counts it in its metrics, the control
// plane also audits it (`clock.jump`).
//
// Contract:
//   - A jump is reported once, with its size (wall movement minus elapsed time:
//     positive forward, negative backward), the wall readings either side and the
//     elapsed time between them; the comparison then starts again from the new time.
//   - Slewing (NTP adjusting the rate by up to 500 ppm) is not a jump: over the
//     default 5 s between checks it moves the readings apart by 2.5 ms, far under the
//     default 2 s threshold. A jump smaller than the threshold goes unreported.
//   - Checks are chained through setImmediate, as liveness.ts's ticks are: a fake clock
//     moved a month ahead in one call fires one check, not half a million.
//   - After stop() nothing more is reported.
import type { CancelTimer, TimerClock } from './clock.js'

export const CLOCK_WATCH_EVERY_MS = 5_000
export const CLOCK_JUMP_THRESHOLD_MS = 2_000

export interface ClockJump {
  /** Wall movement minus elapsed time, ms: > 0 the wall clock stepped forward, < 0 back. */
  readonly stepMs: number
  /** Wall readings at the previous check and at this one. */
  readonly wallBefore: number
  readonly wallAfter: number
  /** Monotonic time between the two checks, ms. */
  readonly elapsedMs: number
}

export interface ClockWatchOptions {
  readonly clock: TimerClock
  readonly onJump: (jump: ClockJump) => void
  readonly everyMs?: number
  readonly thresholdMs?: number
}

export class ClockWatch {
  readonly #clock: TimerClock
  readonly #onJump: (jump: ClockJump) => void
  readonly #everyMs: number
  readonly #thresholdMs: number
  #wall: number
  #mono: number
  #timer: CancelTimer | undefined
  #running = false
  /** Jumps seen since start, by direction (the metrics read them). */
  readonly jumps = { forward: 0, backward: 0 }

  constructor(o: ClockWatchOptions) {
    this.#clock = o.clock
    this.#onJump = o.onJump
    this.#everyMs = o.everyMs ?? CLOCK_WATCH_EVERY_MS
    this.#thresholdMs = o.thresholdMs ?? CLOCK_JUMP_THRESHOLD_MS
    if (!(this.#everyMs > 0 && this.#thresholdMs > 0)) throw new RangeError('clock watch needs everyMs > 0 and thresholdMs > 0')
    this.#wall = o.clock.now()
    this.#mono = o.clock.monotonicMs()
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    this.#wall = this.#clock.now()
    this.#mono = this.#clock.monotonicMs()
    this.#arm()
  }

  stop(): void {
    this.#running = false
    this.#timer?.()
    this.#timer = undefined
  }

  /** Compares the two clocks now; reports (and returns) a jump past the threshold. */
  check(): ClockJump | undefined {
    const wall = this.#clock.now()
    const mono = this.#clock.monotonicMs()
    const jump: ClockJump = { stepMs: wall - this.#wall - (mono - this.#mono), wallBefore: this.#wall, wallAfter: wall, elapsedMs: mono - this.#mono }
    this.#wall = wall
    this.#mono = mono
    if (Math.abs(jump.stepMs) <= this.#thresholdMs) return undefined
    if (jump.stepMs > 0) this.jumps.forward++
    else this.jumps.backward++
    this.#onJump(jump)
    return jump
  }

  #arm(): void {
    this.#timer = this.#clock.setTimer(this.#everyMs, () => {
      this.#timer = undefined
      if (!this.#running) return
      try {
        this.check()
      } finally {
        setImmediate(() => {
          if (this.#running && this.#timer === undefined) this.#arm()
        })
      }
    })
  }
}

/** "3h0m0s forward", "1.5s back": a jump's size for log lines and audit reasons. */
export function describeStep(stepMs: number): string {
  const ms = Math.abs(Math.round(stepMs))
  const h = Math.floor(ms / 3_600_000)
  const m = Math.floor((ms % 3_600_000) / 60_000)
  const s = (ms % 60_000) / 1000
  const text = h > 0 ? `${h}h${m}m${Math.floor(s)}s` : m > 0 ? `${m}m${Math.floor(s)}s` : `${s}s`
  return `${text} ${stepMs > 0 ? 'forward' : 'back'}`
}
