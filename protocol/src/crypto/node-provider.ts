// CryptoSuite on node:crypto (OpenSSL): the default provider.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomFillSync,
  type KeyObject,
} from 'node:crypto'

import { protoError } from '../errors.js'
import { checkKey, checkNonce, checkSealed, isAllZero } from './checks.js'
import {
  AEAD_KEY_BYTES,
  AEAD_TAG_BYTES,
  X25519_KEY_BYTES,
  type CryptoSuite,
  type KeyPair,
  type RandomSource,
} from './suite.js'

// DER prefixes that wrap a raw 32-byte X25519 key (RFC 8410): OpenSSL takes keys
// only as DER/PEM/JWK, and DER with a fixed prefix is the cheapest of those.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

const EMPTY = new Uint8Array(0)

// The checks moved to checks.ts so the stablelib provider shares them; this
// re-export keeps imports written against this module working.
export { checkKey, checkNonce, isAllZero } from './checks.js'

// A plain Uint8Array, not Buffer.allocUnsafe: small unsafe Buffers are slices of
// a shared pool, and secret keys drawn from here should not sit in memory that
// every other pooled Buffer's `.buffer` exposes.
export function nodeRandom(n: number): Uint8Array {
  return randomFillSync(new Uint8Array(n))
}

function privateKeyObject(secretKey: Uint8Array): KeyObject {
  checkKey(secretKey, 'X25519 secret key')
  // Buffer.alloc (never pooled) and wiped once OpenSSL holds its own copy, so the
  // DER wrapping leaves no stray copy of the secret behind.
  const der = Buffer.alloc(PKCS8_X25519_PREFIX.length + X25519_KEY_BYTES)
  PKCS8_X25519_PREFIX.copy(der, 0)
  der.set(secretKey, PKCS8_X25519_PREFIX.length)
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })
  } finally {
    der.fill(0)
  }
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  checkKey(publicKey, 'X25519 public key')
  return createPublicKey({
    key: Buffer.concat([SPKI_X25519_PREFIX, publicKey]),
    format: 'der',
    type: 'spki',
  })
}

function rawPublic(key: KeyObject): Uint8Array {
  const der = key.export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(der.length - X25519_KEY_BYTES))
}

export interface NodeSuiteOptions {
  /** Random source; defaults to node:crypto's CSPRNG. */
  random?: RandomSource
}

export function createNodeSuite(options: NodeSuiteOptions = {}): CryptoSuite {
  const random = options.random ?? nodeRandom

  // The caller keeps (and may wipe) its own buffer, so the pair gets a copy.
  const x25519FromSecret = (secretKey: Uint8Array): KeyPair => {
    const publicKey = rawPublic(createPublicKey(privateKeyObject(secretKey)))
    return { publicKey, secretKey: new Uint8Array(secretKey) }
  }

  return {
    name: 'node',

    randomBytes: random,

    x25519Generate(): KeyPair {
      // An injected source (a test's fixed random) may hand out the same array
      // more than once, so the pair gets a copy and that array is left alone.
      if (options.random) return x25519FromSecret(random(X25519_KEY_BYTES))
      const { privateKey, publicKey } = generateKeyPairSync('x25519')
      const der = privateKey.export({ format: 'der', type: 'pkcs8' })
      const secretKey = new Uint8Array(der.subarray(der.length - X25519_KEY_BYTES))
      der.fill(0)
      return { publicKey: rawPublic(publicKey), secretKey }
    },

    x25519FromSecret,

    x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
      const priv = privateKeyObject(secretKey)
      const pub = publicKeyObject(publicKey)
      let shared: Buffer
      try {
        shared = diffieHellman({ privateKey: priv, publicKey: pub })
      } catch (cause) {
        // OpenSSL refuses to return an all-zero shared secret; that is the only
        // way derivation fails once both keys parsed.
        throw protoError('PROTO_ERR_LOW_ORDER_POINT', undefined, { cause })
      }
      if (isAllZero(shared)) throw protoError('PROTO_ERR_LOW_ORDER_POINT')
      return new Uint8Array(shared.buffer, shared.byteOffset, shared.length)
    },

    aeadSeal(key, nonce, plaintext, ad = EMPTY): Uint8Array {
      checkKey(key, 'AEAD key', AEAD_KEY_BYTES)
      checkNonce(nonce)
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES })
      c.setAAD(ad, { plaintextLength: plaintext.length })
      const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_BYTES)
      const body = c.update(plaintext)
      body.copy(out, 0)
      c.final()
      c.getAuthTag().copy(out, plaintext.length)
      return out
    },

    aeadOpen(key, nonce, sealed, ad = EMPTY): Uint8Array {
      checkKey(key, 'AEAD key', AEAD_KEY_BYTES)
      checkNonce(nonce)
      checkSealed(sealed)
      const n = sealed.length - AEAD_TAG_BYTES
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES })
      d.setAuthTag(sealed.subarray(n))
      d.setAAD(ad, { plaintextLength: n })
      const body = d.update(sealed.subarray(0, n))
      try {
        d.final()
      } catch (cause) {
        body.fill(0)
        throw protoError('PROTO_ERR_DECRYPT', undefined, { cause })
      }
      return body
    },

    sha256(...parts: Uint8Array[]): Uint8Array {
      const h = createHash('sha256')
      for (const p of parts) h.update(p)
      return h.digest()
    },

    hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
      const h = createHmac('sha256', key)
      for (const p of parts) h.update(p)
      return h.digest()
    },

    hkdfSha256(ikm, salt, info, length): Uint8Array {
      if (!Number.isInteger(length) || length < 1 || length > 255 * 32) {
        throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'HKDF length must be 1..8160')
      }
      return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length))
    },
  }
}

/** The process-wide default suite. */
export const nodeSuite: CryptoSuite = createNodeSuite()
