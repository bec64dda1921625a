// Many KMS requests over one control session: ids, the table of requests waiting
// for their answer, a window on what is in flight, and a deadline per request.
// The control client (control/client.ts) owns one and attaches it to each session
// that reaches 'connected'.
//
//   request()/requestBatch() ──▶ queued ──window has room──▶ sent ──answer──▶ resolved / rejected
//                                  └────── deadline, session end, close ─────────────▶ rejected
//
// What goes out: the requests that the window lets go at one moment travel
// together. One alone is a kms.request; several are packed into kms.batch
// messages (planKmsBatches, protocol/src/messages/kms-batch.ts), each item with
// its own id, answered by kms.batch.response parts whose items are matched by id
// like single kms.responses. A batch call of the local API therefore costs one
// record per ~50 items instead of one per item. New requests wait for the end of
// the event-loop turn (`defer`, a setImmediate) before they go: the single calls
// that many API clients make in one turn then share kms.batch messages too, and
// the control plane serves each message with one scope, one policy read and one
// reply record (measured with bench/data.bench.ts: 35-60% less control-plane CPU
// per single call, for one turn of latency).
//
// Contract:
//   - request() rejects at once with AGENT_ERR_CP_UNREACHABLE while no session is
//     attached: nothing waits for a control plane that is not there.
//   - At most maxInFlight items are on the wire (kept below the control plane's own
//     per-agent limit, so it never has to answer CP_ERR_KMS_BUSY); the rest wait in
//     order. More than maxPending unanswered in all is AGENT_ERR_BUSY (503), per item.
//   - Each request settles exactly once: with the result, with a KeymeshError
//     carrying the control plane's own code (remote-error.ts), AGENT_ERR_KMS_TIMEOUT
//     timeoutMs after it was made (injected clock), AGENT_ERR_CANCELLED when its
//     signal is found aborted when its turn to be sent comes (checked then rather
//     than by a listener per request, so a batch of 1000 adds none to one signal),
//     AGENT_ERR_CP_UNREACHABLE when the session ends, AGENT_ERR_CLOSED after close().
//   - A request that timed out after it was sent still holds its window slot until
//     its answer comes (or the session ends): the control plane is still working on it.
//   - Ids grow and are never reused, so a late answer cannot be taken for another.
//   - The multiplexer owns each request's plaintext and wipes it once encoded (or
//     dropped); plaintext in an answer that nobody awaits any more is wiped.
//     Nothing from a request or an answer body is logged.
import type { Logger } from 'pino'

import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import {
  planKmsBatches,
  type KmsBatchItem,
  type KmsBatchMessage,
  type KmsBatchResponseMessage,
  type KmsItemReply,
  type KmsRequestMessage,
  type KmsResponseMessage,
} from '../../../protocol/src/index.js'
import { SECOND, type CancelTimer, type TimerClock } from '../clock.js'
import { agentError } from '../errors.js'
import { remoteError } from './remote-error.js'

export type KmsRequest = Omit<KmsRequestMessage, 'type' | 'id'>
export type KmsResult = NonNullable<KmsResponseMessage['result']>

/** Sends one message on the attached session; throws when the session cannot carry it. */
export type KmsSend = (message: KmsRequestMessage | KmsBatchMessage) => void

export interface KmsMultiplexerOptions {
  readonly clock: TimerClock
  readonly logger: Logger
  /** Per request, from when it is made to its answer (default 10 s). */
  readonly timeoutMs?: number
  /** Items on the wire at once (default 1024; the control plane takes 2048 per agent). */
  readonly maxInFlight?: number
  /** Unanswered items in all, sent or waiting (default 4096); more are AGENT_ERR_BUSY. */
  readonly maxPending?: number
  /**
   * Runs `send` once the requests of this turn are all made (default: setImmediate,
   * after every socket read of the turn). Tests pass `(send) => send()` to send at once.
   */
  readonly defer?: (send: () => void) => void
}

export const DEFAULT_KMS_TIMEOUT_MS = 10 * SECOND
export const DEFAULT_KMS_MAX_IN_FLIGHT = 1024
export const DEFAULT_KMS_MAX_PENDING = 4096

interface Entry {
  readonly id: number
  readonly req: KmsRequest
  readonly deadline: number
  readonly signal: AbortSignal | undefined
  readonly resolve: (r: KmsResult) => void
  readonly reject: (e: KeymeshError) => void
  sent: boolean
  settled: boolean
}

export class KmsMultiplexer {
  readonly #clock: TimerClock
  readonly #log: Logger
  readonly #timeoutMs: number
  readonly #maxInFlight: number
  readonly #maxPending: number
  readonly #defer: (send: () => void) => void
  #deferred = false
  /** Unsettled requests, in the order made; deadlines grow in the same order. */
  readonly #entries = new Map<number, Entry>()
  /** Entries waiting for window room; settled ones are skipped when reached. */
  #queue: Entry[] = []
  #queueHead = 0
  /** Ids sent and not answered whose caller has already been told (timeout): they still hold a slot. */
  readonly #orphans = new Set<number>()
  #inFlight = 0
  #nextId = 1
  #send: KmsSend | undefined
  #timer: CancelTimer | undefined
  #timerAt = Infinity
  #closed = false

  constructor(o: KmsMultiplexerOptions) {
    this.#clock = o.clock
    this.#log = o.logger
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_KMS_TIMEOUT_MS
    this.#maxInFlight = o.maxInFlight ?? DEFAULT_KMS_MAX_IN_FLIGHT
    this.#maxPending = o.maxPending ?? DEFAULT_KMS_MAX_PENDING
    this.#defer = o.defer ?? setImmediate
    if (!(this.#timeoutMs > 0) || !(this.#maxInFlight >= 1) || !(this.#maxPending >= this.#maxInFlight)) {
      throw agentError('AGENT_ERR_CONFIG', 'KMS limits must satisfy timeoutMs > 0 and 1 ≤ maxInFlight ≤ maxPending')
    }
  }

  /** Unanswered requests (sent or waiting), for status and tests. */
  get pending(): number {
    return this.#entries.size
  }

  /** Items on the wire, including timed-out ones whose answer is still due. */
  get inFlight(): number {
    return this.#inFlight
  }

  /** A session is ready to carry requests. */
  attach(send: KmsSend): void {
    if (this.#closed) return
    this.#send = send
    this.#pump()
  }

  /** The session ended: every unanswered request fails with `error`, and new ones fail fast until attach(). */
  detach(error: KeymeshError = agentError('AGENT_ERR_CP_UNREACHABLE', 'the control session ended')): void {
    this.#send = undefined
    this.#failAll(error)
  }

  /** For good: everything unanswered fails with AGENT_ERR_CLOSED, and so does every later request. */
  close(): void {
    this.#closed = true
    this.#send = undefined
    this.#failAll(agentError('AGENT_ERR_CLOSED'))
  }

  request(req: KmsRequest, signal?: AbortSignal): Promise<KmsResult> {
    return this.requestBatch([req], signal)[0] as Promise<KmsResult>
  }

  /**
   * One promise per request, in order; the requests go out together (kms.batch),
   * with any others made in the same turn, as far as the window allows.
   */
  requestBatch(reqs: readonly KmsRequest[], signal?: AbortSignal): Promise<KmsResult>[] {
    const out = reqs.map((req) => new Promise<KmsResult>((resolve, reject) => this.#enqueue(req, signal, resolve, reject)))
    if (!this.#deferred && this.#queueHead < this.#queue.length) {
      this.#deferred = true
      this.#defer(() => {
        this.#deferred = false
        this.#pump()
      })
    }
    return out
  }

  /** A kms.response (or one item of a kms.batch.response). Answers to no request in flight are dropped (logged by id only). */
  onResponse(m: KmsResponseMessage | KmsItemReply): void {
    if (this.#settleSent(m)) this.#pump()
  }

  /** A part of the answer to a kms.batch: each item settles its own request. */
  onBatchResponse(m: KmsBatchResponseMessage): void {
    let freed = false
    for (const item of m.items) freed = this.#settleSent(item) || freed
    if (freed) this.#pump()
  }

  #enqueue(req: KmsRequest, signal: AbortSignal | undefined, resolve: (r: KmsResult) => void, reject: (e: KeymeshError) => void): void {
    let refusal: KeymeshError | undefined
    if (this.#closed) refusal = agentError('AGENT_ERR_CLOSED')
    else if (this.#send === undefined) refusal = agentError('AGENT_ERR_CP_UNREACHABLE', 'the agent is not connected to the control plane')
    else if (this.#entries.size >= this.#maxPending) refusal = agentError('AGENT_ERR_BUSY', `at most ${this.#maxPending} KMS requests may wait at once`)
    else if (signal?.aborted === true) refusal = agentError('AGENT_ERR_CANCELLED')
    if (refusal !== undefined) {
      req.plaintext?.fill(0)
      return reject(refusal)
    }
    const entry: Entry = { id: this.#nextId++, req, deadline: this.#clock.monotonicMs() + this.#timeoutMs, signal, resolve, reject, sent: false, settled: false }
    this.#entries.set(entry.id, entry)
    this.#queue.push(entry)
    this.#arm(entry.deadline)
  }

  /** Settles the request `m` answers; true when that freed a window slot. */
  #settleSent(m: KmsResponseMessage | KmsItemReply): boolean {
    const entry = this.#entries.get(m.id)
    if (entry === undefined || !entry.sent) {
      m.result?.plaintext?.fill(0)
      if (!this.#orphans.delete(m.id)) {
        this.#log.warn({ id: m.id }, 'KMS answer for no request in flight; dropped')
        return false
      }
    } else {
      this.#entries.delete(m.id)
      entry.settled = true
      if (m.ok && m.result !== undefined) entry.resolve(m.result)
      else entry.reject(remoteError(m.error?.code ?? 'CP_ERR_INTERNAL', m.error?.message ?? 'the control plane gave no reason'))
    }
    this.#inFlight--
    return true
  }

  /** Sends what the window has room for: one request alone, several as kms.batch messages. */
  #pump(): void {
    const send = this.#send
    if (send === undefined) return
    const take: Entry[] = []
    while (this.#inFlight + take.length < this.#maxInFlight && this.#queueHead < this.#queue.length) {
      const entry = this.#queue[this.#queueHead] as Entry
      this.#queueHead++
      if (entry.settled) continue
      if (entry.signal?.aborted === true) this.#settleUnsent(entry, agentError('AGENT_ERR_CANCELLED'))
      else take.push(entry)
    }
    // Compact once the consumed head dominates, so the array does not grow without bound.
    if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead)
      this.#queueHead = 0
    }
    if (take.length === 1) return this.#transmit(take, undefined, send)
    if (take.length === 0) return
    // Each item is made once: planned, then sent as it is.
    const items = take.map((e) => ({ ...e.req, id: e.id }))
    let at = 0
    for (const group of planKmsBatches(items)) {
      this.#transmit(take.slice(at, at + group.length), group, send)
      at += group.length
    }
  }

  /** Sends `group` (with its items made, or made here): one kms.request, or a kms.batch. */
  #transmit(group: readonly Entry[], items: KmsBatchItem[] | undefined, send: KmsSend): void {
    try {
      if (group.length === 1) {
        const e = group[0] as Entry
        send({ ...e.req, type: 'kms.request', id: e.id })
      } else {
        send({ type: 'kms.batch', id: this.#nextId++, items: items ?? group.map((e) => ({ ...e.req, id: e.id })) })
      }
    } catch (err) {
      const encoding = isKeymeshError(err) && err.code.startsWith('PROTO_ERR_MESSAGE')
      // A batch the encoder refuses holds a bad item (each was validated, so this
      // is a bug somewhere): each goes alone, so only that one fails.
      if (encoding && group.length > 1) {
        for (const e of group) this.#transmit([e], undefined, send)
        return
      }
      // A request the encoder refuses is the caller's; a session that cannot send is unreachable.
      const error = encoding
        ? agentError('AGENT_ERR_BAD_REQUEST', (err as KeymeshError).detail ?? 'the request does not fit a control message')
        : agentError('AGENT_ERR_CP_UNREACHABLE', 'the control session cannot carry the request')
      for (const e of group) this.#settleUnsent(e, error)
      return
    }
    for (const e of group) {
      e.req.plaintext?.fill(0)
      e.sent = true
    }
    this.#inFlight += group.length
  }

  #settleUnsent(entry: Entry, error: KeymeshError): void {
    entry.settled = true
    entry.req.plaintext?.fill(0)
    this.#entries.delete(entry.id)
    entry.reject(error)
  }

  /** One timer for all deadlines: entries are in deadline order, so it waits for the first. */
  #arm(at: number): void {
    if (this.#timer !== undefined && this.#timerAt <= at) return
    this.#timer?.()
    this.#timerAt = at
    this.#timer = this.#clock.setTimer(at - this.#clock.monotonicMs(), () => this.#expire())
  }

  #expire(): void {
    this.#timer = undefined
    this.#timerAt = Infinity
    const now = this.#clock.monotonicMs()
    for (const entry of this.#entries.values()) {
      if (entry.deadline > now) {
        this.#arm(entry.deadline)
        break
      }
      this.#entries.delete(entry.id)
      entry.settled = true
      entry.req.plaintext?.fill(0)
      if (entry.sent) this.#orphans.add(entry.id)
      entry.reject(agentError('AGENT_ERR_KMS_TIMEOUT', `no answer within ${this.#timeoutMs} ms`))
    }
    if (this.#entries.size === 0) {
      this.#queue = []
      this.#queueHead = 0
    }
  }

  #failAll(error: KeymeshError): void {
    this.#timer?.()
    this.#timer = undefined
    this.#timerAt = Infinity
    const entries = [...this.#entries.values()]
    this.#entries.clear()
    this.#orphans.clear()
    this.#inFlight = 0
    this.#queue = []
    this.#queueHead = 0
    for (const entry of entries) {
      entry.settled = true
      entry.req.plaintext?.fill(0)
      entry.reject(error)
    }
  }
}
