// Noise CipherState (spec rev. 34, §5.1) over the suite's ChaCha20-Poly1305.
//
// Departure from the spec: the nonce is a JavaScript number, so it is exhausted at
// 2^53 - 1 rather than 2^64 - 1. Sessions hit the record layer's hard limit (far
// lower) long before this, so the difference is never reached in practice.
import { protoError } from '../errors.js'
import { AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES, type CryptoSuite, type Plaintext } from '../crypto/suite.js'
import { plaintextLength } from '../crypto/checks.js'

export const MAX_NONCE = Number.MAX_SAFE_INTEGER

const ZEROS_32 = new Uint8Array(32)
const EMPTY = new Uint8Array(0)

/** The 96-bit ChaCha20-Poly1305 nonce: 32 zero bits then the 64-bit counter, little-endian. */
export function encodeNonce(n: number, out: Uint8Array = new Uint8Array(AEAD_NONCE_BYTES)): Uint8Array {
  out[0] = out[1] = out[2] = out[3] = 0
  const lo = n >>> 0
  const hi = Math.floor(n / 0x1_0000_0000) >>> 0
  out[4] = lo & 0xff
  out[5] = (lo >>> 8) & 0xff
  out[6] = (lo >>> 16) & 0xff
  out[7] = lo >>> 24
  out[8] = hi & 0xff
  out[9] = (hi >>> 8) & 0xff
  out[10] = (hi >>> 16) & 0xff
  out[11] = hi >>> 24
  return out
}

export class CipherState {
  #suite: CryptoSuite
  #k: Uint8Array | null = null
  #n = 0
  // One reusable nonce buffer: the AEAD copies it, so reuse is safe and saves an
  // allocation per record on the tunnel's hot path.
  #nonce = new Uint8Array(AEAD_NONCE_BYTES)

  constructor(suite: CryptoSuite, key?: Uint8Array) {
    this.#suite = suite
    if (key) this.initializeKey(key)
  }

  initializeKey(key: Uint8Array | null): void {
    if (key !== null && key.length !== AEAD_KEY_BYTES) {
      throw protoError('PROTO_ERR_INVALID_KEY', 'cipher key must be 32 bytes')
    }
    this.#wipe()
    this.#k = key === null ? null : new Uint8Array(key)
    this.#n = 0
  }

  hasKey(): boolean {
    return this.#k !== null
  }

  /** The nonce the next encrypt or decrypt will use. */
  get nonce(): number {
    return this.#n
  }

  setNonce(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw protoError('PROTO_ERR_INVALID_NONCE', 'nonce must be a non-negative safe integer')
    this.#n = n
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.#k === null) return plaintext
    if (this.#n >= MAX_NONCE) throw protoError('PROTO_ERR_NONCE_EXHAUSTED')
    const out = this.#suite.aeadSeal(this.#k, encodeNonce(this.#n, this.#nonce), plaintext, ad)
    this.#n++
    return out
  }

  /**
   * encryptWithAd writing ciphertext || tag into `out` at `offset`; returns the
   * bytes written. Only for a keyed state (the record layer refuses unkeyed ones).
   * A plaintext in parts is encrypted as their concatenation.
   */
  encryptWithAdInto(ad: Uint8Array, plaintext: Plaintext, out: Uint8Array, offset: number): number {
    if (this.#k === null) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'cipher state has no key')
    if (this.#n >= MAX_NONCE) throw protoError('PROTO_ERR_NONCE_EXHAUSTED')
    this.#suite.aeadSealInto(this.#k, encodeNonce(this.#n, this.#nonce), plaintext, ad, out, offset)
    this.#n++
    return plaintextLength(plaintext) + AEAD_TAG_BYTES
  }

  /** On failure the nonce does not advance (spec §5.1) and PROTO_ERR_DECRYPT is thrown. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (this.#k === null) return ciphertext
    if (this.#n >= MAX_NONCE) throw protoError('PROTO_ERR_NONCE_EXHAUSTED')
    const out = this.#suite.aeadOpen(this.#k, encodeNonce(this.#n, this.#nonce), ciphertext, ad)
    this.#n++
    return out
  }

  /** Rekey() per spec §4.2: k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros). The nonce is unchanged. */
  rekey(): void {
    if (this.#k === null) return
    const nonce = new Uint8Array(AEAD_NONCE_BYTES).fill(0xff, 4)
    const next = this.#suite.aeadSeal(this.#k, nonce, ZEROS_32, EMPTY).subarray(0, AEAD_KEY_BYTES)
    this.#k.set(next)
    next.fill(0)
  }

  /** Zeroes the key; the state then has no key. */
  destroy(): void {
    this.#wipe()
    this.#k = null
  }

  #wipe(): void {
    if (this.#k) this.#k.fill(0)
  }
}
