// What one session has sent of its agent's key set: the first full set
// (keyset.begin, one keyset.pair per pair, keyset.end), then only differences —
// pair.update for a pair whose encoding changed (pair.peers where only its peers
// did, see hub.ts), pair.remove for one that is gone.
// It remembers a digest per pair, never the key material itself.
//
// Ordering (see hub.ts): a set numbered below the last one sent is ignored, and a
// push that arrives while the first set is still being read is not applied but
// answered with a fresh push once the first set is out.
import type { Message, MessageHead } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { buildKeySet } from '../services/keyset.js'
import type { AgentRecord } from '../store/records.js'
import { encodeKeySet, wipeEncoded, type EncodedKeySet, type Hub } from './hub.js'

export type FirstSend = 'sent' | 'revoked' | 'closed'

/** Where the stream sends: the session, which checks each message's place in the conversation. */
export interface KeySetSink {
  send(message: Message): void
  /** Sends a message encoded already (its bytes stay the caller's); `head` says what it is. */
  sendEncoded(head: MessageHead, encoded: Uint8Array): void
}

export class KeySetStream {
  readonly #channel: KeySetSink
  readonly #digests = new Map<string, string>()
  #appliedSeq = 0
  #synced = false
  #resync = false

  constructor(channel: KeySetSink) {
    this.#channel = channel
  }

  /**
   * Reads and sends the first key set. The agent row is read in the same snapshot:
   * a revocation that committed before the session joined the hub reached it as no
   * event, so it is caught here ('revoked'). `live` says whether the session is still up.
   */
  async sendFirst(ctx: CpContext, hub: Hub, agent: AgentRecord, live: () => boolean): Promise<FirstSend> {
    const seq = hub.nextSeq()
    const { row, set } = await ctx.store.read(async (r) => ({
      row: await r.getAgent(agent.id),
      set: encodeKeySet(ctx, await buildKeySet(ctx, r, agent.service), true),
    }))
    try {
      if (!live()) return 'closed'
      if (row === null || row.revokedAt !== null) return 'revoked'
      this.#channel.send({ type: 'keyset.begin', generation: seq, pairCount: set.size })
      for (const [pairId, pair] of set) {
        this.#channel.sendEncoded({ type: 'keyset.pair' }, pair.initial as Uint8Array)
        this.#digests.set(pairId, pair.digest)
      }
      this.#channel.send({ type: 'keyset.end', generation: seq })
      this.#appliedSeq = seq
      this.#synced = true
    } finally {
      wipeEncoded(set)
    }
    if (this.#resync) hub.refresh(agent.service)
    return 'sent'
  }

  /** The agent has been sent pair `pairId` (and not its removal since). */
  has(pairId: string): boolean {
    return this.#digests.has(pairId)
  }

  /**
   * Sends what differs between the last set sent and `set`; with `peerDeltas` (the
   * 'pair.peers' feature agreed) a pair whose peers alone changed since the copy this
   * agent holds goes as pair.peers. Throws what the channel throws.
   */
  apply(seq: number, set: EncodedKeySet, peerDeltas = false): void {
    if (seq < this.#appliedSeq) return
    if (!this.#synced) {
      this.#resync = true
      return
    }
    this.#appliedSeq = seq
    for (const [pairId, pair] of set) {
      const held = this.#digests.get(pairId)
      if (held === pair.digest) continue
      if (peerDeltas && pair.delta !== undefined && held === pair.delta.base) this.#channel.sendEncoded({ type: 'pair.peers' }, pair.delta.bytes)
      else this.#channel.sendEncoded({ type: 'pair.update' }, pair.bytes)
      this.#digests.set(pairId, pair.digest)
    }
    for (const pairId of [...this.#digests.keys()]) {
      if (set.has(pairId)) continue
      this.#channel.send({ type: 'pair.remove', pairId })
      this.#digests.delete(pairId)
    }
  }
}
