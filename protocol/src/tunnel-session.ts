// One agent ↔ agent tunnel as a pure state machine: Noise_KKpsk0 (PSK = the pair key
// of one version), then records (record.ts), with in-band re-handshakes so a live
// tunnel moves to a new key version without dropping, losing or repeating a byte.
// Bytes in (`receive`), bytes out (`send`), callbacks to a handler; the agent owns
// the WebSocket, the timers and the policy (when to re-handshake, what to accept).
//
// Wire protocol. One transport message = one `send` call = one WebSocket binary
// message. hello(ctx) = u16 BE preamble length ‖ encodeTunnelPreamble(ctx) ‖ KK message 1
// (prologue bound to ctx, empty payload). Every KK message is exactly 48 bytes.
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
//   - Hot path: write() seals straight from the caller's buffer into one wire buffer
//     per record; receive() hands the decrypted buffer to onData as is.
import type { CryptoSuite, KeyPair } from './crypto/suite.js'
import { isKeymeshError, protoError, type KeymeshError } from './errors.js'
import type { HandshakeState } from './noise/handshake-state.js'
import { createKkInitiator, createKkResponder } from './noise/keymesh-handshakes.js'
import { MAX_PREAMBLE_BYTES, checkTunnelContext, decodeTunnelPreamble, encodeTunnelPreamble, type TunnelContext } from './noise/tunnel-preamble.js'
import { RECORD_OVERHEAD, RecordSession, resolveRecordLimits, type RecordLimits } from './record.js'

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

/** 'open' covers half-closed too; see localEnded / remoteEnded. */
export type TunnelState = 'handshake' | 'open' | 'closed' | 'failed'

/** A KKpsk0 message with an empty payload: e (32 bytes) and the payload's AEAD tag (16). */
export const KK_MESSAGE_BYTES = 48
/** The longest hello: u16 preamble length, the longest preamble, KK message 1. */
export const MAX_TUNNEL_HELLO_BYTES = 2 + MAX_PREAMBLE_BYTES + KK_MESSAGE_BYTES
/** The smallest maxRecordBytes a tunnel takes: a re-handshake request is one record. */
export const MIN_TUNNEL_RECORD_BYTES = RECORD_OVERHEAD + MAX_TUNNEL_HELLO_BYTES

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
  #state: TunnelState = 'handshake'
  #destroyed = false
  #started = false
  #context: TunnelContext | undefined
  /** The first handshake, until split. */
  #hs: HandshakeState | undefined
  /** Seals our records / opens the peer's: one RecordSession, or two during a re-handshake. */
  #tx: RecordSession | undefined
  #rx: RecordSession | undefined
  /** Initiator: the re-handshake waiting for message 2. */
  #pending: HandshakeState | undefined
  #nextContext: TunnelContext | undefined
  #rehandshaking = false
  #localEnded = false
  #remoteEnded = false
  #bytesIn = 0
  #bytesOut = 0
  /** Records and bytes under the current keys, each way. */
  #txRecords = 0
  #txBytes = 0
  #rxRecords = 0

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
      this.#context = checkTunnelContext(o.context)
      this.#hs = this.#kk(this.#context, o.keys) // copies the keys now
    } else if (o.role === 'responder') {
      if (typeof o.resolve !== 'function') throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'responder needs resolve')
      this.#initiator = false
    } else throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'role must be initiator or responder')
  }

  get state(): TunnelState {
    return this.#state
  }

  /** The context in use (the responder's is known after message 1). */
  get context(): TunnelContext | undefined {
    return this.#context
  }

  /** True while a re-handshake is in flight (initiator: until onRekeyed or abandoned; responder: until the marker). */
  get rehandshaking(): boolean {
    return this.#rehandshaking
  }

  /** We sent CLOSE. */
  get localEnded(): boolean {
    return this.#localEnded
  }

  /** The peer sent CLOSE. */
  get remoteEnded(): boolean {
    return this.#remoteEnded
  }

  /** Plaintext bytes received over the whole life of the tunnel (all key versions). */
  get bytesIn(): number {
    return this.#bytesIn
  }

  /** Plaintext bytes sent over the whole life of the tunnel (all key versions). */
  get bytesOut(): number {
    return this.#bytesOut
  }

  /** Records under the current keys: the larger of sent and received. */
  get recordsSinceHandshake(): number {
    return Math.max(this.#txRecords, this.#rxRecords)
  }

  /** Initiator: writes message 1 (hello in one transport message). Later calls do nothing. */
  start(): void {
    if (!this.#initiator) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'only the initiator starts a tunnel')
    if (this.#started || this.#destroyed || this.#state !== 'handshake') return
    this.#started = true
    this.#send(hello(this.#context as TunnelContext, (this.#hs as HandshakeState).writeMessage()))
  }

  /** One transport message from the peer. Errors never throw: they fail the session (onError). */
  receive(bytes: Uint8Array): void {
    if (this.#destroyed || this.#state === 'failed') return
    if (this.#remoteEnded) return this.#fail(protoError('PROTO_ERR_SESSION_CLOSED', 'record after the peer\'s CLOSE'))
    const rx = this.#rx
    if (rx === undefined) return this.#handshakeMessage(bytes)
    let opened: ReturnType<RecordSession['open']>
    try {
      opened = rx.open(bytes)
    } catch (e) {
      return this.#failOn(e)
    }
    if (opened.type === 'data' && this.#state === 'open') {
      this.#rxRecords++
      this.#bytesIn += opened.data.length
      this.#handler.onData(opened.data)
    } else if (this.#state === 'handshake') this.#confirmation(opened.type === 'handshake' && opened.data.length === 0)
    else if (opened.type === 'handshake') {
      this.#rxRecords++
      if (this.#initiator) this.#message2(opened.data)
      else if (opened.data.length === 0) this.#marker()
      else this.#request(opened.data)
    } else if (opened.type === 'close') this.#peerClosed(opened.code, opened.reason)
    else this.#rxRecords++ // REKEY: the record layer has already moved its receive key on
  }

  /**
   * Seals data (any length; records of at most maxPayload) and sends it. Throws
   * PROTO_ERR_HANDSHAKE_STATE before open, PROTO_ERR_SESSION_CLOSED after end(),
   * PROTO_ERR_SESSION_FAILED after failure or destroy(), PROTO_ERR_RECORD_LIMIT at
   * the hard limit (nothing of `data` is sent then).
   */
  write(data: Uint8Array): void {
    const tx = this.#openTx()
    if (!(data instanceof Uint8Array)) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'data must be bytes')
    const n = data.length
    if (n === 0) return
    const max = tx.maxPayload
    const records = Math.ceil(n / max)
    const reserve = this.#pending === undefined ? 0 : 1
    if (this.#txRecords + records + reserve > this.#limits.maxRecords || this.#txBytes + n > this.#limits.maxBytes) {
      throw protoError('PROTO_ERR_RECORD_LIMIT', reserve ? 'the last record is kept for the re-handshake' : undefined)
    }
    this.#txRecords += records
    this.#txBytes += n
    this.#bytesOut += n
    if (records === 1) return this.#send(tx.seal(data))
    for (let off = 0; off < n; off += max) this.#send(tx.seal(data.subarray(off, off + max)))
  }

  /** Ends our direction with an authenticated CLOSE (code, reason ≤ 123 UTF-8 bytes). Idempotent. */
  end(code: number = CLOSE_NORMAL, reason = ''): void {
    if (this.#destroyed || this.#state === 'failed' || this.#localEnded) return
    if (this.#state !== 'open') throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'tunnel is not open yet')
    const wire = (this.#tx as RecordSession).sealClose(code, reason)
    this.#localEnded = true
    if (this.#remoteEnded) this.#closeAll()
    this.#send(wire)
  }

  /**
   * Initiator only, state open, both directions open, none in flight: starts a
   * re-handshake to context.keyVersion (any other field changed: PROTO_ERR_REHANDSHAKE,
   * thrown). Returns false, doing nothing, when it cannot start now. Data keeps flowing.
   */
  rehandshake(context: TunnelContext, keys: TunnelKeys): boolean {
    if (!this.#initiator) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the initiator starts a re-handshake')
    const next = checkTunnelContext(context)
    if (!sameTunnel(next, this.#context as TunnelContext)) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the key version may change')
    if (this.#destroyed || this.#state !== 'open' || this.#pending !== undefined || this.#localEnded || this.#remoteEnded) return false
    const hs = this.#kk(next, keys)
    let wire: Uint8Array
    try {
      wire = (this.#tx as RecordSession).sealHandshake(hello(next, hs.writeMessage()))
    } catch (e) {
      hs.destroy()
      throw e
    }
    this.#txRecords++
    this.#pending = hs
    this.#nextContext = next
    this.#rehandshaking = true
    this.#send(wire)
    return true
  }

  /** Wipes all keys; later write() throws PROTO_ERR_SESSION_FAILED, receive/end do nothing. No callbacks. */
  destroy(): void {
    if (this.#destroyed) return
    this.#destroyed = true
    if (this.#state !== 'closed') this.#state = 'failed'
    this.#wipe()
  }

  // --- first handshake ---

  #handshakeMessage(bytes: Uint8Array): void {
    try {
      if (this.#initiator) {
        if (!this.#started) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'message before start()')
        checkKkMessage(bytes)
        const hs = this.#hs as HandshakeState
        hs.readMessage(bytes)
        this.#hs = undefined
        const records = this.#split(hs)
        this.#tx = this.#rx = records
        const confirmation = records.sealHandshake(EMPTY)
        this.#txRecords = 1
        this.#state = 'open'
        this.#send(confirmation)
      } else {
        const { context, message } = parseHello(bytes)
        const hs = (this.#hs = this.#kk(context, this.#resolveKeys(context)))
        this.#context = context
        hs.readMessage(message)
        const message2 = hs.writeMessage()
        this.#hs = undefined
        this.#tx = this.#rx = this.#split(hs)
        this.#send(message2)
        return // not open until the confirmation record
      }
    } catch (e) {
      return this.#failOn(e)
    }
    this.#handler.onOpen(this.#context as TunnelContext)
  }

  // Responder, first record: it must be the empty HANDSHAKE confirmation.
  #confirmation(ok: boolean): void {
    if (!ok) return this.#fail(protoError('PROTO_ERR_HANDSHAKE_STATE', 'first record is not the handshake confirmation'))
    this.#rxRecords = 1
    this.#state = 'open'
    this.#handler.onOpen(this.#context as TunnelContext)
  }

  // --- re-handshake ---

  // Responder: hello(ctx') from the initiator, under the old keys.
  #request(data: Uint8Array): void {
    if (this.#rehandshaking) return this.#fail(protoError('PROTO_ERR_REHANDSHAKE', 'second request while one is in flight'))
    if (this.#localEnded) return // we sent CLOSE: the initiator abandons its request when that arrives
    const old = this.#tx as RecordSession
    try {
      const { context, message } = parseHello(data)
      if (!sameTunnel(context, this.#context as TunnelContext)) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the key version may change')
      const hs = (this.#pending = this.#kk(context, this.#resolveKeys(context)))
      hs.readMessage(message)
      const wire = old.sealHandshake(hs.writeMessage())
      this.#pending = undefined
      this.#tx = this.#split(hs)
      this.#nextContext = context
      this.#rehandshaking = true
      this.#txRecords = 0
      this.#txBytes = 0
      this.#send(wire)
    } catch (e) {
      return this.#failOn(e)
    }
  }

  // Initiator: message 2 from the responder, its last record under the old keys.
  #message2(data: Uint8Array): void {
    const hs = this.#pending
    const old = this.#tx as RecordSession
    try {
      if (hs === undefined || data.length === 0) throw protoError('PROTO_ERR_REHANDSHAKE', 'HANDSHAKE record with no re-handshake in flight')
      checkKkMessage(data)
      hs.readMessage(data)
      this.#pending = undefined
      const next = this.#split(hs)
      this.#rx = next
      this.#rxRecords = 0
      const marker = this.#localEnded ? undefined : old.sealHandshake(EMPTY)
      this.#tx = next
      this.#txRecords = 0
      this.#txBytes = 0
      old.destroy()
      if (marker) this.#send(marker)
    } catch (e) {
      return this.#failOn(e)
    }
    this.#rekeyed()
  }

  // Responder: the initiator's switch marker, its last record under the old keys.
  #marker(): void {
    if (!this.#rehandshaking) return this.#fail(protoError('PROTO_ERR_REHANDSHAKE', 'switch marker with no re-handshake in flight'))
    this.#switchRx()
    this.#rekeyed()
  }

  #switchRx(): void {
    ;(this.#rx as RecordSession).destroy()
    this.#rx = this.#tx
    this.#rxRecords = 0
  }

  #rekeyed(): void {
    const context = this.#nextContext as TunnelContext
    this.#context = context
    this.#nextContext = undefined
    this.#rehandshaking = false
    this.#handler.onRekeyed(context)
  }

  #peerClosed(code: number, reason: string): void {
    this.#remoteEnded = true
    let rekeyed = false
    if (this.#pending !== undefined) {
      // Initiator waiting for message 2: the responder ended first and dropped the request.
      this.#pending.destroy()
      this.#pending = undefined
      this.#nextContext = undefined
      this.#rehandshaking = false
    } else if (this.#rehandshaking) {
      // Responder waiting for the marker: none comes, and our sending side is already new.
      this.#switchRx()
      rekeyed = true
    }
    if (this.#localEnded) this.#closeAll()
    if (rekeyed) {
      this.#rekeyed()
      if (this.#destroyed) return
    }
    this.#handler.onEnd(code, reason)
  }

  // --- helpers ---

  #openTx(): RecordSession {
    if (this.#destroyed || this.#state === 'failed') throw protoError('PROTO_ERR_SESSION_FAILED')
    if (this.#state === 'handshake') throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'tunnel is not open yet')
    if (this.#localEnded) throw protoError('PROTO_ERR_SESSION_CLOSED', 'CLOSE already sent')
    return this.#tx as RecordSession
  }

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

  // Errors that are not KeymeshErrors are bugs (ours or the caller's send): they propagate.
  #failOn(e: unknown): void {
    if (!isKeymeshError(e)) throw e
    this.#fail(e)
  }

  #fail(error: KeymeshError): void {
    this.#state = 'failed'
    this.#rehandshaking = false
    this.#wipe()
    this.#handler.onError(error)
  }

  #closeAll(): void {
    this.#state = 'closed'
    this.#wipe()
  }

  #wipe(): void {
    this.#hs?.destroy()
    this.#pending?.destroy()
    this.#tx?.destroy()
    this.#rx?.destroy()
    this.#hs = this.#pending = undefined
  }
}

function sameTunnel(a: TunnelContext, b: TunnelContext): boolean {
  return a.pairId === b.pairId && a.fromService === b.fromService && a.toService === b.toService && a.fromAgent === b.fromAgent
}

function checkKkMessage(bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KK_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', `handshake message must be ${KK_MESSAGE_BYTES} bytes`)
  }
}

function hello(context: TunnelContext, message: Uint8Array): Uint8Array {
  const preamble = encodeTunnelPreamble(context)
  const out = new Uint8Array(2 + preamble.length + message.length)
  out[0] = preamble.length >>> 8
  out[1] = preamble.length & 0xff
  out.set(preamble, 2)
  out.set(message, 2 + preamble.length)
  return out
}

/**
 * Splits a hello (first-handshake message 1) into its checked context and KK message 1,
 * without any Diffie-Hellman: listeners screen a hello with it before a session exists.
 * The first 32 bytes of `message` are the initiator's ephemeral public key.
 */
export function parseTunnelHello(bytes: Uint8Array): { context: TunnelContext; message: Uint8Array } {
  return parseHello(bytes)
}

function parseHello(bytes: Uint8Array): { context: TunnelContext; message: Uint8Array } {
  if (!(bytes instanceof Uint8Array) || bytes.length < 2) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'hello truncated')
  const n = ((bytes[0] as number) << 8) | (bytes[1] as number)
  if (n > MAX_PREAMBLE_BYTES || bytes.length !== 2 + n + KK_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'hello has the wrong length')
  }
  return { context: decodeTunnelPreamble(bytes.subarray(2, 2 + n)), message: bytes.subarray(2 + n) }
}
