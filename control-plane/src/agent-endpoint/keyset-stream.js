import { buildKeySet } from '../services/keyset.js';
import { encodeKeySet, wipeEncoded } from './hub.js';
export class KeySetStream {
    #channel;
    #digests = new Map();
    #appliedSeq = 0;
    #synced = false;
    #resync = false;
    constructor(channel) {
        this.#channel = channel;
    }
    /**
     * Reads and sends the first key set. The agent row is read in the same snapshot:
     * a revocation that committed before the session joined the hub reached it as no
     * event, so it is caught here ('revoked'). `live` says whether the session is still up.
     */
    async sendFirst(ctx, hub, agent, live) {
        const seq = hub.nextSeq();
        const { row, set } = await ctx.store.read(async (r) => ({
            row: await r.getAgent(agent.id),
            set: encodeKeySet(ctx, await buildKeySet(ctx, r, agent.service), true),
        }));
        try {
            if (!live())
                return 'closed';
            if (row === null || row.revokedAt !== null)
                return 'revoked';
            this.#channel.send({ type: 'keyset.begin', generation: seq, pairCount: set.size });
            for (const [pairId, pair] of set) {
                this.#channel.sendEncoded(pair.initial);
                this.#digests.set(pairId, pair.digest);
            }
            this.#channel.send({ type: 'keyset.end', generation: seq });
            this.#appliedSeq = seq;
            this.#synced = true;
        }
        finally {
            wipeEncoded(set);
        }
        if (this.#resync)
            hub.refresh(agent.service);
        return 'sent';
    }
    /** Sends what differs between the last set sent and `set`; throws what the channel throws. */
    apply(seq, set) {
        if (seq < this.#appliedSeq)
            return;
        if (!this.#synced) {
            this.#resync = true;
            return;
        }
        this.#appliedSeq = seq;
        for (const [pairId, pair] of set) {
            if (this.#digests.get(pairId) === pair.digest)
                continue;
            this.#channel.sendEncoded(pair.bytes);
            this.#digests.set(pairId, pair.digest);
        }
        for (const pairId of [...this.#digests.keys()]) {
            if (set.has(pairId))
                continue;
            this.#channel.send({ type: 'pair.remove', pairId });
            this.#digests.delete(pairId);
        }
    }
}
//# sourceMappingURL=keyset-stream.js.map