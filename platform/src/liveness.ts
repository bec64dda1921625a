// Liveness of a connection whose peer can vanish without a TCP reset: a host that
// loses power, a network partition, a process stopped with SIGSTOP (its kernel
// still accepts connections and acknowledges bytes). Without a check, TCP's own
// timeouts take minutes. Used by both ends of the agent's control session.
//
// The rule: when nothing has arrived for `pingMs`, ping (one ping out at a time);
// when nothing has arrived for `deadMs`, the peer is dead. The owner calls seen()
// for every frame, pong or ping that arrives (and for the moment a connection
// opens); a connection attempt still pending counts as a probe out.
//
// Contract:
//   - dead() is called at most once, and never after stop().
//   - Every time is the clock's monotonic reading: a wall clock stepped either way
//     (NTP, an operator) neither kills a live session nor keeps a dead one.
//   - A peer is declared dead only after it has had deadMs − pingMs of elapsed time
//     and some turns of the event loop to answer the probe that is out, and only
//     once the loop has polled for I/O after the deadline (an answer already in
//     the socket's buffer counts). On a steady clock that does not delay detection
//     (the first ping after the last frame goes out pingMs after it) beyond a few
//     microseconds; it matters when time leaps: a fake clock moved an hour ahead in
//     one call, or a process that was suspended. Ticks are chained through
//     setImmediate for the same reason: such a leap fires one tick, not thousands.
//   - A reading that goes backwards (a test clock) restarts the count from the new
//     time rather than going blind until it catches up.
import type { CancelTimer, TimerClock } from './clock.js'

/** setImmediate turns between a deadline and death: at least one poll for I/O comes between. */
const CONFIRM_TURNS = 2

export interface LivenessOptions {
  readonly clock: TimerClock
  /** Ping when nothing has arrived for this long (ms, > 0). */
  readonly pingMs: number
  /** Declare the peer dead when nothing has arrived for this long (ms, > pingMs). */
  readonly deadMs: number
  /** Sends a ping; returns false when none could be sent (the connection is not open). */
  readonly ping: () => boolean
  /** The peer is dead: silent for `silentMs`. */
  readonly dead: (silentMs: number) => void
}

export class Liveness {
  readonly #o: LivenessOptions
  #lastSeen: number
  #lastPing: number
  /** When the probe not answered yet was known to be out (a turn after it was sent); undefined when none is. */
  #outAt: number | undefined
  /** A probe went out since the last arm (the connection attempt counts as the first). */
  #probing = true
  #timer: CancelTimer | undefined
  #stopped = false

  constructor(o: LivenessOptions) {
    if (!(Number.isSafeInteger(o.pingMs) && o.pingMs > 0 && Number.isSafeInteger(o.deadMs) && o.deadMs > o.pingMs)) {
      throw new RangeError('liveness needs integer times with 0 < pingMs < deadMs')
    }
    this.#o = o
    this.#lastSeen = this.#lastPing = o.clock.monotonicMs()
    setImmediate(() => this.#arm())
  }

  /** Something arrived from the peer. Cheap: called for every frame. */
  seen(): void {
    this.#lastSeen = this.#o.clock.monotonicMs()
    this.#probing = false
    if (this.#outAt === undefined) return
    // The answer to a probe: the timer waits for its deadline; move it to the next ping.
    this.#outAt = undefined
    if (this.#timer === undefined) return // a tick is between its run and arm()
    this.#timer()
    this.#timer = this.#o.clock.setTimer(this.#o.pingMs, () => this.#tick())
  }

  stop(): void {
    this.#stopped = true
    this.#timer?.()
    this.#timer = undefined
  }

  #tick(): void {
    this.#timer = undefined
    if (this.#stopped) return
    const now = this.#o.clock.monotonicMs()
    if (this.#due(now)) return this.#confirm(CONFIRM_TURNS)
    if (this.#outAt === undefined && now - Math.max(this.#lastSeen, this.#lastPing) >= this.#o.pingMs) {
      this.#lastPing = now
      if (this.#o.ping()) this.#probing = true
    }
    setImmediate(() => this.#arm())
  }

  /** The deadline has passed with a probe out long enough. */
  #due(now: number): boolean {
    this.#rebase(now)
    const { pingMs, deadMs } = this.#o
    return this.#outAt !== undefined && now - this.#lastSeen >= deadMs && now - this.#outAt >= deadMs - pingMs
  }

  /** Declares the peer dead if nothing arrives within `turns` more turns of the event loop (each polls for I/O). */
  #confirm(turns: number): void {
    setImmediate(() => {
      if (this.#stopped) return
      const now = this.#o.clock.monotonicMs()
      if (!this.#due(now)) return this.#arm()
      if (turns > 1) return this.#confirm(turns - 1)
      this.stop()
      this.#o.dead(now - this.#lastSeen)
    })
  }

  /** Sets the timer for the next ping or the deadline, whichever is first; runs a turn after a tick. */
  #arm(): void {
    if (this.#stopped) return
    const now = this.#o.clock.monotonicMs()
    this.#rebase(now)
    if (this.#probing) {
      this.#outAt ??= now
      this.#probing = false
    }
    const { pingMs, deadMs } = this.#o
    const due =
      this.#outAt === undefined
        ? Math.max(this.#lastSeen, this.#lastPing) + pingMs // the next ping
        : Math.max(this.#lastSeen + deadMs, this.#outAt + deadMs - pingMs) // the deadline
    this.#timer = this.#o.clock.setTimer(due - now, () => this.#tick())
  }

  #rebase(now: number): void {
    this.#lastSeen = Math.min(this.#lastSeen, now)
    this.#lastPing = Math.min(this.#lastPing, now)
    if (this.#outAt !== undefined) this.#outAt = Math.min(this.#outAt, now)
  }
}
