import { encodeMessage } from '../../../protocol/src/index.js';
import { cpError } from '../errors.js';
import { buildKeySet, wipeKeySet } from '../services/keyset.js';
const hubs = new WeakMap();
/** The hub serving `ctx`, for the admin API's `connected` column. */
export function hubOf(ctx) {
    return hubs.get(ctx);
}
export class Hub {
    #ctx;
    #byAgent = new Map();
    #byService = new Map();
    #refresh = new Map();
    #idle = new Set();
    #unsubscribe;
    #seq = 0;
    constructor(ctx) {
        this.#ctx = ctx;
        this.#unsubscribe = ctx.bus.subscribe((e) => this.#onChange(e));
        hubs.set(ctx, this);
    }
    get size() {
        return this.#byAgent.size;
    }
    isConnected(agentId) {
        return this.#byAgent.has(agentId);
    }
    /** The next key-set sequence number; take it before reading the store. */
    nextSeq() {
        return ++this.#seq;
    }
    /** Adds a session; an older session of the same agent is closed (the agent reconnected). */
    register(session) {
        const old = this.#byAgent.get(session.agentId);
        if (old && old !== session) {
            this.unregister(old);
            old.terminate(cpError('CP_ERR_AGENT_REPLACED'));
        }
        this.#byAgent.set(session.agentId, session);
        let set = this.#byService.get(session.service);
        if (!set)
            this.#byService.set(session.service, (set = new Set()));
        set.add(session);
    }
    unregister(session) {
        if (this.#byAgent.get(session.agentId) === session)
            this.#byAgent.delete(session.agentId);
        const set = this.#byService.get(session.service);
        set?.delete(session);
        if (set?.size === 0)
            this.#byService.delete(session.service);
    }
    sessions() {
        return [...this.#byAgent.values()];
    }
    /** Recomputes and pushes the key set of `service` to its sessions (coalesced). */
    refresh(service) {
        let st = this.#refresh.get(service);
        if (!st)
            this.#refresh.set(service, (st = { running: false, dirty: false }));
        if (st.running) {
            st.dirty = true;
            return;
        }
        st.running = true;
        const state = st;
        void (async () => {
            try {
                do {
                    state.dirty = false;
                    await this.#refreshOnce(service);
                } while (state.dirty);
            }
            finally {
                state.running = false;
                this.#refresh.delete(service);
                if (this.#refresh.size === 0)
                    for (const fn of this.#idle)
                        fn();
            }
        })();
    }
    /** Resolves when no push is being computed (tests, shutdown). */
    idle() {
        if (this.#refresh.size === 0)
            return Promise.resolve();
        return new Promise((resolve) => {
            const fn = () => {
                this.#idle.delete(fn);
                resolve();
            };
            this.#idle.add(fn);
        });
    }
    close() {
        this.#unsubscribe();
        hubs.delete(this.#ctx);
    }
    #onChange(e) {
        if (e.kind === 'agent-revoked') {
            this.#closeAgent(e.agentId);
            return;
        }
        if (e.kind === 'resync') {
            // Changes made on other replicas may have been missed: recompute every key
            // set, and close the sessions of agents revoked meanwhile.
            for (const service of [...this.#byService.keys()])
                this.refresh(service);
            void this.#closeRevoked();
            return;
        }
        for (const service of new Set(e.services))
            if (this.#byService.has(service))
                this.refresh(service);
    }
    async #closeRevoked() {
        const ids = [...this.#byAgent.keys()];
        if (ids.length === 0)
            return;
        let rows;
        try {
            rows = await this.#ctx.store.read((r) => Promise.all(ids.map((id) => r.getAgent(id))));
        }
        catch (err) {
            this.#ctx.logger.error({ err }, 'could not check connected agents for revocation');
            return;
        }
        for (const row of rows)
            if (row && row.revokedAt !== null)
                this.#closeAgent(row.id);
    }
    #closeAgent(agentId) {
        const session = this.#byAgent.get(agentId);
        if (!session)
            return;
        this.unregister(session);
        session.terminate(cpError('CP_ERR_AGENT_REVOKED', `agent ${agentId}`));
    }
    async #refreshOnce(service) {
        if (!this.#byService.has(service))
            return;
        const seq = this.nextSeq();
        let set;
        try {
            set = await this.#ctx.store.read(async (r) => encodeKeySet(this.#ctx, await buildKeySet(this.#ctx, r, service)));
        }
        catch (err) {
            this.#ctx.logger.error({ err, service }, 'could not compute a key set push');
            return;
        }
        try {
            for (const session of [...(this.#byService.get(service) ?? [])])
                session.applyUpdate(seq, set);
        }
        finally {
            wipeEncoded(set);
        }
    }
}
export function wipeEncoded(set) {
    for (const p of set.values()) {
        p.bytes.fill(0);
        p.initial?.fill(0);
    }
}
/** Encodes each pair as a pair.update message and wipes the clear entries. */
export function encodeKeySet(ctx, entries, initial = false) {
    const out = new Map();
    try {
        for (const pair of entries) {
            const bytes = encodeMessage({ type: 'pair.update', pair });
            const digest = Buffer.from(ctx.suite.sha256(bytes)).toString('base64');
            out.set(pair.pairId, initial ? { bytes, digest, initial: encodeMessage({ type: 'keyset.pair', pair }) } : { bytes, digest });
        }
        return out;
    }
    catch (err) {
        wipeEncoded(out);
        throw err;
    }
    finally {
        wipeKeySet(entries);
    }
}
//# sourceMappingURL=hub.js.map