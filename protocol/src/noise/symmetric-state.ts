// Noise SymmetricState (spec rev. 34, §5.2) for HASH = SHA-256 (HASHLEN = 32).
//
// Noise's HKDF (§4.3) is built here from the suite's HMAC rather than calling the
// suite's RFC 5869 hkdfSha256: Noise's HKDF is RFC 5869 with an empty info and the
// chaining key as salt, but it needs 2 or 3 outputs that are split apart, and doing
// it with HMAC directly keeps every intermediate buffer ours to wipe. It is also
// faster in node:crypto: three createHmac calls took ~17 µs here against ~26 µs
// for one hkdfSync, which sets up a key object and a job per call.
import { protoError } from '../errors.js'
import { SHA256_BYTES, type CryptoSuite } from '../crypto/suite.js'
import { CipherState } from './cipher-state.js'

const HASHLEN = SHA256_BYTES
const EMPTY = new Uint8Array(0)
const BYTE_1 = Uint8Array.of(0x01)
const BYTE_2 = Uint8Array.of(0x02)
const BYTE_3 = Uint8Array.of(0x03)

/** HKDF(chaining_key, input_key_material, 2) per §4.3. */
export function noiseHkdf2(suite: CryptoSuite, ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const tempKey = suite.hmacSha256(ck, ikm)
  const out1 = suite.hmacSha256(tempKey, BYTE_1)
  const out2 = suite.hmacSha256(tempKey, out1, BYTE_2)
  tempKey.fill(0)
  return [out1, out2]
}

/** HKDF(chaining_key, input_key_material, 3) per §4.3. */
export function noiseHkdf3(suite: CryptoSuite, ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const tempKey = suite.hmacSha256(ck, ikm)
  const out1 = suite.hmacSha256(tempKey, BYTE_1)
  const out2 = suite.hmacSha256(tempKey, out1, BYTE_2)
  const out3 = suite.hmacSha256(tempKey, out2, BYTE_3)
  tempKey.fill(0)
  return [out1, out2, out3]
}

export class SymmetricState {
  readonly #suite: CryptoSuite
  readonly #cipher: CipherState
  #ck: Uint8Array
  #h: Uint8Array

  /** InitializeSymmetric(protocol_name). */
  constructor(suite: CryptoSuite, protocolName: string) {
    this.#suite = suite
    const name = new TextEncoder().encode(protocolName)
    if (name.length <= HASHLEN) {
      // Names that fit are zero-padded to HASHLEN, not hashed (§5.2).
      this.#h = new Uint8Array(HASHLEN)
      this.#h.set(name)
    } else {
      this.#h = suite.sha256(name)
    }
    this.#ck = new Uint8Array(this.#h)
    this.#cipher = new CipherState(suite)
  }

  hasKey(): boolean {
    return this.#cipher.hasKey()
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = noiseHkdf2(this.#suite, this.#ck, ikm)
    this.#replaceCk(ck)
    this.#cipher.initializeKey(tempK) // copies the key
    tempK.fill(0)
  }

  mixHash(data: Uint8Array): void {
    this.#h = this.#suite.sha256(this.#h, data)
  }

  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, tempH, tempK] = noiseHkdf3(this.#suite, this.#ck, ikm)
    this.#replaceCk(ck)
    this.mixHash(tempH)
    this.#cipher.initializeKey(tempK)
    tempH.fill(0)
    tempK.fill(0)
  }

  /** GetHandshakeHash(): a copy, so callers cannot disturb the running hash. */
  getHandshakeHash(): Uint8Array {
    return new Uint8Array(this.#h)
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.#cipher.encryptWithAd(this.#h, plaintext)
    this.mixHash(ciphertext)
    return ciphertext
  }

  /** Throws PROTO_ERR_DECRYPT (from the suite) when the tag does not verify; h is then unchanged. */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.#cipher.decryptWithAd(this.#h, ciphertext)
    this.mixHash(ciphertext)
    return plaintext
  }

  /**
   * Split(): the two transport CipherStates (initiator→responder first). The chaining
   * key and the handshake cipher are wiped: nothing may be mixed in afterwards.
   */
  split(): [CipherState, CipherState] {
    if (this.#ck.length === 0) throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'split called twice')
    const [k1, k2] = noiseHkdf2(this.#suite, this.#ck, EMPTY)
    const c1 = new CipherState(this.#suite, k1)
    const c2 = new CipherState(this.#suite, k2)
    k1.fill(0)
    k2.fill(0)
    this.destroy()
    return [c1, c2]
  }

  /** Wipes the chaining key and handshake cipher key; h stays for GetHandshakeHash. */
  destroy(): void {
    this.#ck.fill(0)
    this.#ck = EMPTY
    this.#cipher.destroy()
  }

  #replaceCk(next: Uint8Array): void {
    this.#ck.fill(0)
    this.#ck = next
  }
}
