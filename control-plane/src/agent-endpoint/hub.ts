// The registry of live agent sessions and the pushes they get. It subscribes to
// the change bus: a 'services' event recomputes the key set of each named service
// once, encodes each pair once, and hands it to every session of that service,
// which sends only what changed (a pair.peers message where only a pair's peers did,
// and the session agreed to it and holds the pair as last pushed); an 'agent-revoked' event closes that agent's
// sessions at once; a 'resync' event (changes may have been missed) does both for
// every connected agent; an 'agent-connected' event (from this replica or another)
// tells every session of a service paired with that agent's (peerUp: peer.up where
// the agent agreed to it and holds the pair).
//
// Ordering: every key-set computation takes a number from one counter before it
// reads the store, so a session never applies a set older than one it already
// sent. A session still sending its first key set asks for a fresh push when it is
// done instead of applying one mid-stream (see session.ts).
import type { KeymeshError } from '../../../protocol/src/index.js'
import { encodeMessage, pairId, type PairPeer } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { ChangeEvent } from '../events.js'
import { buildKeySet, wipeKeySet } from '../services/keyset.js'
import type { AgentRecord } from '../store/records.js'

/** One pair as pushed: the encoded pair.update message (secret: wiped after use) and its digest. */
export interface EncodedPair {
  readonly bytes: Uint8Array
  readonly digest: string
  /** The same pair as a keyset.pair message, when asked for (a session's first key set). */
  readonly initial?: Uint8Array
  /** The digest of the pair without its peers: what a pair.peers message leaves as it was. */
  readonly head: string
  /** The peers, in the order sent (public: agent ids, static keys, endpoints). */
  readonly peers: readonly PairPeer[]
  /**
   * When only the peers changed since the set pushed before: the pair.peers message that
   * turns the pair whose digest is `base` into this one (not secret), for sessions that
   * hold `base` and agreed to the feature.
   */
  delta?: { readonly base: string; readonly bytes: Uint8Array }
}

export type EncodedKeySet = ReadonlyMap<string, EncodedPair>

export interface HubSession {
  readonly agentId: string
  readonly service: string
  /** Sends the differences between what this session last got and `set`. */
  applyUpdate(seq: number, set: EncodedKeySet): void
  /** Closes the session with a typed error (its close code). */
  terminate(error: KeymeshError): void
  /** `agentId` of the peer service of `pairId` connected: tell the agent, if it holds that pair and speaks peer.up. */
  peerUp(pairId: string, agentId: string): void
}

interface ServiceRefresh {
  running: boolean
  dirty: boolean
}

export class Hub {
  readonly #ctx: CpContext
  readonly #byAgent = new Map<string, HubSession>()
  readonly #byService = new Map<string, Set<HubSession>>()
  readonly #refresh = new Map<string, ServiceRefresh>()
  /** The last set pushed to each service's sessions, its pairs' heads and peers only: the base of the next pair.peers. */
  readonly #last = new Map<string, EncodedKeySet>()
  readonly #idle = new Set<() => void>()
  readonly #unsubscribe: () => void
  #seq = 0

  constructor(ctx: CpContext) {
    this.#ctx = ctx
    this.#unsubscribe = ctx.bus.subscribe((e) => this.#onChange(e))
  }

  get size(): number {
    return this.#byAgent.size
  }

  isConnected(agentId: string): boolean {
    return this.#byAgent.has(agentId)
  }

  /** The next key-set sequence number; take it before reading the store. */
  nextSeq(): number {
    return ++this.#seq
  }

  /** Adds a session; an older session of the same agent is closed (the agent reconnected). */
  register(session: HubSession): void {
    const old = this.#byAgent.get(session.agentId)
    if (old && old !== session) {
      this.unregister(old)
      old.terminate(cpError('CP_ERR_AGENT_REPLACED'))
    }
    this.#byAgent.set(session.agentId, session)
    let set = this.#byService.get(session.service)
    if (!set) this.#byService.set(session.service, (set = new Set()))
    set.add(session)
  }

  unregister(session: HubSession): void {
    if (this.#byAgent.get(session.agentId) === session) this.#byAgent.delete(session.agentId)
    const set = this.#byService.get(session.service)
    set?.delete(session)
    if (set?.size === 0) {
      this.#byService.delete(session.service)
      this.#last.delete(session.service)
    }
  }

  sessions(): HubSession[] {
    return [...this.#byAgent.values()]
  }

  /** Recomputes and pushes the key set of `service` to its sessions (coalesced). */
  refresh(service: string): void {
    let st = this.#refresh.get(service)
    if (!st) this.#refresh.set(service, (st = { running: false, dirty: false }))
    if (st.running) {
      st.dirty = true
      return
    }
    st.running = true
    const state = st
    void (async () => {
      try {
        do {
          state.dirty = false
          await this.#refreshOnce(service)
        } while (state.dirty)
      } finally {
        state.running = false
        this.#refresh.delete(service)
        if (this.#refresh.size === 0) for (const fn of this.#idle) fn()
      }
    })()
  }

  /** Resolves when no push is being computed (tests, shutdown). */
  idle(): Promise<void> {
    if (this.#refresh.size === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const fn = (): void => {
        this.#idle.delete(fn)
        resolve()
      }
      this.#idle.add(fn)
    })
  }

  close(): void {
    this.#unsubscribe()
  }

  #onChange(e: ChangeEvent): void {
    if (e.kind === 'agent-revoked') {
      this.#closeAgent(e.agentId)
      return
    }
    if (e.kind === 'agent-connected') {
      this.#peerUp(e.agentId, e.service)
      return
    }
    if (e.kind === 'resync') {
      // Changes made on other replicas may have been missed: recompute every key
      // set, and close the sessions of agents revoked meanwhile.
      for (const service of [...this.#byService.keys()]) this.refresh(service)
      void this.#closeRevoked()
      return
    }
    for (const service of new Set(e.services)) if (this.#byService.has(service)) this.refresh(service)
  }

  #peerUp(agentId: string, service: string): void {
    try {
      for (const [other, sessions] of this.#byService) {
        if (other === service) continue
        const id = pairId(service, other)
        for (const session of [...sessions]) session.peerUp(id, agentId)
      }
    } catch (err) {
      // A service name that is not one (an event from a replica gone wrong): nobody is told.
      this.#ctx.logger.warn({ err: { message: (err as Error).message }, service }, 'peer.up not sent')
    }
  }

  async #closeRevoked(): Promise<void> {
    const ids = [...this.#byAgent.keys()]
    if (ids.length === 0) return
    let rows: (AgentRecord | null)[]
    try {
      rows = await this.#ctx.store.read((r) => Promise.all(ids.map((id) => r.getAgent(id))))
    } catch (err) {
      this.#ctx.logger.error({ err }, 'could not check connected agents for revocation')
      return
    }
    for (const row of rows) if (row && row.revokedAt !== null) this.#closeAgent(row.id)
  }

  #closeAgent(agentId: string): void {
    const session = this.#byAgent.get(agentId)
    if (!session) return
    this.unregister(session)
    session.terminate(cpError('CP_ERR_AGENT_REVOKED', `agent ${agentId}`))
  }

  async #refreshOnce(service: string): Promise<void> {
    if (!this.#byService.has(service)) return
    const seq = this.nextSeq()
    let set: Map<string, EncodedPair>
    try {
      set = await this.#ctx.store.read(async (r) => encodeKeySet(this.#ctx, await buildKeySet(this.#ctx, r, service)))
    } catch (err) {
      this.#ctx.logger.error({ err, service }, 'could not compute a key set push')
      return
    }
    const last = this.#last.get(service)
    if (last !== undefined) for (const [id, pair] of set) addPeersDelta(pair, last.get(id), id)
    this.#last.set(service, new Map([...set].map(([id, p]) => [id, { bytes: EMPTY, digest: p.digest, head: p.head, peers: p.peers }])))
    try {
      for (const session of [...(this.#byService.get(service) ?? [])]) session.applyUpdate(seq, set)
    } finally {
      wipeEncoded(set)
    }
  }
}

const EMPTY = new Uint8Array(0)

/**
 * Gives `pair` the pair.peers message from `before` when only the peers changed: the
 * peers gone, and the new or changed ones. An agent applying it (keyset.ts updatePeers)
 * holds the same peers as the whole pair lists, the new ones last rather than in the
 * control plane's order, which nothing depends on: the peers are looked up by agent id.
 */
function addPeersDelta(pair: EncodedPair, before: EncodedPair | undefined, id: string): void {
  if (before === undefined || before.head !== pair.head || before.digest === pair.digest) return
  const now = new Set(pair.peers.map((p) => p.agentId))
  const was = new Map(before.peers.map((p) => [p.agentId, p]))
  const remove = before.peers.filter((p) => !now.has(p.agentId)).map((p) => p.agentId)
  const add = pair.peers.filter((p) => {
    const old = was.get(p.agentId)
    return old === undefined || old.staticKey !== p.staticKey || old.endpoint !== p.endpoint
  })
  pair.delta = { base: before.digest, bytes: encodeMessage({ type: 'pair.peers', pairId: id, add, remove }) }
}

export function wipeEncoded(set: EncodedKeySet): void {
  for (const p of set.values()) {
    p.bytes.fill(0)
    p.initial?.fill(0)
  }
}

/** Encodes each pair as a pair.update message and wipes the clear entries. */
export function encodeKeySet(ctx: CpContext, entries: Parameters<typeof wipeKeySet>[0], initial = false): Map<string, EncodedPair> {
  const out = new Map<string, EncodedPair>()
  try {
    for (const pair of entries) {
      const bytes = encodeMessage({ type: 'pair.update', pair })
      const digest = Buffer.from(ctx.suite.sha256(bytes)).toString('base64')
      const headBytes = encodeMessage({ type: 'pair.update', pair: { ...pair, peers: [] } })
      const head = Buffer.from(ctx.suite.sha256(headBytes)).toString('base64')
      headBytes.fill(0)
      const peers = pair.peers.map((p) => ({ ...p }))
      out.set(pair.pairId, initial ? { bytes, digest, head, peers, initial: encodeMessage({ type: 'keyset.pair', pair }) } : { bytes, digest, head, peers })
    }
    return out
  } catch (err) {
    wipeEncoded(out)
    throw err
  } finally {
    wipeKeySet(entries)
  }
}
