// Group commit for the audit of KMS calls. A KMS call costs a few microseconds of
// AEAD; a durable commit far more (SQLite with synchronous=FULL: one fsync, 85 to
// 1,000 commits/s on the reference machine, and its COMMIT blocks the event loop),
// and a chained audit row per call about 50 µs of CPU (indexed insert, hash,
// read-back): 10,000-16,000 rows/s at best, measured, for a whole core. So:
//
//   - calls queue their record here; one flusher writes everything queued in ONE
//     store transaction, then releases those calls' replies together;
//   - within a transaction, calls that share actor, op, key and outcome become one
//     audit entry that lists every call individually — request id, key version,
//     context hash, error code, and the batch id for the items of a kms.batch — so
//     each entry is homogeneous in the columns the audit query filters on (actor,
//     action, target, outcome): a query for a key's denials, say, finds every
//     entry holding one.
//
// Batching is natural, with no timer: while one commit runs, the next group
// accumulates. The group is taken once the transaction holds the store (inside
// `fn`), so calls whose reads were queued on the store ahead of it join it.
// SQLite's COMMIT is synchronous (better-sqlite3), so "while one commit runs"
// nothing else does: the flusher first yields to the event loop once
// (setImmediate), so that every message already received — each kms.batch of
// ~60 KB comes in its own socket reads — is handled and queued before the group
// is taken. Without it each message had a commit of its own (measured: one
// commit per ~43 items, ~5,000 items/s; see bench/kms-batch.ts).
//
// Contract:
//   - recordAll(calls) resolves each call only after a transaction holding the call's line has
//     committed; when that transaction fails, every call of the group rejects with
//     CP_ERR_AUDIT (cause attached) and none of its lines is in the log.
//   - An entry never holds data, plaintext, ciphertext or context: only the
//     fields of KmsCallRecord, which are metadata and a context hash.
import { isKeymeshError } from '../../../protocol/src/index.js';
import { cpError } from '../errors.js';
export const DEFAULT_MAX_AUDIT_GROUP = 4096;
/** Calls listed in one audit entry, so an entry stays near 100 KB. */
export const DEFAULT_MAX_CALLS_PER_ENTRY = 1000;
/** Distinct reasons quoted in one entry's reason text; the codes of all are in the lines. */
const MAX_REASONS = 8;
/** Columns of each line in an entry's `calls`, in order. */
export const KMS_CALL_COLUMNS = ['requestId', 'keyVersion', 'contextHash', 'code'];
/** rewrap adds `toVersion`, then batch items `batchId` (an entry never mixes single calls and batch items). */
const REWRAP_COLUMN = 'toVersion';
const BATCH_COLUMN = 'batchId';
const setImmediateTurn = () => new Promise((resolve) => setImmediate(resolve));
export class KmsAuditLog {
    #store;
    #audit;
    #maxGroup;
    #maxCalls;
    #yield;
    #queue = [];
    #flushing = false;
    #stats = { groups: 0, calls: 0, entries: 0, failedGroups: 0, largestGroup: 0 };
    constructor(deps, options = {}) {
        this.#maxGroup = positive(options.maxGroup ?? DEFAULT_MAX_AUDIT_GROUP, 'maxGroup');
        this.#maxCalls = positive(options.maxCallsPerEntry ?? DEFAULT_MAX_CALLS_PER_ENTRY, 'maxCallsPerEntry');
        this.#store = deps.store;
        this.#audit = deps.audit;
        this.#yield = options.yieldToIo ?? setImmediateTurn;
    }
    /** Counters for tests and metrics; timing-free. */
    get stats() {
        return { ...this.#stats };
    }
    /**
     * Queues calls (a batch's items, or one call) so that they share a transaction
     * (up to maxGroup). Each promise resolves once its call's line is committed and
     * rejects with CP_ERR_AUDIT when its group's transaction fails.
     */
    recordAll(calls) {
        const done = calls.map((call) => new Promise((resolve, reject) => this.#queue.push({ call, resolve, reject })));
        if (!this.#flushing && calls.length > 0)
            void this.#flush();
        return done;
    }
    async #flush() {
        this.#flushing = true;
        try {
            while (this.#queue.length > 0) {
                await this.#yield();
                let group = [];
                let entries = 0;
                try {
                    await this.#store.transaction(async (tx) => {
                        group = this.#queue.splice(0, this.#maxGroup);
                        const inputs = entriesOf(group.map((p) => p.call), this.#maxCalls);
                        for (const input of inputs)
                            await this.#audit.append(tx, input);
                        entries = inputs.length;
                    });
                }
                catch (err) {
                    this.#stats.failedGroups++;
                    const error = isKeymeshError(err, 'CP_ERR_AUDIT') ? err : cpError('CP_ERR_AUDIT', undefined, { cause: err });
                    // A transaction that failed before taking its group leaves the queue as it
                    // was; fail that group too, or a store that refuses every transaction
                    // would keep this loop spinning.
                    if (group.length === 0)
                        group = this.#queue.splice(0, this.#maxGroup);
                    for (const p of group)
                        p.reject(error);
                    continue;
                }
                this.#stats.groups++;
                this.#stats.calls += group.length;
                this.#stats.entries += entries;
                this.#stats.largestGroup = Math.max(this.#stats.largestGroup, group.length);
                for (const p of group)
                    p.resolve();
            }
        }
        finally {
            this.#flushing = false;
        }
    }
}
function positive(n, name) {
    if (!Number.isSafeInteger(n) || n < 1)
        throw cpError('CP_ERR_INTERNAL', `${name} must be a whole number from 1`);
    return n;
}
/**
 * The audit entries of one group: calls sharing actor, op, target and outcome go
 * into one entry (at most `maxCalls` each), in order of their first call.
 */
export function entriesOf(calls, maxCalls = DEFAULT_MAX_CALLS_PER_ENTRY) {
    const buckets = [];
    const open = new Map();
    for (const c of calls) {
        const id = `${c.actor}\0${c.op}\0${c.target}\0${c.outcome}\0${c.batchId === undefined ? '' : 'batch'}`;
        let bucket = open.get(id);
        if (bucket === undefined || bucket.length >= maxCalls) {
            bucket = [];
            buckets.push(bucket);
            open.set(id, bucket);
        }
        bucket.push(c);
    }
    return buckets.map(entryOf);
}
function entryOf(calls) {
    const first = calls[0];
    const rewrap = first.op === 'rewrap';
    const batched = first.batchId !== undefined;
    const reasons = [...new Set(calls.map((c) => c.reason))];
    const quoted = reasons.slice(0, MAX_REASONS).join('; ') + (reasons.length > MAX_REASONS ? `; and ${reasons.length - MAX_REASONS} more` : '');
    const lines = calls.map((c) => {
        const line = [c.requestId, c.keyVersion, c.contextHash, c.code];
        if (rewrap)
            line.push(c.toVersion ?? null);
        if (batched)
            line.push(c.batchId ?? null);
        return line;
    });
    return {
        actor: first.actor,
        action: `kms.${first.op}`,
        target: first.target,
        outcome: first.outcome,
        reason: `${calls.length} call${calls.length === 1 ? '' : 's'}: ${quoted}`,
        details: {
            service: first.service,
            op: first.op,
            count: calls.length,
            columns: [...KMS_CALL_COLUMNS, ...(rewrap ? [REWRAP_COLUMN] : []), ...(batched ? [BATCH_COLUMN] : [])],
            calls: lines,
        },
    };
}
//# sourceMappingURL=kms-audit.js.map