// Remembers the first handshake messages seen lately, by the initiator's ephemeral
// public key, so that a replayed message 1 is refused before any Diffie-Hellman and
// without holding a handshake slot. Bounded both ways: an entry lives `ttlMs`, and
// past `maxEntries` the oldest is forgotten first (a flood of fresh keys can only
// push out old entries; a replay that gets through then meets the other limits and
// still cannot complete the handshake, since it needs the initiator's secrets).
//
// Ephemeral keys are public values, so plain Map lookups are fine here: there is no
// secret whose comparison could leak through timing.
import type { MonotonicClock } from './clock.js'

export interface ReplayCacheOptions {
  readonly maxEntries: number
  readonly ttlMs: number
}

export class ReplayCache {
  readonly #o: ReplayCacheOptions
  readonly #clock: MonotonicClock
  /** key → expiry time, in insertion order (so oldest first). */
  readonly #seen = new Map<string, number>()

  constructor(o: ReplayCacheOptions, clock: MonotonicClock) {
    if (!Number.isSafeInteger(o.maxEntries) || o.maxEntries < 1) throw new RangeError('replay cache maxEntries must be a positive integer')
    if (!Number.isSafeInteger(o.ttlMs) || o.ttlMs < 1) throw new RangeError('replay cache ttlMs must be a positive integer')
    this.#o = o
    this.#clock = clock
  }

  get size(): number {
    return this.#seen.size
  }

  /** True when `key` was seen within the last ttlMs (a replay); else remembers it and returns false. */
  seen(key: Uint8Array): boolean {
    const now = this.#clock.monotonicMs()
    for (const [k, expires] of this.#seen) {
      if (expires > now) break
      this.#seen.delete(k)
    }
    const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64')
    const expires = this.#seen.get(id)
    if (expires !== undefined && expires > now) return true
    this.#seen.delete(id)
    this.#seen.set(id, now + this.#o.ttlMs)
    if (this.#seen.size > this.#o.maxEntries) this.#seen.delete(this.#seen.keys().next().value as string)
    return false
  }
}
