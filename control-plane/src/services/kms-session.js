// The KMS calls of one agent session: kms.request and kms.batch in, kms.response
// and kms.batch.response out, through the control plane's KmsService (kms.ts),
// under the session's in-flight limit. The session (agent-endpoint/session.ts)
// hands messages here and gives a sink to send on.
//
// Contract:
//   - Calls run concurrently and are answered in any order, each after its
//     audit line is committed; nothing here fails the session except a send
//     that fails (handed to sink.fail).
//   - The in-flight limit counts calls: a kms.request beyond it is answered
//     CP_ERR_KMS_BUSY at once; a batch takes as many items as there is room for
//     and answers the others CP_ERR_KMS_BUSY in its reply (at once when none fits).
//   - Replies are dropped once the session has ended; request plaintext and reply
//     plaintext are wiped once answered.
import { isKeymeshError } from '../../../protocol/src/index.js';
import { encodeKmsBatchResponse, encodeMessage } from '../../../protocol/src/index.js';
import { cpError } from '../errors.js';
import { kmsService } from './kms.js';
const MAX_ERROR_TEXT = 512;
export class KmsSessionCalls {
    #ctx;
    #caller;
    #sink;
    #inFlight = 0;
    constructor(ctx, caller, sink) {
        this.#ctx = ctx;
        this.#caller = caller;
        this.#sink = sink;
    }
    /** Calls performed and not yet answered. */
    get inFlight() {
        return this.#inFlight;
    }
    request(req) {
        const kms = kmsService(this.#ctx);
        if (this.#inFlight >= kms.maxInFlightPerAgent) {
            this.#ctx.logger.warn({ agentId: this.#caller.agentId, inFlight: this.#inFlight }, 'KMS request refused: too many in flight');
            req.plaintext?.fill(0);
            return this.#reply(kms.busy(req));
        }
        this.#inFlight++;
        const { type: _type, ...request } = req;
        const done = (reply) => {
            this.#inFlight--;
            req.plaintext?.fill(0);
            this.#reply(reply);
        };
        kms.handle(this.#caller, request).then(done, (err) => {
            // handle() answers every failure itself; this is a bug, not bad input.
            this.#ctx.logger.error({ err, agentId: this.#caller.agentId }, 'KMS handler failed');
            done(internal(req.id));
        });
    }
    batch(batch) {
        const kms = kmsService(this.#ctx);
        const accepted = Math.min(batch.items.length, Math.max(0, kms.maxInFlightPerAgent - this.#inFlight));
        if (accepted < batch.items.length) {
            this.#ctx.logger.warn({ agentId: this.#caller.agentId, inFlight: this.#inFlight, items: batch.items.length, accepted }, 'KMS batch items refused: too many in flight');
        }
        this.#inFlight += accepted;
        const { type: _type, ...request } = batch;
        const done = (replies) => {
            this.#inFlight -= accepted;
            for (const item of batch.items)
                item.plaintext?.fill(0);
            this.#replyBatch(batch.id, replies);
        };
        kms.handleBatch(this.#caller, request, accepted).then(done, (err) => {
            this.#ctx.logger.error({ err, agentId: this.#caller.agentId }, 'KMS batch handler failed');
            done(batch.items.map((item) => internal(item.id)));
        });
    }
    /** Sends a KMS reply, then wipes any plaintext it carried. */
    #reply(reply) {
        try {
            if (!this.#sink.isOpen())
                return;
            let encoded;
            try {
                encoded = encodeMessage({ type: 'kms.response', ...reply });
            }
            catch (err) {
                // A reply that does not fit a message is this request's failure, not the session's.
                const e = isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL');
                encoded = encodeMessage({ type: 'kms.response', id: reply.id, ok: false, error: { code: e.code, message: e.message.slice(0, MAX_ERROR_TEXT) } });
            }
            this.#sink.send(encoded);
        }
        catch (err) {
            this.#sink.fail(err);
        }
        finally {
            reply.result?.plaintext?.fill(0);
        }
    }
    /** Sends a batch's replies in as many kms.batch.response parts as they need, then wipes their plaintext. */
    #replyBatch(id, replies) {
        try {
            if (!this.#sink.isOpen())
                return;
            for (const part of encodeKmsBatchResponse(id, replies))
                this.#sink.send(part);
        }
        catch (err) {
            this.#sink.fail(err);
        }
        finally {
            for (const r of replies)
                r.result?.plaintext?.fill(0);
        }
    }
}
function internal(id) {
    const e = cpError('CP_ERR_INTERNAL');
    return { id, ok: false, error: { code: e.code, message: e.message } };
}
//# sourceMappingURL=kms-session.js.map