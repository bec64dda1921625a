// A token bucket: `ratePerSecond` tokens flow in, at most `burst` are kept. The
// time is passed in (milliseconds), so the bucket is pure and a test moves a fake
// clock; a clock stepped backwards adds nothing.
export class TokenBucket {
  readonly #ratePerMs: number
  readonly #burst: number
  #tokens: number
  #at: number

  constructor(ratePerSecond: number, burst: number, now: number) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError('a token bucket needs a positive rate and a burst of at least 1')
    this.#ratePerMs = ratePerSecond / 1000
    this.#burst = burst
    this.#tokens = burst
    this.#at = now
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.#refill(now)
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }

  /** Gives one token back (never beyond the burst). */
  give(now: number): void {
    this.#refill(now)
    this.#tokens = Math.min(this.#burst, this.#tokens + 1)
  }

  /** True when the bucket is full: forgetting it loses nothing. */
  full(now: number): boolean {
    this.#refill(now)
    return this.#tokens >= this.#burst
  }

  #refill(now: number): void {
    const elapsed = now - this.#at
    if (elapsed > 0) this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#ratePerMs)
    this.#at = Math.max(this.#at, now)
  }
}
