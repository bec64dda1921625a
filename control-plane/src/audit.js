// The audit log over the Store: append inside the caller's transaction, so an
// operation and its audit record commit together or not at all (fail closed),
// and read it back — tail, query, export, verify — in bounded pages.
// The chain itself (hash, guard, verifier) lives in audit-chain.ts.
import { nodeSuite } from '../../protocol/src/index.js';
import { AuditChainVerifier, auditEntryHash, canonicalDetails } from './audit-chain.js';
import { cpError } from './errors.js';
export const DEFAULT_AUDIT_PAGE = 500;
const hex = (b) => Buffer.from(b).toString('hex');
export function toAuditEntry(row) {
    const { detailsJson, prevHash, hash, ...fields } = row;
    let details;
    try {
        details = JSON.parse(detailsJson);
    }
    catch {
        // Only a tampered row gets here; show it rather than hide the rest of the log.
        details = { unparseable: detailsJson };
    }
    // detailsJson is left out: the parsed details say the same, once.
    return { ...fields, details, prevHash: hex(prevHash), hash: hex(hash) };
}
export function createAuditLog(options = {}) {
    const suite = options.suite ?? nodeSuite;
    const now = options.now ?? Date.now;
    const pageSize = options.pageSize ?? DEFAULT_AUDIT_PAGE;
    return {
        async append(tx, input) {
            const detailsJson = canonicalDetails(input.details ?? {});
            try {
                const head = await tx.lockAuditHead();
                const unhashed = {
                    seq: head.seq + 1,
                    at: now(),
                    actor: input.actor,
                    action: input.action,
                    target: input.target,
                    outcome: input.outcome,
                    reason: input.reason,
                    detailsJson,
                    prevHash: head.hash,
                };
                const row = { ...unhashed, hash: auditEntryHash(unhashed, suite) };
                await tx.appendAuditRow(row);
                return toAuditEntry(row);
            }
            catch (e) {
                throw cpError('CP_ERR_AUDIT', undefined, { cause: e });
            }
        },
        async tail(store, n) {
            const rows = await store.read((tx) => tx.listAuditEntries({ order: 'desc', limit: n }));
            return rows.reverse().map(toAuditEntry);
        },
        async query(store, q = {}) {
            const rows = await store.read((tx) => tx.listAuditEntries({ ...q, limit: q.limit ?? pageSize }));
            return rows.map(toAuditEntry);
        },
        async *export(store, q = {}) {
            let afterSeq = 0;
            for (;;) {
                const rows = await store.read((tx) => tx.listAuditEntries({ ...q, afterSeq, limit: pageSize }));
                for (const row of rows)
                    yield toAuditEntry(row);
                const last = rows[rows.length - 1];
                if (!last || rows.length < pageSize)
                    return;
                afterSeq = last.seq;
            }
        },
        async verify(store) {
            const v = new AuditChainVerifier(suite);
            for (;;) {
                // The last (short) page and the head are read in one snapshot, so an
                // append racing with the verification cannot look like a mismatch.
                const page = await store.read(async (tx) => {
                    const rows = await tx.listAuditEntries({ afterSeq: v.lastSeq, limit: pageSize });
                    const head = rows.length < pageSize ? await tx.getAuditHead() : null;
                    return { rows, head };
                });
                for (const row of page.rows)
                    if (!v.push(row))
                        return v.finish();
                if (page.head)
                    return v.finish(page.head);
            }
        },
    };
}
//# sourceMappingURL=audit.js.map