// The KMS calls of one agent session: kms.request and kms.batch in, kms.response
// and kms.batch.response out, through the control plane's KmsService (kms.ts;
// one per control plane, so every agent's calls share one group commit),
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
import { isKeymeshError } from '../../../protocol/src/index.js'
import { encodeKmsBatchResponse, encodeKmsResponseFrames, encodeMessage, type KmsBatchMessage, type KmsRequestMessage } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { KmsCaller, KmsReply, KmsService } from './kms.js'

export interface KmsSessionSink {
  /** Sends one encoded message of `type` on the session (and wipes it); throws when the session cannot. */
  send(type: 'kms.response' | 'kms.batch.response', encoded: Uint8Array): void
  /** False once the session has ended. */
  isOpen(): boolean
  /** A send failed: end the session. */
  fail(err: unknown): void
  /** Batch replies go as binary KMS frames (the 'kms.frame' feature was agreed); default JSON. */
  readonly frames?: boolean
}

const MAX_ERROR_TEXT = 512

export class KmsSessionCalls {
  readonly #ctx: CpContext
  readonly #kms: KmsService
  readonly #caller: KmsCaller
  readonly #sink: KmsSessionSink
  #inFlight = 0

  constructor(ctx: CpContext, kms: KmsService, caller: KmsCaller, sink: KmsSessionSink) {
    this.#ctx = ctx
    this.#kms = kms
    this.#caller = caller
    this.#sink = sink
  }

  /** Calls performed and not yet answered. */
  get inFlight(): number {
    return this.#inFlight
  }

  request(req: KmsRequestMessage): void {
    if (this.#inFlight >= this.#kms.maxInFlightPerAgent) {
      this.#ctx.logger.warn({ agentId: this.#caller.agentId, inFlight: this.#inFlight }, 'KMS request refused: too many in flight')
      req.plaintext?.fill(0)
      return this.#reply(this.#kms.busy(req))
    }
    this.#inFlight++
    const { type: _type, ...request } = req
    const done = (reply: KmsReply): void => {
      this.#inFlight--
      req.plaintext?.fill(0)
      this.#reply(reply)
    }
    this.#kms.handle(this.#caller, request).then(done, (err: unknown) => {
      // handle() answers every failure itself; this is a bug, not bad input.
      this.#ctx.logger.error({ err, agentId: this.#caller.agentId }, 'KMS handler failed')
      done(internal(req.id))
    })
  }

  batch(batch: KmsBatchMessage): void {
    const accepted = Math.min(batch.items.length, Math.max(0, this.#kms.maxInFlightPerAgent - this.#inFlight))
    if (accepted < batch.items.length) {
      this.#ctx.logger.warn({ agentId: this.#caller.agentId, inFlight: this.#inFlight, items: batch.items.length, accepted }, 'KMS batch items refused: too many in flight')
    }
    this.#inFlight += accepted
    const { type: _type, ...request } = batch
    const done = (replies: KmsReply[]): void => {
      this.#inFlight -= accepted
      for (const item of batch.items) item.plaintext?.fill(0)
      this.#replyBatch(batch.id, replies)
    }
    this.#kms.handleBatch(this.#caller, request, accepted).then(done, (err: unknown) => {
      this.#ctx.logger.error({ err, agentId: this.#caller.agentId }, 'KMS batch handler failed')
      done(batch.items.map((item) => internal(item.id)))
    })
  }

  /** Sends a KMS reply, then wipes any plaintext it carried. */
  #reply(reply: KmsReply): void {
    try {
      if (!this.#sink.isOpen()) return
      let encoded: Uint8Array
      try {
        encoded = encodeMessage({ type: 'kms.response', ...reply })
      } catch (err) {
        // A reply that does not fit a message is this request's failure, not the session's.
        const e = isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL')
        encoded = encodeMessage({ type: 'kms.response', id: reply.id, ok: false, error: { code: e.code, message: e.message.slice(0, MAX_ERROR_TEXT) } })
      }
      this.#sink.send('kms.response', encoded)
    } catch (err) {
      this.#sink.fail(err)
    } finally {
      reply.result?.plaintext?.fill(0)
    }
  }

  /** Sends a batch's replies in as many kms.batch.response parts as they need, then wipes their plaintext. */
  #replyBatch(id: number, replies: readonly KmsReply[]): void {
    try {
      if (!this.#sink.isOpen()) return
      const parts = this.#sink.frames === true ? encodeKmsResponseFrames(id, replies) : encodeKmsBatchResponse(id, replies)
      for (const part of parts) this.#sink.send('kms.batch.response', part)
    } catch (err) {
      this.#sink.fail(err)
    } finally {
      for (const r of replies) r.result?.plaintext?.fill(0)
    }
  }
}

function internal(id: number): KmsReply {
  const e = cpError('CP_ERR_INTERNAL')
  return { id, ok: false, error: { code: e.code, message: e.message } }
}
