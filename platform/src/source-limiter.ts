// Pre-authentication admission for a listener whose peers authenticate only at the
// end of a handshake (both WebSocket listeners: the agent's tunnel listener and the
// control plane's /v1/agent), in the spirit of WireGuard's handshake rate limiting.
// Pure apart from the injected clock; the listeners own the sockets and timers.
//
// A connection holds a slot from accept until its handshake authenticates or ends:
//   idle     connected, first handshake message not yet received. Capped in all
//            (maxIdle) and per source (maxIdlePerSource); the listener gives it a
//            short deadline for that message. When the idle table is full, the
//            oldest idle connection is evicted: a real peer sends its first message
//            within a round trip, so idle sockets, from however many sources,
//            cannot lock others out.
//   pending  first message received and checked, handshake running. Capped in all
//            (maxPending), per source (maxPendingPerSource) and per prefix
//            (maxPendingPerPrefix: an IPv4 /24, an IPv6 /48), apart from idle ones,
//            so idle sockets cannot starve handshakes that are really under way.
//            When the pending table is full, the oldest pending handshake is
//            evicted: anyone can build a valid first message, so a few sources
//            could otherwise stall handshakes and refuse every peer, while a real
//            peer completes within a round trip and is not the oldest for long.
// Under load, every new connection also takes a token from its source's bucket
// (sourcePerSecond, sourceBurst): one source cannot take the CPU. The limiter is
// under load for LOAD_HOLD_MS after connection attempts, from all sources together,
// last exceeded loadPerSecond. A handshake that authenticates gives its token back,
// so the bucket bounds a source's unauthenticated work, not its real handshakes.
//
// A source's bucket is forgotten only once it is full again (the source then holds
// nothing and has waited out its window): never to make room for new sources while
// under load, when a source that cannot be tracked is refused ('rate') instead.
//
// A source is an address: IPv4 as is (an IPv4-mapped IPv6 address, or one in the NAT64
// prefix 64:ff9b::/96, as its embedded IPv4), IPv6 by its /64, which one host usually
// owns whole (as WireGuard does).
import { isIPv4, isIPv6 } from 'node:net'

import type { MonotonicClock } from './clock.js'
import { TokenBucket } from './token-bucket.js'

export interface SourceLimits {
  /** Connections that have not sent their first handshake message, all sources (default 1,024). */
  readonly maxIdle: number
  /** The same, from one source (default 64). */
  readonly maxIdlePerSource: number
  /** Handshakes past their first message and not yet authenticated, all sources (default 256). */
  readonly maxPending: number
  /** The same, from one source (default 64). */
  readonly maxPendingPerSource: number
  /** The same, from one prefix: an IPv4 /24, an IPv6 /48 (default 128). */
  readonly maxPendingPerPrefix: number
  /** Connection attempts per second, all sources, beyond which the limiter is under load (default 200). */
  readonly loadPerSecond: number
  /** Under load: connections per second a source may open, and its burst (defaults 20 and 40). */
  readonly sourcePerSecond: number
  readonly sourceBurst: number
  /** Sources tracked at most; must exceed maxIdle + maxPending (default 4,096). */
  readonly maxSources: number
}

export const DEFAULT_SOURCE_LIMITS: SourceLimits = Object.freeze({
  maxIdle: 1024,
  maxIdlePerSource: 64,
  maxPending: 256,
  maxPendingPerSource: 64,
  maxPendingPerPrefix: 128,
  loadPerSecond: 200,
  sourcePerSecond: 20,
  sourceBurst: 40,
  maxSources: 4096,
})

/** How long the limiter stays under load after attempts last exceeded loadPerSecond. */
export const LOAD_HOLD_MS = 1_000
/** After a sweep of a full source table that freed nothing, new sources are refused this long without another. */
const SWEEP_PAUSE_MS = 100

/**
 * Why a connection was refused: `idle-limit` this slot was evicted from the full idle
 * table, `pending-limit` (kept for the listeners' code tables; a full pending table
 * evicts its oldest instead),
 * `source-idle-limit` / `source-pending-limit` this source's share is, `rate` this
 * source's bucket is empty while under load, or under load the source table is full
 * of sources within their windows.
 */
export type SourceRefusal = 'idle-limit' | 'pending-limit' | 'source-idle-limit' | 'source-pending-limit' | 'rate'

export interface SourceSlot {
  readonly source: string
  readonly phase: 'idle' | 'pending' | 'released'
  /** Called (once) if the limiter evicts this slot (idle or pending) to make room; the slot is then released. */
  onEvict: (() => void) | undefined
  /** The first handshake message arrived: idle → pending, or the refusal (the slot stays idle; a released one is refused). */
  hello(): SourceRefusal | undefined
  /** The handshake authenticated: the source gets back the token this connection took. */
  authenticated(): void
  /** Frees the slot; later calls do nothing. */
  release(): void
}

interface SourceState {
  readonly idle: Set<Slot>
  pending: number
  readonly bucket: TokenBucket
}

export interface SourceLimiterStats {
  readonly idle: number
  readonly pending: number
  readonly sources: number
  readonly underLoad: boolean
}

export class SourceLimiter {
  readonly limits: SourceLimits
  readonly #clock: MonotonicClock
  readonly #sources = new Map<string, SourceState>()
  /** Idle slots, oldest first. */
  readonly #idleSlots = new Set<Slot>()
  /** Until then a full source table is not swept again (a sweep that freed nothing is not repeated per connection). */
  #noRoomUntil = -Infinity
  /** Pending slots, oldest first (a Set keeps insertion order). */
  readonly #pendingSlots = new Set<Slot>()
  /** Pending handshakes by prefix (prefixOf). */
  readonly #prefixPending = new Map<string, number>()
  readonly #load: TokenBucket
  #overloadedAt = -Infinity
  #idle = 0
  #pending = 0

  constructor(limits: Partial<SourceLimits>, clock: MonotonicClock) {
    const l = { ...DEFAULT_SOURCE_LIMITS, ...limits }
    for (const [name, value] of Object.entries(l)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`source limit ${name} must be a positive integer`)
    }
    if (l.maxSources <= l.maxIdle + l.maxPending) throw new RangeError('source limit maxSources must exceed maxIdle + maxPending')
    this.limits = Object.freeze(l)
    this.#clock = clock
    this.#load = new TokenBucket(l.loadPerSecond, l.loadPerSecond, clock.monotonicMs())
  }

  get underLoad(): boolean {
    return this.#clock.monotonicMs() - this.#overloadedAt < LOAD_HOLD_MS
  }

  stats(): SourceLimiterStats {
    return { idle: this.#idle, pending: this.#pending, sources: this.#sources.size, underLoad: this.underLoad }
  }

  /** A new connection from `source` (see sourceOf): an idle slot, or why not. */
  open(source: string): SourceSlot | SourceRefusal {
    const now = this.#clock.monotonicMs()
    if (!this.#load.take(now)) this.#overloadedAt = now
    const l = this.limits
    const st = this.#state(source, now)
    if (st === undefined) return 'rate'
    if (st.idle.size >= l.maxIdlePerSource) return 'source-idle-limit'
    const tokenTaken = this.underLoad
    if (tokenTaken && !st.bucket.take(now)) return 'rate'
    if (this.#idle >= l.maxIdle) this.#evictOldest(this.#idleSlots)
    const slot = new Slot(this, source, st, tokenTaken)
    st.idle.add(slot)
    this.#idleSlots.add(slot)
    this.#idle++
    return slot
  }

  /** @internal Slot transitions; they keep the totals. */
  toPending(slot: Slot, st: SourceState): SourceRefusal | undefined {
    if (st.pending >= this.limits.maxPendingPerSource) return 'source-pending-limit'
    const prefix = prefixOf(slot.source)
    const inPrefix = this.#prefixPending.get(prefix) ?? 0
    if (inPrefix >= this.limits.maxPendingPerPrefix) return 'source-pending-limit'
    if (this.#pending >= this.limits.maxPending) {
      // Full: the oldest pending handshake makes room (see the header).
      this.#evictOldest(this.#pendingSlots)
    }
    st.idle.delete(slot)
    this.#idleSlots.delete(slot)
    this.#idle--
    st.pending++
    this.#pending++
    this.#pendingSlots.add(slot)
    this.#prefixPending.set(prefix, inPrefix + 1)
    return undefined
  }

  /** @internal */
  released(slot: Slot, st: SourceState, was: 'idle' | 'pending'): void {
    if (was === 'idle') {
      st.idle.delete(slot)
      this.#idleSlots.delete(slot)
      this.#idle--
    } else {
      st.pending--
      this.#pending--
      this.#pendingSlots.delete(slot)
      const prefix = prefixOf(slot.source)
      const left = (this.#prefixPending.get(prefix) ?? 1) - 1
      if (left === 0) this.#prefixPending.delete(prefix)
      else this.#prefixPending.set(prefix, left)
    }
    if (st.idle.size === 0 && st.pending === 0 && st.bucket.full(this.#clock.monotonicMs())) this.#sources.delete(slot.source)
  }

  /** @internal */
  refund(st: SourceState): void {
    st.bucket.give(this.#clock.monotonicMs())
  }

  /** The source's state; undefined when the table is full and cannot make room (see the header). */
  #state(source: string, now: number): SourceState | undefined {
    let st = this.#sources.get(source)
    if (st !== undefined) return st
    if (this.#sources.size >= this.limits.maxSources) {
      const loaded = this.underLoad
      if (loaded && now < this.#noRoomUntil) return undefined
      // Sources holding no slot are forgotten once their buckets are full again; when
      // not under load buckets are not used, so all of them may go (at most maxIdle +
      // maxPending sources hold a slot, so that always makes room).
      for (const [s, v] of this.#sources) {
        if (v.idle.size === 0 && v.pending === 0 && (!loaded || v.bucket.full(now))) this.#sources.delete(s)
      }
      if (this.#sources.size >= this.limits.maxSources) {
        this.#noRoomUntil = now + SWEEP_PAUSE_MS
        return undefined
      }
    }
    st = { idle: new Set(), pending: 0, bucket: new TokenBucket(this.limits.sourcePerSecond, this.limits.sourceBurst, now) }
    this.#sources.set(source, st)
    return st
  }

  /** Evicts the oldest slot of a full table (never empty: every limit is at least 1). */
  #evictOldest(table: Set<Slot>): void {
    ;(table.values().next().value as Slot).evict()
  }
}

class Slot implements SourceSlot {
  readonly source: string
  readonly #limiter: SourceLimiter
  readonly #st: SourceState
  readonly #tokenTaken: boolean
  #phase: 'idle' | 'pending' | 'released' = 'idle'
  onEvict: (() => void) | undefined

  constructor(limiter: SourceLimiter, source: string, st: SourceState, tokenTaken: boolean) {
    this.#limiter = limiter
    this.source = source
    this.#st = st
    this.#tokenTaken = tokenTaken
  }

  get phase(): 'idle' | 'pending' | 'released' {
    return this.#phase
  }

  hello(): SourceRefusal | undefined {
    if (this.#phase === 'pending') return undefined
    // Released before its first message: evicted (maybe before its owner set onEvict).
    if (this.#phase === 'released') return 'idle-limit'
    const refusal = this.#limiter.toPending(this, this.#st)
    if (refusal === undefined) this.#phase = 'pending'
    return refusal
  }

  authenticated(): void {
    if (this.#tokenTaken && this.#phase !== 'released') this.#limiter.refund(this.#st)
  }

  release(): void {
    if (this.#phase === 'released') return
    const was = this.#phase
    this.#phase = 'released'
    this.#limiter.released(this, this.#st, was)
  }

  evict(): void {
    this.release()
    const fn = this.onEvict
    this.onEvict = undefined
    fn?.()
  }
}

/** The prefix a source (see sourceOf) counts under for maxPendingPerPrefix: an IPv4 /24, an IPv6 /48. */
export function prefixOf(source: string): string {
  const v4 = /^(\d+\.\d+\.\d+)\.\d+$/.exec(source)
  if (v4) return `${v4[1] as string}.0/24`
  const v6 = /^([0-9a-f]+:[0-9a-f]+:[0-9a-f]+):[0-9a-f]+::\/64$/.exec(source)
  if (v6) return `${v6[1] as string}::/48`
  return source
}

/** The source a remote address counts under (see the header); 'unknown' when there is none. */
export function sourceOf(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1] as string
  if (isIPv4(address)) return address
  if (!isIPv6(address)) return 'unknown'
  let bare = address.split('%')[0] as string
  // A dotted IPv4 tail (64:ff9b::192.0.2.1) as its two groups.
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(bare)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(2).map(Number) as [number, number, number, number]
    bare = `${dotted[1] as string}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = bare.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = (tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]).map((g) => Number.parseInt(g, 16))
  // IPv4-mapped (::ffff:0:0/96) and the NAT64 well-known prefix (64:ff9b::/96): the
  // client is the embedded IPv4 address, not the /64 every such client shares.
  const prefix96 = groups.slice(0, 6).join(':')
  if (prefix96 === '0:0:0:0:0:65535' || prefix96 === '100:65435:0:0:0:0') {
    const [hi = 0, lo = 0] = groups.slice(6)
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`
}
