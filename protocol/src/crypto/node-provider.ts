// CryptoSuite on node:crypto (OpenSSL): the default provider.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  randomFillSync,
  type KeyObject,
} from 'node:crypto'

import { protoError } from '../errors.js'
import { checkKey, checkNonce, checkRoom, checkSealed, isAllZero, plaintextLength } from './checks.js'
import { ed25519Public, ed25519Sign, ed25519Verify, p256Public, p256Sign, p256Verify, signingForget } from './signing.js'
import {
  AEAD_KEY_BYTES,
  AEAD_TAG_BYTES,
  X25519_KEY_BYTES,
  type CryptoSuite,
  type KeyPair,
  type RandomSource,
} from './suite.js'

const EMPTY = new Uint8Array(0)
const SEAL_OPTIONS = Object.freeze({ authTagLength: AEAD_TAG_BYTES })

// A plain Uint8Array, not Buffer.allocUnsafe: small unsafe Buffers are slices of
// a shared pool, and secret keys drawn from here should not sit in memory that
// every other pooled Buffer's `.buffer` exposes.
export function nodeRandom(n: number): Uint8Array {
  return randomFillSync(new Uint8Array(n))
}

// Keys reach OpenSSL as JWK. DER would allow wiping the wrapping buffer, but
// OpenSSL 3's DER decoder costs ~10x the DH itself on this machine (measured:
// ~780 µs to import a private key from PKCS#8, ~75 µs from JWK, ~60 µs per DH),
// which would make the handshake mostly key parsing. The trade: a base64url copy
// of the secret exists briefly as an immutable JS string until collected.
// Node requires `x` on a private JWK but derives the public key from `d` itself;
// a well-formed placeholder stands in for it (checked by a test).
const JWK_X_PLACEHOLDER = 'A'.repeat(43)

// Private keys already known to OpenSSL, by a SHA-256 digest of the secret: a
// static key used in every handshake, or an ephemeral from x25519Generate, skips
// the import even when the handshake holds its own copy of the bytes. The digest
// of a 256-bit secret reveals nothing of it; the map is bounded, oldest first out.
const PRIVATE_KEY_CACHE = 256
const privateKeys = new Map<string, KeyObject>()

const digestOf = (secretKey: Uint8Array): string => createHash('sha256').update(secretKey).digest('base64')

function remember(digest: string, key: KeyObject): void {
  privateKeys.delete(digest)
  privateKeys.set(digest, key)
  if (privateKeys.size > PRIVATE_KEY_CACHE) privateKeys.delete(privateKeys.keys().next().value as string)
}

function privateKeyObject(secretKey: Uint8Array): KeyObject {
  checkKey(secretKey, 'X25519 secret key')
  const digest = digestOf(secretKey)
  const cached = privateKeys.get(digest)
  if (cached) return cached
  const d = Buffer.from(secretKey.buffer, secretKey.byteOffset, secretKey.length).toString('base64url')
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: JWK_X_PLACEHOLDER }, format: 'jwk' })
  remember(digest, key)
  return key
}

// Public keys by their base64url text: a peer's static key recurs in every
// handshake with it (twice per side in KKpsk0), and importing costs ~20 µs.
// Public keys are not secret, so keeping them needs no care beyond a bound.
const PUBLIC_KEY_CACHE = 1024
const publicKeys = new Map<string, KeyObject>()

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  checkKey(publicKey, 'X25519 public key')
  const x = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('base64url')
  let key = publicKeys.get(x)
  if (!key) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' })
    publicKeys.set(x, key)
    if (publicKeys.size > PUBLIC_KEY_CACHE) publicKeys.delete(publicKeys.keys().next().value as string)
  }
  return key
}

function rawPublic(key: KeyObject): Uint8Array {
  return new Uint8Array(Buffer.from(key.export({ format: 'jwk' }).x as string, 'base64url'))
}

export interface NodeSuiteOptions {
  /** Random source; defaults to node:crypto's CSPRNG. */
  random?: RandomSource
  /**
   * OpenSSL's X25519; injectable so that a test can play an OpenSSL that returns an
   * all-zero secret instead of failing, and see the provider's own check refuse it.
   */
  diffieHellman?: typeof diffieHellman
}

export function createNodeSuite(options: NodeSuiteOptions = {}): CryptoSuite {
  const random = options.random ?? nodeRandom
  const dh = options.diffieHellman ?? diffieHellman

  // The caller keeps (and may wipe) its own buffer, so the pair gets a copy.
  const x25519FromSecret = (secretKey: Uint8Array): KeyPair => {
    const key = privateKeyObject(secretKey)
    return { publicKey: rawPublic(createPublicKey(key)), secretKey: new Uint8Array(secretKey) }
  }

  return {
    name: 'node',

    randomBytes: random,

    // A random 32-byte scalar imported as a key (RFC 7748 clamps it on use), not
    // generateKeyPairSync: on Node 20, exporting a key made by generateKeyPairSync
    // can deadlock the process when a GC finalises the generating job while the
    // export holds the key's mutex (seen here: the main thread parked in a futex
    // under ~KeyGenJob inside ExportJWKEdKey). The cost is the same either way.
    // An injected source (a test's fixed random) may hand out the same array more
    // than once, so x25519FromSecret's copy leaves that array alone.
    x25519Generate(): KeyPair {
      const scalar = random(X25519_KEY_BYTES)
      const pair = x25519FromSecret(scalar)
      if (!options.random) scalar.fill(0)
      return pair
    },

    x25519FromSecret,

    x25519Forget(secretKey: Uint8Array): void {
      if (secretKey instanceof Uint8Array && secretKey.length === X25519_KEY_BYTES) privateKeys.delete(digestOf(secretKey))
    },

    x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
      const priv = privateKeyObject(secretKey)
      const pub = publicKeyObject(publicKey)
      let shared: Buffer
      try {
        shared = dh({ privateKey: priv, publicKey: pub })
      } catch (cause) {
        // OpenSSL refuses to return an all-zero shared secret; that is the only
        // way derivation fails once both keys parsed.
        throw protoError('PROTO_ERR_LOW_ORDER_POINT', undefined, { cause })
      }
      if (isAllZero(shared)) throw protoError('PROTO_ERR_LOW_ORDER_POINT')
      return new Uint8Array(shared.buffer, shared.byteOffset, shared.length)
    },

    aeadSeal(key, nonce, plaintext, ad = EMPTY): Uint8Array {
      const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_BYTES)
      this.aeadSealInto(key, nonce, plaintext, ad, out, 0)
      return out
    },

    // Parts go through one cipher context (ChaCha20 is a stream cipher: each update's
    // output is as long as its input), so a record spanning two reads costs no join.
    aeadSealInto(key, nonce, plaintext, ad, out, offset): void {
      checkKey(key, 'AEAD key', AEAD_KEY_BYTES)
      checkNonce(nonce)
      const n = plaintextLength(plaintext)
      checkRoom(out, offset, n + AEAD_TAG_BYTES)
      const c = createCipheriv('chacha20-poly1305', key, nonce, SEAL_OPTIONS)
      c.setAAD(ad, { plaintextLength: n })
      if (plaintext instanceof Uint8Array) out.set(c.update(plaintext), offset)
      else {
        let at = offset
        for (const part of plaintext) {
          out.set(c.update(part), at)
          at += part.length
        }
      }
      c.final()
      out.set(c.getAuthTag(), offset + n)
    },

    aeadOpen(key, nonce, sealed, ad = EMPTY): Uint8Array {
      checkKey(key, 'AEAD key', AEAD_KEY_BYTES)
      checkNonce(nonce)
      checkSealed(sealed)
      const n = sealed.length - AEAD_TAG_BYTES
      const d = createDecipheriv('chacha20-poly1305', key, nonce, SEAL_OPTIONS)
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

    ed25519Public,
    ed25519Sign,
    ed25519Verify,
    p256Public,
    p256Sign,
    p256Verify,
    signingForget,

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
