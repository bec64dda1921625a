// Input checks shared by every CryptoSuite provider. They live apart from the
// providers so that both throw the same typed errors with the same details for
// the same bad input, which is part of the suite contract (see suite.ts).
// Pure: no node:crypto, no I/O. Details name the argument, never its bytes.
import { protoError } from '../errors.js'
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, X25519_KEY_BYTES, type Plaintext } from './suite.js'

/** The bytes of a plaintext given whole or in parts. */
export function plaintextLength(p: Plaintext): number {
  if (p instanceof Uint8Array) return p.length
  let n = 0
  for (const part of p) n += part.length
  return n
}

/** A plaintext as one buffer: itself, or its parts joined (a copy). */
export function joinPlaintext(p: Plaintext): Uint8Array {
  if (p instanceof Uint8Array) return p
  const out = new Uint8Array(plaintextLength(p))
  let at = 0
  for (const part of p) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** Throws PROTO_ERR_INVALID_KEY unless `key` is a Uint8Array of `bytes` bytes. */
export function checkKey(key: Uint8Array, what = 'key', bytes = X25519_KEY_BYTES): void {
  if (!(key instanceof Uint8Array) || key.length !== bytes) {
    throw protoError('PROTO_ERR_INVALID_KEY', `${what} must be ${bytes} bytes`)
  }
}

/** Throws PROTO_ERR_INVALID_NONCE unless `nonce` is a 12-byte Uint8Array. */
export function checkNonce(nonce: Uint8Array): void {
  if (!(nonce instanceof Uint8Array) || nonce.length !== AEAD_NONCE_BYTES) {
    throw protoError('PROTO_ERR_INVALID_NONCE', `nonce must be ${AEAD_NONCE_BYTES} bytes`)
  }
}

/**
 * Throws PROTO_ERR_DECRYPT when `sealed` cannot even hold a tag. This is an
 * authentication failure, not an argument error: on the wire a truncated
 * record is indistinguishable from a forged one.
 */
export function checkSealed(sealed: Uint8Array): void {
  if (sealed.length < AEAD_TAG_BYTES) throw protoError('PROTO_ERR_DECRYPT', 'shorter than the tag')
}

/** Constant-time over the length: every byte is read whatever the values. */
export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i] as number
  return acc === 0
}

/** Throws PROTO_ERR_INVALID_ARGUMENT unless `out` has `bytes` bytes of room from `offset`. */
export function checkRoom(out: Uint8Array, offset: number, bytes: number): void {
  if (!(out instanceof Uint8Array) || !Number.isSafeInteger(offset) || offset < 0 || offset + bytes > out.length) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'output buffer too small for the sealed message')
  }
}
