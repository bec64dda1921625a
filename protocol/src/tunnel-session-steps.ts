// The receive-side rows of the tunnel session's table (tunnel-session-state.ts) that
// do more than move a phase: the handshake messages, the handshake records and the
// peer's CLOSE. Each step reads the same way: the fallible work first (wiping any
// keys it made if that fails), then the new phase, then what is sent, then the
// handler's callback, so a callback that throws or re-enters sees the new phase.
// tunnel-session.ts dispatches to them with the phase the bytes arrived in.
import { protoError, type KeymeshError } from './errors.js'
import type { TunnelContext } from './noise/tunnel-preamble.js'
import type { OpenedRecord, RecordSession } from './record.js'
import { KK_MESSAGE_BYTES, answerHello, parseHello, readAnswer, sameTunnel, type TunnelKeys, type TunnelParty } from './tunnel-handshake.js'
import { afterPeerClose, afterRekey, type Confirming, type Hello, type Live, type TunnelPhase } from './tunnel-session-state.js'
import type { TunnelHandler } from './tunnel-session.js'

/** What a step needs of the session running it; tunnel-session.ts builds one per session. */
export interface SessionCore {
  readonly party: TunnelParty
  readonly handler: TunnelHandler
  phase(): TunnelPhase
  /** Keys for a context the initiator proposed, or a typed refusal (thrown). */
  resolveKeys(context: TunnelContext): TunnelKeys
  /** The only way a phase changes; retires what the new phase does not hold. */
  enter(next: TunnelPhase): void
  /** Sends; false when a typed error from `send` failed the session. */
  emit(wire: Uint8Array): boolean
  /** Seals one of the session's own HANDSHAKE records (not counted as data). */
  sealHandshake(tx: RecordSession, payload: Uint8Array): Uint8Array
  /** Fails the session on a KeymeshError (context: the one to report); rethrows anything else. */
  failOn(e: unknown, context?: TunnelContext): void
  fail(error: KeymeshError): void
}

const EMPTY = new Uint8Array(0)

/** Responder, listening: hello(ctx). A resolve() refusal fails the session before anything is sent. */
export function message1(core: SessionCore, bytes: Uint8Array): void {
  let context: TunnelContext | undefined
  let answer: ReturnType<typeof answerHello>
  try {
    const hello = parseHello(bytes)
    const keys = core.resolveKeys(hello.context)
    context = hello.context
    answer = answerHello(core.party, hello.context, keys, hello.message1)
  } catch (e) {
    return core.failOn(e, context)
  }
  core.enter({ phase: 'confirming', tx: answer.records, rx: answer.records, context })
  core.emit(answer.message2)
}

/** Initiator, hello: message 2. It is open at once, and the confirmation is its first record. */
export function message2(core: SessionCore, s: Hello, bytes: Uint8Array): void {
  let records: RecordSession
  try {
    records = readAnswer(core.party, s.hs, bytes)
  } catch (e) {
    return core.failOn(e)
  }
  core.enter({ phase: 'open', tx: records, rx: records, context: s.context })
  // The confirmation: the first record under fresh keys, so no limit can refuse it.
  if (core.emit(core.sealHandshake(records, EMPTY))) core.handler.onOpen(s.context)
}

/** Responder, confirming: the first record must be the empty HANDSHAKE confirmation. */
export function confirmation(core: SessionCore, s: Confirming, bytes: Uint8Array): void {
  let opened: OpenedRecord
  try {
    opened = s.rx.open(bytes)
  } catch (e) {
    return core.failOn(e)
  }
  if (opened.type !== 'handshake' || opened.data.length !== 0) {
    return core.fail(protoError('PROTO_ERR_HANDSHAKE_STATE', 'first record is not the handshake confirmation'))
  }
  core.enter({ phase: 'open', tx: s.tx, rx: s.rx, context: s.context })
  core.handler.onOpen(s.context)
}

/** A HANDSHAKE record once open: message 2 at the initiator; a request or the marker at the responder. */
export function handshakeRecord(core: SessionCore, s: Live, data: Uint8Array): void {
  if (core.party.initiator) return answer(core, s, data)
  return data.length === 0 ? marker(core, s) : request(core, s, data)
}

// Responder: hello(ctx') from the initiator, under the old keys.
function request(core: SessionCore, s: Live, data: Uint8Array): void {
  if (s.phase === 'switching') return core.fail(protoError('PROTO_ERR_REHANDSHAKE', 'second request while one is in flight'))
  if (s.phase !== 'open') return // closing (local): the initiator abandons its request when our CLOSE arrives
  let answer: ReturnType<typeof answerHello>
  let next: TunnelContext
  try {
    const hello = parseHello(data)
    next = hello.context
    if (!sameTunnel(next, s.context)) throw protoError('PROTO_ERR_REHANDSHAKE', 'only the key version may change')
    // At the hard limit there is no record left for the answer: refuse before any key work.
    if (!s.tx.hasRoom(1, KK_MESSAGE_BYTES)) throw protoError('PROTO_ERR_RECORD_LIMIT', 'no record left for the answer')
    answer = answerHello(core.party, next, core.resolveKeys(next), hello.message1)
  } catch (e) {
    return core.failOn(e)
  }
  const wire = core.sealHandshake(s.tx, answer.message2) // our last record under the old keys; room checked
  core.enter({ phase: 'switching', tx: answer.records, rx: s.rx, context: s.context, next, localEnded: false })
  core.emit(wire)
}

// Initiator: message 2 from the responder, its last record under the old keys.
function answer(core: SessionCore, s: Live, data: Uint8Array): void {
  if (s.phase !== 'requesting' || data.length === 0) {
    return core.fail(protoError('PROTO_ERR_REHANDSHAKE', 'HANDSHAKE record with no re-handshake in flight'))
  }
  let records: RecordSession
  let marker: Uint8Array | undefined
  try {
    // The marker, our last record under the old keys, is sealed first (write() kept a
    // record for it): a message 2 that then fails to verify fails the session anyway.
    marker = s.localEnded ? undefined : core.sealHandshake(s.tx, EMPTY)
    records = readAnswer(core.party, s.hs, data)
  } catch (e) {
    return core.failOn(e)
  }
  core.enter(afterRekey(s, records))
  if (marker === undefined || core.emit(marker)) core.handler.onRekeyed(s.next)
}

// Responder: the initiator's switch marker, its last record under the old keys.
function marker(core: SessionCore, s: Live): void {
  if (s.phase !== 'switching') return core.fail(protoError('PROTO_ERR_REHANDSHAKE', 'switch marker with no re-handshake in flight'))
  core.enter(afterRekey(s, s.tx))
  core.handler.onRekeyed(s.next)
}

/** CLOSE from the peer; a responder still waiting for the marker reports the re-key first. */
export function peerClosed(core: SessionCore, s: Live, code: number, reason: string): void {
  const { next, rekeyedTo } = afterPeerClose(s)
  core.enter(next)
  if (rekeyedTo !== undefined) {
    core.handler.onRekeyed(rekeyedTo)
    const now = core.phase()
    if (now.phase === 'failed' || (now.phase === 'closed' && now.destroyed)) return // the handler ended it all
  }
  core.handler.onEnd(code, reason)
}
