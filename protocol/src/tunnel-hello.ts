// The tunnel's handshake messages on the wire (tunnel-session.ts says when each is
// sent). hello(ctx) = u16 BE preamble length ‖ encodeTunnelPreamble(ctx) ‖ KK
// message 1; message 2 is the bare KK message. The preamble is cleartext so the
// responder can find the pair key before it reads message 1; it is bound into the
// prologue, so a preamble changed in flight fails message 1 with PROTO_ERR_DECRYPT.
import { protoError } from './errors.js'
import { MAX_PREAMBLE_BYTES, decodeTunnelPreamble, encodeTunnelPreamble, type TunnelContext } from './noise/tunnel-preamble.js'
import { RECORD_OVERHEAD } from './record.js'

/** A KKpsk0 message with an empty payload: e (32 bytes) and the payload's AEAD tag (16). */
export const KK_MESSAGE_BYTES = 48
/** The longest hello: u16 preamble length, the longest preamble, KK message 1. */
export const MAX_TUNNEL_HELLO_BYTES = 2 + MAX_PREAMBLE_BYTES + KK_MESSAGE_BYTES
/** The smallest maxRecordBytes a tunnel takes: a re-handshake request is one record. */
export const MIN_TUNNEL_RECORD_BYTES = RECORD_OVERHEAD + MAX_TUNNEL_HELLO_BYTES

/** Two contexts of one tunnel: everything but the key version agrees. */
export function sameTunnel(a: TunnelContext, b: TunnelContext): boolean {
  return a.pairId === b.pairId && a.fromService === b.fromService && a.toService === b.toService && a.fromAgent === b.fromAgent
}

export function checkKkMessage(bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KK_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', `handshake message must be ${KK_MESSAGE_BYTES} bytes`)
  }
}

export function hello(context: TunnelContext, message: Uint8Array): Uint8Array {
  const preamble = encodeTunnelPreamble(context)
  const out = new Uint8Array(2 + preamble.length + message.length)
  out[0] = preamble.length >>> 8
  out[1] = preamble.length & 0xff
  out.set(preamble, 2)
  out.set(message, 2 + preamble.length)
  return out
}

export function parseHello(bytes: Uint8Array): { context: TunnelContext; message: Uint8Array } {
  if (!(bytes instanceof Uint8Array) || bytes.length < 2) throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'hello truncated')
  const n = ((bytes[0] as number) << 8) | (bytes[1] as number)
  if (n > MAX_PREAMBLE_BYTES || bytes.length !== 2 + n + KK_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MESSAGE', 'hello has the wrong length')
  }
  return { context: decodeTunnelPreamble(bytes.subarray(2, 2 + n)), message: bytes.subarray(2 + n) }
}
