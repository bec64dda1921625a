// One agent ↔ agent tunnel as a pure state machine: Noise_KKpsk0 (PSK = the pair key
// of one version), then records (record.ts), with in-band re-handshakes so a live
// tunnel moves to a new key version without dropping, losing or repeating a byte.
// Bytes in (`receive`), bytes out (`send`), callbacks to a handler; the agent owns
// the WebSocket, the timers and the policy (when to re-handshake, what to accept).
//
// Wire protocol. One transport message = one `send` call = one WebSocket binary
// message. hello(ctx) = u16 BE preamble length ‖ encodeTunnelPreamble(ctx) ‖ KK message 1
// (prologue bound to ctx, empty payload; tunnel-hello.ts). Every KK message is 48 bytes.
// The phases and the full event × phase table are in tunnel-session-state.ts.
//   First handshake:
//   1. I→R  hello(ctx), as one raw transport message.
//   2. R    decodes the preamble, asks resolve(ctx) for the keys (a refusal fails the
//           session with its error; nothing is sent), reads message 1, writes KK
//           message 2 as one raw transport message. R is NOT open yet.
//   3. I    reads message 2 and splits; sends an empty HANDSHAKE record (the
//           confirmation) under the new keys; I is open (onOpen) and may write at once.
//   4. R    the first record must be that empty HANDSHAKE record; once it verifies, R
//           is open (onOpen). So a replayed message 1 never opens: the replayer cannot
//           produce the confirmation. Anything else first: PROTO_ERR_HANDSHAKE_STATE.
//   Then DATA carries data, CLOSE ends one direction (onEnd, like TCP FIN), REKEY is
//   accepted (the record layer applies it).
//   Re-handshake to ctx' (only keyVersion may differ; initiator-driven):
//   a. I→R  HANDSHAKE record under the OLD keys carrying hello(ctx'). I keeps sending
//           DATA under the old keys.
//   b. R    checks ctx' against its context (PROTO_ERR_REHANDSHAKE), resolve(ctx'),
//           and answers with message 2 in a HANDSHAKE record under the OLD keys: its
//           last old-key record; R sends under the new keys from then on. If R has
//           already ended its direction it drops the request silently.
//   c. I    on that record its receive side switches to the new keys; unless I has
//           ended its direction, it sends an EMPTY HANDSHAKE record under the OLD keys
//           (the switch marker) and sends under the new keys from then on. onRekeyed.
//   d. R    the marker (under the old keys) switches its receive side; onRekeyed.
//   Crossing closes: a CLOSE that reaches I while it waits for message 2 means R
//   dropped the request: I abandons it and keeps the old keys. A CLOSE that reaches
//   R while it waits for the marker means I ended before message 2 arrived and sends
//   no marker: R's only live direction (its sending side) is already on ctx', so R
//   reports onRekeyed before onEnd. Every HANDSHAKE record out of place (wrong side,
//   wrong time, a non-empty marker, message 2 with none in flight, a second request)
//   is PROTO_ERR_REHANDSHAKE.
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
import type { CryptoSuite, KeyPair } from './crypto/suite.js'
import { isKeymeshError, protoError, type KeymeshError } from './errors.js'
import type { HandshakeState } from './noise/handshake-state.js'
import { createKkInitiator, createKkResponder } from './noise/keymesh-handshakes.js'
import { checkTunnelContext, type TunnelContext } from './noise/tunnel-preamble.js'
import { RecordSession, resolveRecordLimits, type OpenedRecord, type RecordLimits } from './record.js'
import { MIN_TUNNEL_RECORD_BYTES, checkKkMessage, hello, parseHello, sameTunnel } from './tunnel-hello.js'
import {
  LISTENING,
  closed,
  contextOf,
  failedFrom,
  localEnded,
  publicState,
  remoteEnded,
  type Confirming,
  type Hello,
  type Live,
  type TunnelPhase,
  type TunnelState,
} from './tunnel-session-state.js'

export { KK_MESSAGE_BYTES, MAX_TUNNEL_HELLO_BYTES, MIN_TUNNEL_RECORD_BYTES } from './tunnel-hello.js'
export type { TunnelState } from './tunnel-session-state.js'

export interface TunnelKeys {
  /** The pair key of context.keyVersion (32 bytes); copied, the caller may wipe its own. */
  readonly psk: Uint8Array
  /** The peer agent's static public key. */
  readonly remoteStatic: Uint8Array
}

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

const EMPTY = new Uint8Array(0)
const CLOSE_NORMAL = 1000

export class TunnelSession {
  readonly #suite: CryptoSuite
  readonly #staticKey: KeyPair
  readonly #initiator: boolean
  readonly #resolve: ((context: TunnelContext) => TunnelKeys) | undefined
  readonly #limits: Required<RecordLimits>
  readonly #send: (bytes: Uint8Array) => void
  readonly #handler: TunnelHandler
  /** The one piece of mutable state; it changes only in #enter. */
  #s: TunnelPhase
  // Plaintext bytes of the key versions already retired, less the session's own
  // handshake payloads (which the record layer counts like data): the lifetime
  // totals are these plus the live RecordSessions' counts.
  #bytesInBefore = 0
  #bytesOutBefore = 0

  constructor(o: TunnelSessionOptions) {
    this.#suite = o.suite
    this.#staticKey = o.staticKey
    this.#send = o.send
    this.#handler = o.handler
    this.#resolve = o.resolve
    this.#limits = resolveRecordLimits(o.limits ?? {})
    if (this.#limits.maxRecordBytes < MIN_TUNNEL_RECORD_BYTES) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', `maxRecordBytes must be at least ${MIN_TUNNEL_RECORD_BYTES} for a tunnel`)
    }
    if (typeof o.send !== 'function' || typeof o.handler !== 'object' || o.handler === null) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'tunnel session needs send and handler')
    }
    if (o.role === 'initiator') {
      if (o.context === undefined || o.keys === undefined) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'initiator needs context and keys')
      this.#initiator = true
      const context = checkTunnelContext(o.context)
      this.#s = { phase: 'ready', hs: this.#kk(context, o.keys), context } // copies the keys now
    } else if (o.role === 'responder') {
      if (typeof o.resolve !== 'function') throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'responder needs resolve')
      this.#initiator = false
      this.#s = LISTENING
    } else throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'role must be initiator or responder')
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
    if (!this.#initiator) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'only the initiator starts a tunnel')
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
        return this.#message2(s, bytes)
      case 'listening':
        return this.#message1(bytes)
      case 'confirming':
        return this.#confirmation(s, bytes)
      case 'failed':
        return
    }
  }

  /**
   * Seals data (any length; records of at most maxPayload) and sends it. Throws
   * PROTO_ERR_HANDSHAKE_STATE before open, PROTO_ERR_SESSION_CLOSED after end(),
   * PROTO_ERR_SESSION_FAILED after failure or destroy(), PROTO_ERR_RECORD_LIMIT at
   * the hard limit (nothing of `data` is sent then).
   */
  write(data: Uint8Array): void {
    const s = this.#s
    const tx = s.phase === 'open' ? s.tx : writableTx(s)
    if (!(data instanceof Uint8Array)) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'data must be bytes')
    const n = data.length
    if (n === 0) return
    const max = tx.maxPayload
    const records = Math.ceil(n / max)
    // While a request is in flight the initiator keeps the last record back for the marker.
    const reserve = s.phase === 'requesting' ? 1 : 0
    if (!tx.hasRoom(records + reserve, n)) {
      throw protoError('PROTO_ERR_RECORD_LIMIT', reserve ? 'the last record is kept for the re-handshake' : undefined)
    }
    if (records === 1) return this.#send(tx.seal(data))
    for (let off = 0; off < n; off += max) this.#send(tx.seal(data.subarray(off, off + max)))
  }

  /** Ends our direction with an authenticated CLOSE (code, reason ≤ 123 UTF-8 bytes). Idempotent. */
  end(code: number = CLOSE_NORMAL, reason = ''): void {
    const s = this.#s
    switch (s.phase) {
      case 'closed':
      case 'failed':
        return
      case 'ready':
      case 'hello':
      case 'listening':
      case 'confirming':
        throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'tunnel is not open yet')
      case 'open':
        return this.#sendClose(s, code, reason, { phase: 'closing', ended: 'local', tx: s.tx, rx: s.rx, context: s.context })
      case 'closing':
        if (s.ended === 'remote') this.#sendClose(s, code, reason, closed(s.context))
        return
      case 'requesting':
      case 'switching':
        if (!s.localEnded) this.#sendClose(s, code, reason, { ...s, localEnded: true })
        return
    }
  }

  /**
   * Initiator only, state open, both directions open, none in flight: starts a
   * re-handshake to context.keyVersion (any other field changed: PROTO_ERR_REHANDSHAKE,
   * thrown). Returns false, doing nothing, when it cannot start now. Data keeps flowing.
   */
  rehandshake(context: TunnelContext, keys: TunnelKeys): boolean {
    if (!this.#initiator) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the initiator starts a re-handshake')
    const next = checkTunnelContext(context)
    if (!sameTunnel(next, this.context as TunnelContext)) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the key version may change')
    const s = this.#s
    if (s.phase !== 'open') return false
    const hs = this.#kk(next, keys)
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
    const s = this.#s
    if (s.phase === 'failed' || (s.phase === 'closed' && s.destroyed)) return
    this.#enter(s.phase === 'closed' ? { ...s, destroyed: true } : failedFrom(s))
  }

  // --- the first handshake ---

  // Responder: hello(ctx). A resolve() refusal fails the session before anything is sent.
  #message1(bytes: Uint8Array): void {
    let hs: HandshakeState | undefined
    let context: TunnelContext | undefined
    try {
      const parsed = parseHello(bytes)
      hs = this.#kk(parsed.context, this.#resolveKeys(parsed.context))
      context = parsed.context
      hs.readMessage(parsed.message)
      const message2 = hs.writeMessage()
      const records = this.#split(hs)
      this.#enter({ phase: 'confirming', tx: records, rx: records, context })
      this.#send(message2)
    } catch (e) {
      hs?.destroy()
      return this.#failOn(e, context)
    }
  }

  // Initiator: message 2; open at once, and the confirmation is our first record.
  #message2(s: Hello, bytes: Uint8Array): void {
    try {
      checkKkMessage(bytes)
      s.hs.readMessage(bytes)
      const records = this.#split(s.hs)
      this.#enter({ phase: 'open', tx: records, rx: records, context: s.context })
      this.#send(this.#sealHandshake(records, EMPTY))
    } catch (e) {
      return this.#failOn(e)
    }
    this.#handler.onOpen(s.context)
  }

  // Responder: the first record must be the empty HANDSHAKE confirmation.
  #confirmation(s: Confirming, bytes: Uint8Array): void {
    let opened: OpenedRecord
    try {
      opened = s.rx.open(bytes)
    } catch (e) {
      return this.#failOn(e)
    }
    if (opened.type !== 'handshake' || opened.data.length !== 0) {
      return this.#fail(protoError('PROTO_ERR_HANDSHAKE_STATE', 'first record is not the handshake confirmation'))
    }
    this.#enter({ phase: 'open', tx: s.tx, rx: s.rx, context: s.context })
    this.#handler.onOpen(s.context)
  }

  // --- records ---

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
      if (this.#initiator) return this.#answer(s, opened.data)
      return opened.data.length === 0 ? this.#marker(s) : this.#request(s, opened.data)
    }
    if (opened.type === 'close') return this.#peerClosed(s, opened.code, opened.reason)
    // REKEY: the record layer has already moved its receive key on.
  }

  // Responder: hello(ctx') from the initiator, under the old keys.
  #request(s: Live, data: Uint8Array): void {
    if (s.phase === 'switching') return this.#fail(protoError('PROTO_ERR_REHANDSHAKE', 'second request while one is in flight'))
    if (s.phase !== 'open') return // closing (local): the initiator abandons its request when our CLOSE arrives
    let hs: HandshakeState | undefined
    try {
      const { context, message } = parseHello(data)
      if (!sameTunnel(context, s.context)) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the key version may change')
      hs = this.#kk(context, this.#resolveKeys(context))
      hs.readMessage(message)
      const wire = this.#sealHandshake(s.tx, hs.writeMessage()) // our last record under the old keys
      this.#enter({ phase: 'switching', tx: this.#split(hs), rx: s.rx, context: s.context, next: context, localEnded: false })
      this.#send(wire)
    } catch (e) {
      hs?.destroy()
      return this.#failOn(e)
    }
  }

  // Initiator: message 2 from the responder, its last record under the old keys.
  #answer(s: Live, data: Uint8Array): void {
    if (s.phase !== 'requesting' || data.length === 0) {
      return this.#fail(protoError('PROTO_ERR_REHANDSHAKE', 'HANDSHAKE record with no re-handshake in flight'))
    }
    try {
      checkKkMessage(data)
      s.hs.readMessage(data)
      const marker = s.localEnded ? undefined : this.#sealHandshake(s.tx, EMPTY) // our last record under the old keys
      const next = this.#split(s.hs)
      this.#enter(s.localEnded
        ? { phase: 'closing', ended: 'local', tx: next, rx: next, context: s.next }
        : { phase: 'open', tx: next, rx: next, context: s.next })
      if (marker) this.#send(marker)
    } catch (e) {
      return this.#failOn(e)
    }
    this.#handler.onRekeyed(s.next)
  }

  // Responder: the initiator's switch marker, its last record under the old keys.
  #marker(s: Live): void {
    if (s.phase !== 'switching') return this.#fail(protoError('PROTO_ERR_REHANDSHAKE', 'switch marker with no re-handshake in flight'))
    this.#enter(s.localEnded
      ? { phase: 'closing', ended: 'local', tx: s.tx, rx: s.tx, context: s.next }
      : { phase: 'open', tx: s.tx, rx: s.tx, context: s.next })
    this.#handler.onRekeyed(s.next)
  }

  #peerClosed(s: Live, code: number, reason: string): void {
    switch (s.phase) {
      case 'open':
        this.#enter({ phase: 'closing', ended: 'remote', tx: s.tx, rx: s.rx, context: s.context })
        break
      case 'closing': // ended locally: a remote end never gets here
        this.#enter(closed(s.context))
        break
      case 'requesting':
        // Waiting for message 2: the responder ended first and dropped the request.
        this.#enter(s.localEnded ? closed(s.context) : { phase: 'closing', ended: 'remote', tx: s.tx, rx: s.rx, context: s.context })
        break
      case 'switching': {
        // Waiting for the marker: none comes, and our sending side is already new.
        this.#enter(s.localEnded ? closed(s.next) : { phase: 'closing', ended: 'remote', tx: s.tx, rx: s.tx, context: s.next })
        this.#handler.onRekeyed(s.next)
        const now = this.#s
        if (now.phase === 'failed' || (now.phase === 'closed' && now.destroyed)) return // the handler ended it all
      }
    }
    this.#handler.onEnd(code, reason)
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

  #sendClose(s: Live, code: number, reason: string, next: TunnelPhase): void {
    const wire = s.tx.sealClose(code, reason) // a bad code or reason throws before anything changes
    this.#enter(next)
    this.#send(wire)
  }

  #sealHandshake(tx: RecordSession, payload: Uint8Array): Uint8Array {
    const wire = tx.sealHandshake(payload)
    this.#bytesOutBefore -= payload.length // ours, not the tunnel's data
    return wire
  }

  // Errors that are not KeymeshErrors are bugs (ours or the caller's send): they propagate.
  #failOn(e: unknown, context?: TunnelContext): void {
    if (!isKeymeshError(e)) throw e
    this.#fail(e, context)
  }

  #fail(error: KeymeshError, context?: TunnelContext): void {
    this.#enter(failedFrom(this.#s, context ?? contextOf(this.#s)))
    this.#handler.onError(error)
  }

  // --- keys ---

  #kk(context: TunnelContext, keys: TunnelKeys): HandshakeState {
    if (typeof keys !== 'object' || keys === null) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'tunnel keys')
    const o = { suite: this.#suite, staticKey: this.#staticKey, remoteStatic: keys.remoteStatic, psk: keys.psk, context }
    return this.#initiator ? createKkInitiator(o) : createKkResponder(o)
  }

  #split(hs: HandshakeState): RecordSession {
    const { send, recv } = hs.split()
    return new RecordSession({ send, recv, ...this.#limits })
  }

  #resolveKeys(context: TunnelContext): TunnelKeys {
    try {
      return (this.#resolve as (context: TunnelContext) => TunnelKeys)(context)
    } catch (e) {
      if (isKeymeshError(e)) throw e
      throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'resolve() failed', { cause: e })
    }
  }
}

// write() outside the open phase: the sending keys, or the typed refusal.
function writableTx(s: TunnelPhase): RecordSession {
  switch (s.phase) {
    case 'failed':
      throw protoError('PROTO_ERR_SESSION_FAILED')
    case 'ready':
    case 'hello':
    case 'listening':
    case 'confirming':
      throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'tunnel is not open yet')
    case 'closed':
      if (s.destroyed) throw protoError('PROTO_ERR_SESSION_FAILED')
      break
    case 'closing':
      if (s.ended === 'remote') return s.tx
      break
    default: // open, requesting, switching
      if (!localEnded(s)) return s.tx
  }
  throw protoError('PROTO_ERR_SESSION_CLOSED', 'CLOSE already sent')
}
