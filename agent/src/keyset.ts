// The agent's key set: for each pair of its service, the pair key versions, the
// peer service's agents (static keys and tunnel endpoints) and which directions
// the intentions allow. Filled from the control session (keyset.begin/pair/end,
// pair.update, pair.remove, pair.peers) or, while the control plane is unreachable, from the
// sealed cache (keyset-cache.ts). Tunnels read it on every handshake and subscribe
// to its changes (rotation → re-handshake; a peer gone → its tunnels end).
//
// Contract:
//   - A version is usable while `notAfter` is null, or until both the wall clock has
//     reached it and as much time as was left of it when the set arrived has elapsed
//     (the clock's monotonic reading); lookups never return an expired version. So an
//     agent whose wall clock jumps ahead keeps a version in its grace for the rest of
//     that grace, and one whose clock jumps back keeps it at most until the control
//     plane, which ends the grace on its own clock, sends the set without it.
//   - replace() swaps the whole set at once (a half-received stream never shows).
//   - Listeners run synchronously after each change, with what changed; a
//     listener that throws does not stop the others (the error goes to onError).
//   - wipe() zeroes every key buffer; the set is empty afterwards.
import type { PairEntry, PairPeer, PairVersion } from '../../protocol/src/index.js'
import { MAX_PAIR_PEERS, parsePublicKey } from '../../protocol/src/index.js'
import type { Clock, MonotonicClock } from './clock.js'

export type { PairEntry, PairPeer, PairVersion }

export type KeySetSource = 'control-plane' | 'cache'

export type KeySetChange =
  | { readonly kind: 'replaced'; readonly source: KeySetSource; readonly pairIds: readonly string[] }
  | { readonly kind: 'updated'; readonly pairId: string; readonly previous: PairEntry | undefined }
  | { readonly kind: 'removed'; readonly pairId: string; readonly previous: PairEntry }

export type KeySetListener = (change: KeySetChange) => void

/** A peer agent with its static key decoded once. */
export interface PeerAgent {
  readonly agentId: string
  readonly staticKey: Uint8Array
  readonly endpoint: string | null
}

export class KeySet {
  readonly #clock: Clock & MonotonicClock
  /** Each version with a notAfter → the monotonic reading at which its grace has also elapsed. */
  readonly #graceEnds = new WeakMap<PairVersion, number>()
  readonly #onError: (err: unknown) => void
  readonly #pairs = new Map<string, PairEntry>()
  readonly #byPeerService = new Map<string, string>()
  readonly #listeners = new Set<KeySetListener>()
  #source: KeySetSource | undefined
  #updatedAt: number | undefined

  constructor(clock: Clock & MonotonicClock, onError: (err: unknown) => void = () => {}) {
    this.#clock = clock
    this.#onError = onError
  }

  /** True once a whole set arrived, from the control plane or the cache. */
  get ready(): boolean {
    return this.#source !== undefined
  }

  /** Where the set in use came from; undefined before the first one. */
  get source(): KeySetSource | undefined {
    return this.#source
  }

  /** When the set last changed (clock ms). */
  get updatedAt(): number | undefined {
    return this.#updatedAt
  }

  get size(): number {
    return this.#pairs.size
  }

  /** Every pair, in pair id order. */
  pairs(): PairEntry[] {
    return [...this.#pairs.values()].sort((a, b) => (a.pairId < b.pairId ? -1 : a.pairId > b.pairId ? 1 : 0))
  }

  get(pairId: string): PairEntry | undefined {
    return this.#pairs.get(pairId)
  }

  /** The pair this service has with `peerService`. */
  byPeerService(peerService: string): PairEntry | undefined {
    const id = this.#byPeerService.get(peerService)
    return id === undefined ? undefined : this.#pairs.get(id)
  }

  /** The current version of a pair, when it is still usable. */
  current(pairId: string): PairVersion | undefined {
    const v = this.#pairs.get(pairId)?.versions.find((x) => x.state === 'current')
    return v !== undefined && this.usable(v) ? v : undefined
  }

  /** Version `version` of a pair (current or previous), when it is still usable. */
  version(pairId: string, version: number): PairVersion | undefined {
    const v = this.#pairs.get(pairId)?.versions.find((x) => x.version === version)
    return v !== undefined && this.usable(v) ? v : undefined
  }

  usable(v: PairVersion): boolean {
    if (v.notAfter === null || v.notAfter > this.#clock.now()) return true
    const end = this.#graceEnds.get(v)
    return end !== undefined && end > this.#clock.monotonicMs()
  }

  /**
   * How much of `v`'s grace is left, as elapsed time (the monotonic reading): null
   * for a version without a notAfter. Not the wall clock's view, which a step
   * either way would make hours wrong; the control plane ends the grace on its own
   * clock, which this follows.
   */
  graceLeftMs(v: PairVersion): number | null {
    if (v.notAfter === null) return null
    const end = this.#graceEnds.get(v)
    return end === undefined ? v.notAfter - this.#clock.now() : end - this.#clock.monotonicMs()
  }

  /** A peer agent of a pair, by id; undefined when it is not (or no longer) listed. */
  peer(pairId: string, agentId: string): PeerAgent | undefined {
    const p = this.#pairs.get(pairId)?.peers.find((x) => x.agentId === agentId)
    return p === undefined ? undefined : toPeerAgent(p)
  }

  /** The peer agents of a pair that advertise a tunnel endpoint. */
  reachablePeers(pairId: string): PeerAgent[] {
    const p = this.#pairs.get(pairId)
    if (p === undefined) return []
    return p.peers.filter((x) => x.endpoint !== null).map(toPeerAgent)
  }

  subscribe(listener: KeySetListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** Swaps in a whole set; the old keys are wiped. */
  replace(pairs: readonly PairEntry[], source: KeySetSource): void {
    const old = [...this.#pairs.values()]
    const before = new Map(this.#pairs)
    this.#pairs.clear()
    this.#byPeerService.clear()
    for (const p of pairs) this.#put(p, before.get(p.pairId))
    this.#source = source
    this.#updatedAt = this.#clock.now()
    this.#emit({ kind: 'replaced', source, pairIds: [...this.#pairs.keys()] })
    // Wiped after listeners ran: they may compare against what was there. Entries
    // are compared by identity: callers pass freshly decoded entries, never a copy
    // that shares an old entry's key buffers.
    const kept = new Set(pairs)
    for (const p of old) if (!kept.has(p)) wipePair(p)
  }

  /** One pair added or changed (pair.update). */
  update(pair: PairEntry): void {
    const previous = this.#pairs.get(pair.pairId)
    if (previous !== undefined) this.#byPeerService.delete(previous.peerService)
    this.#put(pair, previous)
    this.#updatedAt = this.#clock.now()
    this.#emit({ kind: 'updated', pairId: pair.pairId, previous })
    if (previous !== undefined && previous !== pair) wipePair(previous)
  }

  /**
   * Only the peers of a pair changed (pair.peers): `remove` leave the list, `add` replace
   * the entry of the same agent in place or are appended, in order (the control plane's
   * order: by enrolment, the newest last; past MAX_PAIR_PEERS the oldest go, as there).
   * The versions are kept as they are, grace and all. False, and nothing changed, when
   * the pair is not held: the caller asks for the pair again.
   */
  updatePeers(pairId: string, add: readonly PairPeer[], remove: readonly string[]): boolean {
    const previous = this.#pairs.get(pairId)
    if (previous === undefined) return false
    const gone = new Set(remove)
    const added = new Map(add.map((p) => [p.agentId, p]))
    const peers = previous.peers.filter((p) => !gone.has(p.agentId)).map((p) => added.get(p.agentId) ?? p)
    const listed = new Set(peers.map((p) => p.agentId))
    for (const p of add) if (!listed.has(p.agentId)) peers.push(p)
    const pair: PairEntry = { ...previous, peers: peers.slice(-MAX_PAIR_PEERS) }
    this.#pairs.set(pairId, pair)
    this.#updatedAt = this.#clock.now()
    this.#emit({ kind: 'updated', pairId, previous })
    return true
  }

  /** One pair gone (pair.remove); unknown ids are ignored. */
  remove(pairId: string): void {
    const previous = this.#pairs.get(pairId)
    if (previous === undefined) return
    this.#pairs.delete(pairId)
    this.#byPeerService.delete(previous.peerService)
    this.#updatedAt = this.#clock.now()
    this.#emit({ kind: 'removed', pairId, previous })
    wipePair(previous)
  }

  /** Zeroes every key; the set is empty and not ready afterwards. */
  wipe(): void {
    for (const p of this.#pairs.values()) wipePair(p)
    this.#pairs.clear()
    this.#byPeerService.clear()
    this.#source = undefined
  }

  #put(p: PairEntry, previous: PairEntry | undefined): void {
    const wall = this.#clock.now()
    const mono = this.#clock.monotonicMs()
    for (const v of p.versions) {
      if (v.notAfter === null) continue
      // The same grace sent again keeps the elapsed time it had; a new or moved one starts now.
      const was = previous?.versions.find((x) => x.version === v.version && x.notAfter === v.notAfter)
      const end = was === undefined ? undefined : this.#graceEnds.get(was)
      this.#graceEnds.set(v, end ?? mono + Math.max(0, v.notAfter - wall))
    }
    this.#pairs.set(p.pairId, p)
    this.#byPeerService.set(p.peerService, p.pairId)
  }

  #emit(change: KeySetChange): void {
    for (const l of [...this.#listeners]) {
      try {
        l(change)
      } catch (err) {
        this.#onError(err)
      }
    }
  }
}

function toPeerAgent(p: PairPeer): PeerAgent {
  return { agentId: p.agentId, staticKey: parsePublicKey(p.staticKey), endpoint: p.endpoint }
}

export function wipePair(p: PairEntry): void {
  for (const v of p.versions) v.key.fill(0)
}
