// The tunnel's handshakes on the wire, and each step as bytes in, bytes and keys out:
// tunnel-session.ts decides when a step runs and what it means; the steps here
// only encode, decode and do the Noise work, wiping what they made if they fail.
//
// Wire protocol. One transport message = one `send` call = one WebSocket binary
// message. hello(ctx) = u16 BE preamble length ‖ encodeTunnelPreamble(ctx) ‖ KK message 1
// (prologue bound to ctx, empty payload), so the responder finds the pair key before it
// reads message 1 and a preamble changed in flight fails it with PROTO_ERR_DECRYPT.
// Every KK message is 48 bytes. The phases and the event × phase table that run this
// exchange are in tunnel-session-state.ts.
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
import type { CryptoSuite, KeyPair } from './crypto/suite.js'
import { protoError } from './errors.js'
import type { HandshakeState } from './noise/handshake-state.js'
import { createKkInitiator, createKkResponder } from './noise/keymesh-handshakes.js'
import { MAX_PREAMBLE_BYTES, decodeTunnelPreamble, encodeTunnelPreamble, type TunnelContext } from './noise/tunnel-preamble.js'
import { RECORD_OVERHEAD, RecordSession, type RecordLimits } from './record.js'

/** A KKpsk0 message with an empty payload: e (32 bytes) and the payload's AEAD tag (16). */
export const KK_MESSAGE_BYTES = 48
/** The longest hello: u16 preamble length, the longest preamble, KK message 1. */
export const MAX_TUNNEL_HELLO_BYTES = 2 + MAX_PREAMBLE_BYTES + KK_MESSAGE_BYTES
/** The smallest maxRecordBytes a tunnel takes: a re-handshake request is one record. */
export const MIN_TUNNEL_RECORD_BYTES = RECORD_OVERHEAD + MAX_TUNNEL_HELLO_BYTES

export interface TunnelKeys {
  /** The pair key of context.keyVersion (32 bytes); copied, the caller may wipe its own. */
  readonly psk: Uint8Array
  /** The peer agent's static public key. */
  readonly remoteStatic: Uint8Array
}

/** This side of every handshake of one tunnel. */
export interface TunnelParty {
  readonly suite: CryptoSuite
  readonly staticKey: KeyPair
  readonly initiator: boolean
  /** For the records of every key version. */
  readonly limits: Required<RecordLimits>
}

/** A KKpsk0 handshake for `context` (bound into the prologue) with `keys`, copied now. */
export function kk(party: TunnelParty, context: TunnelContext, keys: TunnelKeys): HandshakeState {
  if (typeof keys !== 'object' || keys === null) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'tunnel keys')
  const o = { suite: party.suite, staticKey: party.staticKey, remoteStatic: keys.remoteStatic, psk: keys.psk, context }
  return party.initiator ? createKkInitiator(o) : createKkResponder(o)
}

/** Responder: reads KK message 1, writes message 2; the records of the new keys. Nothing is left unwiped on an error. */
export function answerHello(party: TunnelParty, context: TunnelContext, keys: TunnelKeys, message1: Uint8Array): { message2: Uint8Array; records: RecordSession } {
  const hs = kk(party, context, keys)
  try {
    hs.readMessage(message1)
    const message2 = hs.writeMessage()
    return { message2, records: split(party, hs) }
  } finally {
    hs.destroy() // split or failed: nothing of it is needed any more
  }
}

/** Initiator: reads message 2 (exactly KK_MESSAGE_BYTES) into `hs`; the records of the new keys. */
export function readAnswer(party: TunnelParty, hs: HandshakeState, message2: Uint8Array): RecordSession {
  if (!(message2 instanceof Uint8Array) || message2.length !== KK_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', `handshake message must be ${KK_MESSAGE_BYTES} bytes`)
  }
  hs.readMessage(message2)
  return split(party, hs)
}

function split(party: TunnelParty, hs: HandshakeState): RecordSession {
  const { send, recv } = hs.split()
  return new RecordSession({ send, recv, ...party.limits })
}

/** Two contexts of one tunnel: everything but the key version agrees. */
export function sameTunnel(a: TunnelContext, b: TunnelContext): boolean {
  return a.pairId === b.pairId && a.fromService === b.fromService && a.toService === b.toService && a.fromAgent === b.fromAgent
}

export function hello(context: TunnelContext, message1: Uint8Array): Uint8Array {
  const preamble = encodeTunnelPreamble(context)
  const out = new Uint8Array(2 + preamble.length + message1.length)
  out[0] = preamble.length >>> 8
  out[1] = preamble.length & 0xff
  out.set(preamble, 2)
  out.set(message1, 2 + preamble.length)
  return out
}

export function parseHello(bytes: Uint8Array): { context: TunnelContext; message1: Uint8Array } {
  if (!(bytes instanceof Uint8Array) || bytes.length < 2) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'hello truncated')
  const n = ((bytes[0] as number) << 8) | (bytes[1] as number)
  if (n > MAX_PREAMBLE_BYTES || bytes.length !== 2 + n + KK_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'hello has the wrong length')
  }
  return { context: decodeTunnelPreamble(bytes.subarray(2, 2 + n)), message1: bytes.subarray(2 + n) }
}
