// CryptoSuite on @stablelib (pure JS): the portable provider. X25519 and
// ChaCha20-Poly1305 come from @stablelib; SHA-256, HMAC and HKDF are the node
// provider's own functions (node:crypto), as suite.ts allows: hashing is native
// in Node, and sharing it rather than copying it keeps one implementation.
// Ed25519 and ECDSA P-256 are delegated to node:crypto as well (signing.ts):
// @stablelib has no P-256, and @stablelib/ed25519 is not a dependency.
//
// It must give byte-identical output and the same typed errors as the node
// provider; both use the checks in checks.ts for that, and
// test/protocol/crypto/providers.test.ts compares the two on random inputs.
import { ChaCha20Poly1305 } from '@stablelib/chacha20poly1305'
import { scalarMult, scalarMultBase } from '@stablelib/x25519'

import { protoError } from '../errors.js'
import { checkKey, checkNonce, checkRoom, checkSealed, isAllZero, joinPlaintext } from './checks.js'
import { nodeRandom, nodeSuite } from './node-provider.js'
import {
  AEAD_KEY_BYTES,
  AEAD_TAG_BYTES,
  X25519_KEY_BYTES,
  type CryptoSuite,
  type KeyPair,
  type RandomSource,
} from './suite.js'

const EMPTY = new Uint8Array(0)

export interface StablelibSuiteOptions {
  /** Random source; defaults to node:crypto's CSPRNG (stablelib adds nothing there). */
  random?: RandomSource
}

/**
 * Runs `use` with a ChaCha20Poly1305 instance for `key` and wipes the instance's
 * copy of the key afterwards, whether `use` returns or throws. (Stablelib's own
 * per-call Poly1305 key is internal to it and not ours to wipe.)
 */
function withAead<T>(key: Uint8Array, use: (aead: ChaCha20Poly1305) => T): T {
  checkKey(key, 'AEAD key', AEAD_KEY_BYTES)
  const aead = new ChaCha20Poly1305(key)
  try {
    return use(aead)
  } finally {
    aead.clean()
  }
}

export function createStablelibSuite(options: StablelibSuiteOptions = {}): CryptoSuite {
  const random = options.random ?? nodeRandom

  // scalarMultBase clamps its own copy of the scalar (RFC 7748 §5), so the
  // caller's secret is used as given, exactly as OpenSSL does.
  const publicFromSecret = (secretKey: Uint8Array): Uint8Array => {
    checkKey(secretKey, 'X25519 secret key')
    return scalarMultBase(secretKey)
  }

  // The caller keeps (and may wipe) its own buffer, so the pair gets a copy.
  const x25519FromSecret = (secretKey: Uint8Array): KeyPair => {
    const publicKey = publicFromSecret(secretKey)
    return { publicKey, secretKey: new Uint8Array(secretKey) }
  }

  return {
    name: 'stablelib',

    randomBytes: random,

    x25519Generate(): KeyPair {
      // An injected source (a test's fixed random) may hand out the same array
      // more than once, so the pair gets a copy and that array is left alone,
      // exactly as in the node provider. The default source's array is fresh
      // and ours: it becomes the secret itself, leaving no copy to wipe.
      if (options.random) return x25519FromSecret(random(X25519_KEY_BYTES))
      const secretKey = nodeRandom(X25519_KEY_BYTES)
      return { publicKey: publicFromSecret(secretKey), secretKey }
    },

    x25519FromSecret,

    // Nothing is cached: the secret lives only in the caller's array.
    x25519Forget(): void {},

    x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
      checkKey(secretKey, 'X25519 secret key')
      checkKey(publicKey, 'X25519 public key')
      // scalarMult masks the top bit of the u-coordinate and reduces
      // non-canonical values mod p as RFC 7748 §5 says; it never rejects a point,
      // so low-order inputs show up only as an all-zero result, caught here.
      const shared = scalarMult(secretKey, publicKey)
      if (isAllZero(shared)) throw protoError('PROTO_ERR_LOW_ORDER_POINT')
      return shared
    },

    aeadSeal(key, nonce, plaintext, ad = EMPTY): Uint8Array {
      return withAead(key, (aead) => {
        checkNonce(nonce)
        return aead.seal(nonce, plaintext, ad)
      })
    },

    aeadSealInto(key, nonce, plaintext, ad, out, offset): void {
      withAead(key, (aead) => {
        checkNonce(nonce)
        const whole = joinPlaintext(plaintext)
        const n = whole.length + AEAD_TAG_BYTES
        checkRoom(out, offset, n)
        aead.seal(nonce, whole, ad, out.subarray(offset, offset + n))
      })
    },

    aeadOpen(key, nonce, sealed, ad = EMPTY): Uint8Array {
      return withAead(key, (aead) => {
        checkNonce(nonce)
        checkSealed(sealed)
        // Stablelib verifies the tag before it decrypts, so a failure leaves
        // no partial plaintext anywhere.
        const plaintext = aead.open(nonce, sealed, ad)
        if (plaintext === null) throw protoError('PROTO_ERR_DECRYPT')
        return plaintext
      })
    },

    sha256: nodeSuite.sha256,
    hmacSha256: nodeSuite.hmacSha256,
    hkdfSha256: nodeSuite.hkdfSha256,
    ed25519Public: nodeSuite.ed25519Public,
    ed25519Sign: nodeSuite.ed25519Sign,
    ed25519Verify: nodeSuite.ed25519Verify,
    p256Public: nodeSuite.p256Public,
    p256Sign: nodeSuite.p256Sign,
    p256Verify: nodeSuite.p256Verify,
    signingForget: nodeSuite.signingForget,
  }
}

/** The process-wide portable suite. */
export const stablelibSuite: CryptoSuite = createStablelibSuite()
