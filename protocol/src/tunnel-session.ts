// One agent ↔ agent tunnel as a pure state machine: Noise_KKpsk0 (PSK = the pair key
// of one version), then records (record.ts), with in-band re-handshakes so a live
// tunnel moves to a new key version without dropping, losing or repeating a byte.
// Bytes in (`receive`), bytes out (`send`), callbacks to a handler; the agent owns
// the WebSocket, the timers and the policy (when to re-handshake, what to accept).
//
// Four files, one concern each: the exchange on the wire and its Noise work
// (tunnel-handshake.ts); the phases and the event × phase table
// (tunnel-session-state.ts); the receive steps that do handshake work
// (tunnel-session-steps.ts); and here the session object: the calls its owner makes,
// the per-record hot paths, and #enter, the one place the phase changes.
//
// Contract:
//   - receive() never throws for bad bytes: the first error fails the session (all
//     keys wiped, onError once); later input is ignored. Errors that are not
//     KeymeshErrors, thrown by handler callbacks or by `send`, propagate to the
//     caller; the session updates its state before it calls either.
//   - Records of a new key version start at counter 0 (a fresh RecordSession); a
//     retired RecordSession or HandshakeState is destroyed as soon as nothing uses it.
//   - Limits (record.ts) apply per key version. While a re-handshake is in flight the
//     initiator keeps one record of its hard limit back for the marker. A session at
//     its hard limit cannot re-handshake (rehandshake() throws PROTO_ERR_RECORD_LIMIT;
//     a responder answering fails with it): the agent re-handshakes far earlier.
//   - The record layer owns the counts (records and bytes per key version, which the
//     limits and recordsSinceHandshake read); the session keeps only the lifetime
//     totals of the key versions it has retired (#enter).
//   - Hot path: write() seals straight from the caller's buffer into one wire buffer
//     per record; receive() hands the decrypted buffer to onData as is. Neither
//     allocates beyond that nor counts anything itself.
//   - Record sizes follow the reads (write's `more`): a read that filled the caller's
//     buffer says more is coming, so its bytes past the last full record are kept
//     (views, not copies) and lead the next record, sealed from both reads' bytes in
//     one AEAD pass; flush() (the caller's end of a read batch), end() and any write
//     without `more` send what is kept. Without `more`, a write of more than one
//     record is cut into records of equal size, never into a full and a tiny one.
import type { CryptoSuite, KeyPair } from './crypto/suite.js'
import { isKeymeshError, protoError, type KeymeshError } from './errors.js'
import { checkTunnelContext, type TunnelContext } from './noise/tunnel-preamble.js'
import { resolveRecordLimits, type OpenedRecord, type RecordLimits, type RecordSession } from './record.js'
import { MIN_TUNNEL_RECORD_BYTES, hello, kk, parseHello, sameTunnel, type TunnelKeys, type TunnelParty } from './tunnel-handshake.js'
import {
  LISTENING,
  afterDestroy,
  afterLocalEnd,
  contextOf,
  failedFrom,
  localEnded,
  publicState,
  remoteEnded,
  writableTx,
  type Live,
  type TunnelPhase,
  type TunnelState,
} from './tunnel-session-state.js'
import { confirmation, handshakeRecord, message1, message2, peerClosed, type SessionCore } from './tunnel-session-steps.js'

export { KK_MESSAGE_BYTES, MAX_TUNNEL_HELLO_BYTES, MIN_TUNNEL_RECORD_BYTES, type TunnelKeys } from './tunnel-handshake.js'
export type { TunnelState } from './tunnel-session-state.js'

export interface TunnelHandler {
  /** Handshake complete and confirmed. Initiator: right after reading message 2 (it may write at once).
   *  Responder: only after the initiator's confirmation record verified — so a replayed
   *  message 1 never opens (the agent connects to the local service only here). */
  onOpen(context: TunnelContext): void
  /** Plaintext from the peer, in order. The buffer is the caller's (not reused by the session). */
  onData(data: Uint8Array): void
  /** The peer closed its direction (authenticated CLOSE) — like TCP FIN. */
  onEnd(code: number, reason: string): void
  /** A re-handshake finished: both directions now use context.keyVersion. */
  onRekeyed(context: TunnelContext): void
  /** The session failed on received bytes (or a resolve() refusal); it is dead. The caller closes
   *  the transport with error.closeCode and error.code. Never called twice. */
  onError(error: KeymeshError): void
}

export interface TunnelSessionOptions {
  readonly suite: CryptoSuite
  readonly staticKey: KeyPair
  readonly role: 'initiator' | 'responder'
  /** Initiator: what it opens (validated with checkTunnelContext) and the keys for it. */
  readonly context?: TunnelContext
  readonly keys?: TunnelKeys
  /** Responder: keys for a context the initiator proposed (first handshake and every re-handshake).
   *  Throws a KeymeshError to refuse (e.g. AGENT_ERR_NO_INTENTION); the session then fails with it. */
  readonly resolve?: (context: TunnelContext) => TunnelKeys
  /** maxRecordBytes must be at least MIN_TUNNEL_RECORD_BYTES (a re-handshake fits one record). */
  readonly limits?: RecordLimits
  /** Sends one WebSocket binary message. */
  readonly send: (bytes: Uint8Array) => void
  readonly handler: TunnelHandler
}

const CLOSE_NORMAL = 1000
const EMPTY = new Uint8Array(0)

export class TunnelSession {
  readonly #party: TunnelParty
  readonly #resolve: ((context: TunnelContext) => TunnelKeys) | undefined
  readonly #send: (bytes: Uint8Array) => void
  readonly #handler: TunnelHandler
  /** What the handshake steps (tunnel-session-steps.ts) may do to this session. */
  readonly #core: SessionCore
  /** The one piece of mutable state; it changes only in #enter. */
  #s: TunnelPhase
  // Plaintext bytes of the key versions already retired, less the session's own
  // handshake payloads (which the record layer counts like data): the lifetime
  // totals are these plus the live RecordSessions' counts.
  #bytesInBefore = 0
  #bytesOutBefore = 0
  /** Plaintext kept by write(…, more) for the next record: views into the caller's buffers. */
  #kept: Uint8Array[] = []
  #keptBytes = 0

  constructor(o: TunnelSessionOptions) {
    const limits = resolveRecordLimits(o.limits ?? {})
    if (limits.maxRecordBytes < MIN_TUNNEL_RECORD_BYTES) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', `maxRecordBytes must be at least ${MIN_TUNNEL_RECORD_BYTES} for a tunnel`)
    }
    if (typeof o.send !== 'function' || typeof o.handler !== 'object' || o.handler === null) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'tunnel session needs send and handler')
    }
    if (o.role !== 'initiator' && o.role !== 'responder') throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'role must be initiator or responder')
    this.#party = { suite: o.suite, staticKey: o.staticKey, initiator: o.role === 'initiator', limits }
    this.#send = o.send
    this.#handler = o.handler
    this.#resolve = o.resolve
    this.#core = {
      party: this.#party,
      handler: o.handler,
      phase: () => this.#s,
      resolveKeys: (context) => this.#resolveKeys(context),
      enter: (next) => this.#enter(next),
      emit: (wire) => this.#emit(wire),
      sealHandshake: (tx, payload) => this.#sealHandshake(tx, payload),
      failOn: (e, context) => this.#failOn(e, context),
      fail: (error) => this.#fail(error),
    }
    if (o.role === 'initiator') {
      if (o.context === undefined || o.keys === undefined) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'initiator needs context and keys')
      const context = checkTunnelContext(o.context)
      this.#s = { phase: 'ready', hs: kk(this.#party, context, o.keys), context }
    } else {
      if (typeof o.resolve !== 'function') throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'responder needs resolve')
      this.#s = LISTENING
    }
  }

  get state(): TunnelState {
    return publicState(this.#s)
  }

  /** The context in use (the responder's is known after message 1). */
  get context(): TunnelContext | undefined {
    return contextOf(this.#s)
  }

  /** True while a re-handshake is in flight (initiator: until onRekeyed or abandoned; responder: until the marker). */
  get rehandshaking(): boolean {
    return this.#s.phase === 'requesting' || this.#s.phase === 'switching'
  }

  /** We sent CLOSE. */
  get localEnded(): boolean {
    return localEnded(this.#s)
  }

  /** The peer sent CLOSE. */
  get remoteEnded(): boolean {
    return remoteEnded(this.#s)
  }

  /** Plaintext bytes received over the whole life of the tunnel (all key versions). */
  get bytesIn(): number {
    const s = this.#s
    return this.#bytesInBefore + ('rx' in s ? s.rx.bytesReceived : 0)
  }

  /** Plaintext bytes sent over the whole life of the tunnel (all key versions). */
  get bytesOut(): number {
    const s = this.#s
    return this.#bytesOutBefore + ('tx' in s ? s.tx.bytesSent : 0)
  }

  /** Records under the current keys: the larger of sent and received (0 once closed or failed). */
  get recordsSinceHandshake(): number {
    const s = this.#s
    return 'tx' in s ? Math.max(s.tx.recordsSent, s.rx.recordsReceived) : 0
  }

  /** Initiator: writes message 1 (hello in one transport message). Later calls do nothing. */
  start(): void {
    if (!this.#party.initiator) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'only the initiator starts a tunnel')
    const s = this.#s
    if (s.phase !== 'ready') return
    this.#enter({ phase: 'hello', hs: s.hs, context: s.context })
    this.#send(hello(s.context, s.hs.writeMessage()))
  }

  /** One transport message from the peer. Errors never throw: they fail the session (onError). */
  receive(bytes: Uint8Array): void {
    const s = this.#s
    switch (s.phase) {
      case 'open':
      case 'requesting':
      case 'switching':
        return this.#record(s, bytes)
      case 'closing':
        if (s.ended === 'local') return this.#record(s, bytes)
        return this.#fail(protoError('PROTO_ERR_SESSION_CLOSED', 'record after the peer\'s CLOSE'))
      case 'closed':
        if (!s.destroyed) this.#fail(protoError('PROTO_ERR_SESSION_CLOSED', 'record after the peer\'s CLOSE'))
        return
      case 'ready':
        return this.#fail(protoError('PROTO_ERR_HANDSHAKE_STATE', 'message before start()'))
      case 'hello':
        return message2(this.#core, s, bytes)
      case 'listening':
        return message1(this.#core, bytes)
      case 'confirming':
        return confirmation(this.#core, s, bytes)
      case 'failed':
        return
    }
  }

  /**
   * Seals data (any length; records of at most maxPayload) and sends it. With `more`
   * (the caller's read filled its buffer: more bytes are coming), bytes short of a full
   * record are kept for the next write or flush(); the caller must then leave `data`
   * unchanged until they are sent. Throws PROTO_ERR_HANDSHAKE_STATE before open,
   * PROTO_ERR_SESSION_CLOSED after end(), PROTO_ERR_SESSION_FAILED after failure or
   * destroy(), PROTO_ERR_RECORD_LIMIT at the hard limit (nothing of `data`, and
   * nothing kept, is sent then).
   */
  write(data: Uint8Array, more = false): void {
    const s = this.#s
    const tx = s.phase === 'open' ? s.tx : writableTx(s)
    if (!(data instanceof Uint8Array)) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'data must be bytes')
    const n = data.length
    if (n === 0 && (more || this.#keptBytes === 0)) return
    if (this.#keptBytes === 0 && n <= tx.maxPayload && !more) {
      this.#checkRoom(s, tx, 1, n)
      return this.#send(tx.seal(data))
    }
    this.#sealParts(s, tx, data, more)
  }

  /** Sends the bytes write(…, more) kept, as one record (the caller's read batch is over). */
  flush(): void {
    if (this.#keptBytes === 0) return
    const s = this.#s
    this.#sealParts(s, s.phase === 'open' ? s.tx : writableTx(s), EMPTY, false)
  }

  /** Ends our direction with an authenticated CLOSE (code, reason ≤ 123 UTF-8 bytes), after any kept bytes. Idempotent. */
  end(code: number = CLOSE_NORMAL, reason = ''): void {
    const s = this.#s
    if (s.phase === 'closed' || s.phase === 'failed') return
    if (!('tx' in s) || s.phase === 'confirming') throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'tunnel is not open yet')
    const next = afterLocalEnd(s)
    if (next === undefined) return
    if (this.#keptBytes > 0) {
      if (code === CLOSE_NORMAL) this.flush()
      else this.#dropKept() // an error end resets the peer's side: what it would not see whole is dropped
      return this.end(code, reason)
    }
    const wire = s.tx.sealClose(code, reason) // a bad code or reason throws before anything changes
    this.#enter(next)
    this.#send(wire)
  }

  /**
   * Initiator only, state open, both directions open, none in flight: starts a
   * re-handshake to context.keyVersion (any other field changed: PROTO_ERR_REHANDSHAKE,
   * thrown). Returns false, doing nothing, when it cannot start now. Data keeps flowing.
   */
  rehandshake(context: TunnelContext, keys: TunnelKeys): boolean {
    if (!this.#party.initiator) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the initiator starts a re-handshake')
    const next = checkTunnelContext(context)
    if (!sameTunnel(next, this.context as TunnelContext)) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the key version may change')
    const s = this.#s
    if (s.phase !== 'open') return false
    const hs = kk(this.#party, next, keys)
    let wire: Uint8Array
    try {
      wire = this.#sealHandshake(s.tx, hello(next, hs.writeMessage()))
    } catch (e) {
      hs.destroy()
      throw e
    }
    this.#enter({ phase: 'requesting', tx: s.tx, rx: s.rx, context: s.context, hs, next, localEnded: false })
    this.#send(wire)
    return true
  }

  /** Wipes all keys; later write() throws PROTO_ERR_SESSION_FAILED, receive/end do nothing. No callbacks. */
  destroy(): void {
    const next = afterDestroy(this.#s)
    if (next !== undefined) this.#enter(next)
  }

  // --- records out: the general case of write() ---

  /**
   * Seals the kept bytes and `data`: full records while they fill one, then the rest
   * kept (`more`) or cut into records of equal size. Nothing is sealed, and nothing
   * changes, when the limits do not allow it all.
   */
  #sealParts(s: TunnelPhase, tx: RecordSession, data: Uint8Array, more: boolean): void {
    const max = tx.maxPayload
    const total = this.#keptBytes + data.length
    const full = Math.floor(total / max)
    const rest = total - full * max
    // Without more: every byte goes now, in records as equal as can be.
    const records = more ? full : Math.ceil(total / max)
    const sealed = more ? full * max : total
    this.#checkRoom(s, tx, records, sealed)
    const parts = this.#keptBytes === 0 ? [data] : [...this.#kept, data]
    let at = 0 // the part being consumed, from `off`
    let off = 0
    for (let r = 0; r < records; r++) {
      let need = more ? max : Math.floor(total / records) + (r < total % records ? 1 : 0)
      const pieces: Uint8Array[] = []
      while (need > 0) {
        const p = parts[at] as Uint8Array
        const take = Math.min(p.length - off, need)
        pieces.push(off === 0 && take === p.length ? p : p.subarray(off, off + take))
        need -= take
        off += take
        if (off === p.length) {
          at++
          off = 0
        }
      }
      const wire = tx.seal(pieces.length === 1 ? (pieces[0] as Uint8Array) : pieces)
      if (r === records - 1) this.#keep(more ? parts : [], at, off, more ? rest : 0)
      this.#send(wire)
    }
    if (records === 0) this.#keep(parts, 0, 0, rest)
  }

  /** Keeps parts[at] from `off` on, and every part after it (`bytes` in all). */
  #keep(parts: Uint8Array[], at: number, off: number, bytes: number): void {
    const kept: Uint8Array[] = []
    for (let i = at; i < parts.length; i++) {
      const p = parts[i] as Uint8Array
      const from = i === at ? off : 0
      if (from < p.length) kept.push(from === 0 ? p : p.subarray(from))
    }
    this.#kept = kept
    this.#keptBytes = bytes
  }

  #dropKept(): void {
    this.#kept = []
    this.#keptBytes = 0
  }

  #checkRoom(s: TunnelPhase, tx: RecordSession, records: number, bytes: number): void {
    // While a request is in flight the initiator keeps the last record back for the marker.
    const reserve = s.phase === 'requesting' ? 1 : 0
    if (!tx.hasRoom(records + reserve, bytes)) {
      throw protoError('PROTO_ERR_RECORD_LIMIT', reserve ? 'the last record is kept for the re-handshake' : undefined)
    }
  }

  // --- records once open: the hot path in ---

  #record(s: Live, bytes: Uint8Array): void {
    let opened: OpenedRecord
    try {
      opened = s.rx.open(bytes)
    } catch (e) {
      return this.#failOn(e)
    }
    if (opened.type === 'data') return this.#handler.onData(opened.data)
    if (opened.type === 'handshake') {
      this.#bytesInBefore -= opened.data.length // ours, not the tunnel's data
      return handshakeRecord(this.#core, s, opened.data)
    }
    if (opened.type === 'close') return peerClosed(this.#core, s, opened.code, opened.reason)
    // REKEY: the record layer has already moved its receive key on.
  }

  // --- transitions ---

  /**
   * The only place the phase changes. Whatever the old phase held that the new one
   * does not is retired here: its counts go into the lifetime totals, its keys are
   * wiped. (Records before the confirmation are never the tunnel's data.)
   */
  #enter(next: TunnelPhase): void {
    const prev = this.#s
    this.#s = next
    if (next.phase === 'failed' || next.phase === 'closed') this.#dropKept()
    if ('tx' in prev) {
      const keep = 'tx' in next ? next : undefined
      if (prev.phase !== 'confirming') {
        if (prev.tx !== keep?.tx) this.#bytesOutBefore += prev.tx.bytesSent
        if (prev.rx !== keep?.rx) this.#bytesInBefore += prev.rx.bytesReceived
      }
      if (prev.tx !== keep?.tx && prev.tx !== keep?.rx) prev.tx.destroy()
      if (prev.rx !== keep?.tx && prev.rx !== keep?.rx) prev.rx.destroy()
    }
    if ('hs' in prev && prev.hs !== ('hs' in next ? next.hs : undefined)) prev.hs.destroy()
  }

  // Sends from inside receive(): a KeymeshError thrown by `send` fails the session as
  // bad bytes would; anything else propagates. False when the session failed.
  #emit(wire: Uint8Array): boolean {
    try {
      this.#send(wire)
      return true
    } catch (e) {
      this.#failOn(e)
      return false
    }
  }

  #sealHandshake(tx: RecordSession, payload: Uint8Array): Uint8Array {
    const wire = tx.sealHandshake(payload)
    this.#bytesOutBefore -= payload.length // ours, not the tunnel's data
    return wire
  }

  #resolveKeys(context: TunnelContext): TunnelKeys {
    try {
      return (this.#resolve as (context: TunnelContext) => TunnelKeys)(context)
    } catch (e) {
      if (isKeymeshError(e)) throw e
      throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'resolve() failed', { cause: e })
    }
  }

  // Errors that are not KeymeshErrors are bugs (ours or the caller's send): they propagate.
  #failOn(e: unknown, context?: TunnelContext): void {
    if (!isKeymeshError(e)) throw e
    this.#fail(e, context)
  }

  #fail(error: KeymeshError, context = contextOf(this.#s)): void {
    this.#enter(failedFrom(this.#s, context))
    this.#handler.onError(error)
  }
}

/**
 * Splits a hello (first-handshake message 1) into its checked context and KK message 1,
 * without any Diffie-Hellman: listeners screen a hello with it before a session exists.
 * The first 32 bytes of `message` are the initiator's ephemeral public key.
 */
export function parseTunnelHello(bytes: Uint8Array): { context: TunnelContext; message: Uint8Array } {
  const { context, message1 } = parseHello(bytes)
  return { context, message: message1 }
}
