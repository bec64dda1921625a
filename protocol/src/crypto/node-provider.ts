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
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
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

export function nodeRandom(n: number): Uint8Array {
  return randomFillSync(Buffer.allocUnsafe(n))
}

export function checkKey(key: Uint8Array, what = 'key'): void {
  if (!(key instanceof Uint8Array) || key.length !== X25519_KEY_BYTES) {
    throw protoError('PROTO_ERR_INVALID_KEY', `${what} must be ${X25519_KEY_BYTES} bytes`)
  }
}

export function checkNonce(nonce: Uint8Array): void {
  if (!(nonce instanceof Uint8Array) || nonce.length !== AEAD_NONCE_BYTES) {
    throw protoError('PROTO_ERR_INVALID_NONCE', `nonce must be ${AEAD_NONCE_BYTES} bytes`)
  }
}

export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i] as number
  return acc === 0
}

function privateKeyObject(secretKey: Uint8Array): KeyObject {
  checkKey(secretKey, 'X25519 secret key')
  return createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, secretKey]),
    format: 'der',
    type: 'pkcs8',
  })
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

  const x25519FromSecret = (secretKey: Uint8Array): KeyPair => {
    const publicKey = rawPublic(createPublicKey(privateKeyObject(secretKey)))
    return { publicKey, secretKey: new Uint8Array(secretKey) }
  }

  return {
    name: 'node',

    randomBytes: random,

    x25519Generate(): KeyPair {
      if (options.random) return x25519FromSecret(random(X25519_KEY_BYTES))
      const { privateKey, publicKey } = generateKeyPairSync('x25519')
      const der = privateKey.export({ format: 'der', type: 'pkcs8' })
      return {
        publicKey: rawPublic(publicKey),
        secretKey: new Uint8Array(der.subarray(der.length - X25519_KEY_BYTES)),
      }
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
      if (key.length !== AEAD_KEY_BYTES) throw protoError('PROTO_ERR_INVALID_KEY', 'AEAD key must be 32 bytes')
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
      if (key.length !== AEAD_KEY_BYTES) throw protoError('PROTO_ERR_INVALID_KEY', 'AEAD key must be 32 bytes')
      checkNonce(nonce)
      if (sealed.length < AEAD_TAG_BYTES) throw protoError('PROTO_ERR_DECRYPT', 'shorter than the tag')
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
