export class PolicyReader {
    #store;
    #queue = [];
    #reading = false;
    constructor(store) {
        this.#store = store;
    }
    /** The key `name` with `service`'s grant and the versions `pick` names; null when no such key. */
    load(name, service, pick) {
        return this.loadMany([{ name, service, pick }])[0];
    }
    /**
     * Several look-ups queued at once, so that one read answers all of them (a
     * batch's items see one snapshot, and each distinct row is read once).
     */
    loadMany(lookups) {
        const answers = lookups.map((l) => new Promise((resolve, reject) => this.#queue.push({ ...l, resolve, reject })));
        if (!this.#reading && lookups.length > 0)
            void this.#drain();
        return answers;
    }
    /** loadMany() for look-ups that settle themselves: no promise of its own per look-up (a batch's items). */
    enqueue(requests) {
        for (const r of requests)
            this.#queue.push(r);
        if (!this.#reading && requests.length > 0)
            void this.#drain();
    }
    async #drain() {
        this.#reading = true;
        try {
            while (this.#queue.length > 0) {
                let batch = [];
                let answers = [];
                try {
                    answers = await this.#store.read(async (r) => {
                        batch = this.#queue.splice(0);
                        return answerAll(r, batch);
                    });
                }
                catch (err) {
                    if (batch.length === 0)
                        batch = this.#queue.splice(0);
                    for (const l of batch)
                        l.reject(err);
                    continue;
                }
                // Released after the read has ended, so no caller runs inside its snapshot.
                batch.forEach((l, i) => l.resolve(answers[i] ?? null));
            }
        }
        finally {
            this.#reading = false;
        }
    }
}
async function answerAll(r, batch) {
    const keys = new Map();
    const grants = new Map();
    const versions = new Map();
    const out = [];
    for (const l of batch) {
        let key = keys.get(l.name);
        if (key === undefined) {
            key = await r.getKey(l.name);
            keys.set(l.name, key);
        }
        if (key === null) {
            out.push(null);
            continue;
        }
        const g = `${l.name}\0${l.service}`;
        let grant = grants.get(g);
        if (grant === undefined) {
            grant = await r.getGrant(l.name, l.service);
            grants.set(g, grant);
        }
        const wanted = l.pick(key);
        const rows = [];
        for (const n of wanted) {
            const v = `${l.name}\0${n}`;
            let row = versions.get(v);
            if (row === undefined) {
                row = await r.getKeyVersion(l.name, n);
                versions.set(v, row);
            }
            rows.push(row);
        }
        out.push({ key, grant, versions: rows, wanted });
    }
    return out;
}
//# sourceMappingURL=kms-policy.js.map