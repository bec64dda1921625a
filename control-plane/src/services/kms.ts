// KMS operations an agent performs for its service over the control session:
// encrypt, decrypt, rewrap, datakey and agree (protocol/src/messages/kms.ts), one
// per kms.request or many per kms.batch. The caller is the agent's service; the
// grants of that service on the key decide.
//
// Per message: one scope (kms-scope.ts) for its calls — their policy inputs in
// one read (kms-policy.ts), each key version unsealed once and wiped when the
// calls are done; each call through the same checks (kms-ops.ts: policy.ts
// authorizeService, key-lifecycle.ts assertUsable); then every call's own audit
// line, committed by the group commit of kms-audit.ts. Fail closed: replies
// leave this module only after their audit lines are committed; a call whose
// commit fails gets CP_ERR_AUDIT and no result, whatever it computed.
//
// Contract:
//   - handle() and handleBatch() never reject: every outcome — refusal, bad
//     input, store or audit failure — is a reply with a typed code, and no call
//     changes the store except by its audit entry. A bad batch item fails alone.
//   - Every performed call is audited, allow or deny, as its own line: key,
//     version, op, the caller's service, the context's hash (ciphertext.ts
//     contextHash), the outcome and its reason, and for a batch item the batch id.
//     Never the data, the plaintext, the ciphertext, a public key or the context.
//   - A batch answers once, with one reply per item in the items' order, after
//     all of its lines are committed.
import { contextHash, type Km1Context } from '../../../protocol/src/index.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import type { KmsBatchMessage } from '../../../protocol/src/index.js'
import { actorName, type CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { KmsAuditLog, type KmsAuditOptions, type KmsCallRecord } from './kms-audit.js'
import { performKms, type CallFacts, type KmsCaller, type KmsReply, type KmsRequest } from './kms-ops.js'
import { PolicyReader } from './kms-policy.js'
import { KmsScope } from './kms-scope.js'

export type { KmsCaller, KmsReply, KmsRequest, KmsResult } from './kms-ops.js'
export type KmsBatch = Omit<KmsBatchMessage, 'type'>

export interface KmsOptions {
  /** Calls (single requests and batch items alike) one agent session may have unanswered; more are refused with CP_ERR_KMS_BUSY. */
  readonly maxInFlightPerAgent?: number
  readonly audit?: KmsAuditOptions
}

/** Enough for 50,000 items/s with a 25 ms commit, and bounds a session's memory (each holds ≤ 32 KiB). */
export const DEFAULT_MAX_KMS_IN_FLIGHT = 2048

const MAX_ERROR_TEXT = 512

export class KmsService {
  readonly #ctx: CpContext
  readonly audit: KmsAuditLog
  readonly policy: PolicyReader
  readonly maxInFlightPerAgent: number

  constructor(ctx: CpContext, options: KmsOptions = {}) {
    this.#ctx = ctx
    this.audit = new KmsAuditLog(ctx, options.audit)
    this.policy = new PolicyReader(ctx.store)
    this.maxInFlightPerAgent = options.maxInFlightPerAgent ?? DEFAULT_MAX_KMS_IN_FLIGHT
  }

  /** Performs, audits and answers one request; resolves after its audit line is committed. */
  async handle(caller: KmsCaller, req: KmsRequest): Promise<KmsReply> {
    return (await this.#run(caller, [req], undefined))[0] as KmsReply
  }

  /**
   * Performs, audits and answers the items of one batch in one scope. Resolves
   * with one reply per item, in order, once every performed item's line is
   * committed. Only the first `accepted` items are performed (the caller's
   * in-flight room); the others are answered CP_ERR_KMS_BUSY, as busy() says.
   */
  async handleBatch(caller: KmsCaller, batch: KmsBatch, accepted = batch.items.length): Promise<KmsReply[]> {
    const n = Math.max(0, Math.min(accepted, batch.items.length))
    const replies = n > 0 ? await this.#run(caller, batch.items.slice(0, n), batch.id) : []
    for (const item of batch.items.slice(n)) replies.push(this.busy(item))
    return replies
  }

  /**
   * The reply for a request refused because its session has too many in flight.
   * Load shedding, not a decision about a key: it is logged, not audited, so a
   * flood cannot grow the audit log faster than the calls it serves.
   */
  busy(req: Pick<KmsRequest, 'id'>): KmsReply {
    return errorReply(req.id, cpError('CP_ERR_KMS_BUSY', `at most ${this.maxInFlightPerAgent} per agent`))
  }

  async #run(caller: KmsCaller, reqs: readonly KmsRequest[], batchId: number | undefined): Promise<KmsReply[]> {
    const scope = new KmsScope(this.#ctx, this.policy, reqs.length)
    const facts: CallFacts[] = reqs.map(() => ({}))
    // Every call asks its look-up synchronously here, so flush() sends them as one read.
    const started = reqs.map((req, i) => performKms({ ctx: this.#ctx, scope, caller, facts: facts[i] as CallFacts }, req))
    scope.flush()
    const settled = await Promise.allSettled(started)
    scope.wipe()

    const replies: KmsReply[] = []
    const records: KmsCallRecord[] = []
    const hashes = new Map<string, string>() // a batch's items often share a context
    settled.forEach((s, i) => {
      const req = reqs[i] as KmsRequest
      const error = s.status === 'rejected' ? this.#typed(s.reason) : undefined
      replies.push(s.status === 'fulfilled' ? { id: req.id, ok: true, result: s.value } : errorReply(req.id, error as KeymeshError))
      records.push(this.#record(caller, req, facts[i] as CallFacts, error, batchId, req.header !== undefined ? this.#headerHash(req.header) : this.#contextHash(req.context, hashes)))
    })

    const committed = await Promise.allSettled(this.audit.recordAll(records))
    let unaudited: KeymeshError | undefined
    committed.forEach((c, i) => {
      if (c.status === 'fulfilled') return
      const reply = replies[i] as KmsReply
      reply.result?.plaintext?.fill(0)
      unaudited = isKeymeshError(c.reason, 'CP_ERR_AUDIT') ? c.reason : cpError('CP_ERR_AUDIT')
      replies[i] = errorReply(reply.id, unaudited)
    })
    if (unaudited !== undefined) {
      const count = committed.filter((c) => c.status === 'rejected').length
      const ops = [...new Set(reqs.map((r) => r.op))]
      this.#ctx.logger.error({ err: { code: unaudited.code }, agentId: caller.agentId, ops, count, ...(batchId !== undefined ? { batchId } : {}) }, 'KMS calls not audited; answered CP_ERR_AUDIT')
    }
    return replies
  }

  #record(caller: KmsCaller, req: KmsRequest, facts: CallFacts, error: KeymeshError | undefined, batchId: number | undefined, hash: string): KmsCallRecord {
    return {
      actor: actorName({ kind: 'agent', id: caller.agentId, service: caller.service }),
      service: caller.service,
      op: req.op,
      target: facts.key !== undefined ? `key:${facts.key}` : 'key:(unknown)',
      outcome: error === undefined ? 'ok' : error.status === 401 || error.status === 403 ? 'deny' : 'error',
      reason: error === undefined ? (facts.reason ?? 'ok') : `${error.code}: ${error.message}`,
      requestId: req.id,
      keyVersion: facts.version ?? null,
      ...(facts.toVersion !== undefined ? { toVersion: facts.toVersion } : {}),
      contextHash: hash,
      code: error?.code ?? null,
      ...(batchId !== undefined ? { batchId } : {}),
    }
  }

  /**
   * A drop operation's audit line carries SHA-256 of the drop's header in the context
   * hash's place: the drop has no context, and the same hash on the dropseal and the
   * dropopen lines links the sealing of one drop to its opening.
   */
  #headerHash(header: Uint8Array): string {
    const digest = this.#ctx.suite.sha256(header)
    return Buffer.from(digest.buffer, digest.byteOffset, digest.length).toString('hex')
  }

  /**
   * The context's hash, computed once per distinct context (by its JSON) in
   * `seen`. The schema has checked the context; should hashing fail anyway, the
   * call is still audited.
   */
  #contextHash(context: Km1Context | undefined, seen: Map<string, string>): string {
    const id = context === undefined ? '' : JSON.stringify(context)
    let hash = seen.get(id)
    if (hash === undefined) {
      try {
        hash = contextHash(this.#ctx.suite, context)
      } catch {
        hash = '(unhashable)'
      }
      seen.set(id, hash)
    }
    return hash
  }

  /** Suite errors become the KMS's own codes; anything untyped is logged and answered as internal. */
  #typed(err: unknown): KeymeshError {
    if (!isKeymeshError(err)) {
      this.#ctx.logger.error({ err: { message: err instanceof Error ? err.message : 'unknown' } }, 'KMS call failed unexpectedly')
      return cpError('CP_ERR_INTERNAL')
    }
    if (err.code === 'PROTO_ERR_DECRYPT') return cpError('CP_ERR_DECRYPT')
    if (err.code === 'PROTO_ERR_LOW_ORDER_POINT') return cpError('CP_ERR_PUBLIC_KEY')
    return err
  }
}

function errorReply(id: number, e: KeymeshError): KmsReply {
  return { id, ok: false, error: { code: e.code, message: e.message.slice(0, MAX_ERROR_TEXT) } }
}
