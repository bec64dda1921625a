// Signatures on node:crypto (OpenSSL): Ed25519 (RFC 8032, pure EdDSA over the
// message) and ECDSA over P-256 with SHA-256 (FIPS 186-5), its signature in the
// IEEE P1363 form r ‖ s (64 bytes). Both providers use these functions: the
// stablelib provider has no P-256 and this project has no @stablelib/ed25519, so
// it delegates both here, as it delegates hashing (stablelib-provider.ts).
//
// Secrets are raw: an Ed25519 seed (32 bytes) and a P-256 scalar (32 bytes,
// big-endian, 1 ≤ d < n). An Ed25519 seed reaches OpenSSL as JWK, as X25519
// secrets do in node-provider.ts and for the same reason (measured here: ~150 µs
// against ~1,450 µs for PKCS#8 DER, ten signatures' worth), with a placeholder
// for the public `x` that Node derives itself; a P-256 scalar as SEC 1 DER,
// whose decoder derives the public point (JWK would need it first), the wrapping
// buffer wiped once imported. Imported keys are kept by a SHA-256 digest of the
// secret, bounded, so a batch signing with one version imports its key once;
// signingForget drops one when its material is wiped (kms-scope.ts). Public
// keys are raw too: 32 bytes for Ed25519, the 65-byte uncompressed SEC 1 point
// for P-256; spkiDer gives the SubjectPublicKeyInfo a verifier outside keymesh
// reads (as PEM).
//
// Verification never throws on malformed input (a key that is not on the curve,
// a signature of the wrong length): it answers false. OpenSSL checks r and s are
// in 1..n-1 and S < L for Ed25519 (test/protocol/crypto/wycheproof-signatures.test.ts).
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'

import { protoError } from '../errors.js'
import { checkKey } from './checks.js'

export const ED25519_SEED_BYTES = 32
export const ED25519_PUBLIC_BYTES = 32
export const ED25519_SIGNATURE_BYTES = 64
export const P256_SECRET_BYTES = 32
export const P256_PUBLIC_BYTES = 65
export const P256_SIGNATURE_BYTES = 64

// DER wrappers (RFC 8410 SPKI for Ed25519; RFC 5915 ECPrivateKey and RFC 5480 SPKI for P-256).
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const P256_SEC1_PREFIX = Buffer.from('30310201010420', 'hex')
const P256_SEC1_SUFFIX = Buffer.from('a00a06082a8648ce3d030107', 'hex')
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')
/** The group order n of P-256, big-endian. */
const P256_ORDER = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex')

function importPrivate(der: Buffer, type: 'sec1'): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type })
  } finally {
    der.fill(0)
  }
}

const KEY_CACHE = 256
const privateKeys = new Map<string, KeyObject>()
const digestOf = (kind: string, secret: Uint8Array): string => createHash('sha256').update(kind).update(secret).digest('base64')

/** The cached key of `secret`, or `make()` remembered (oldest out first). */
function cached(kind: 'ed25519' | 'p256', secret: Uint8Array, make: () => KeyObject): KeyObject {
  const digest = digestOf(kind, secret)
  let key = privateKeys.get(digest)
  if (key === undefined) {
    key = make()
    privateKeys.set(digest, key)
    if (privateKeys.size > KEY_CACHE) privateKeys.delete(privateKeys.keys().next().value as string)
  }
  return key
}

/** Drops the imported keys of `secret` (both kinds): called when its material is wiped. */
export function signingForget(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length !== ED25519_SEED_BYTES) return
  privateKeys.delete(digestOf('ed25519', secret))
  privateKeys.delete(digestOf('p256', secret))
}

const JWK_X_PLACEHOLDER = 'A'.repeat(43)

function ed25519Private(seed: Uint8Array): KeyObject {
  checkKey(seed, 'Ed25519 seed', ED25519_SEED_BYTES)
  return cached('ed25519', seed, () => {
    const d = Buffer.from(seed.buffer, seed.byteOffset, seed.length).toString('base64url')
    return createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d, x: JWK_X_PLACEHOLDER }, format: 'jwk' })
  })
}

/** True when `d` is a valid P-256 secret scalar: 32 bytes, 1 ≤ d < n. */
export function isP256Secret(d: Uint8Array): boolean {
  if (!(d instanceof Uint8Array) || d.length !== P256_SECRET_BYTES) return false
  let zero = true
  for (const b of d) if (b !== 0) zero = false
  return !zero && Buffer.compare(Buffer.from(d.buffer, d.byteOffset, d.length), P256_ORDER) < 0
}

function p256Private(d: Uint8Array): KeyObject {
  if (!isP256Secret(d)) throw protoError('PROTO_ERR_INVALID_KEY', 'P-256 secret must be 32 bytes, 1 ≤ d < n')
  return cached('p256', d, () => importPrivate(Buffer.concat([P256_SEC1_PREFIX, d, P256_SEC1_SUFFIX]), 'sec1'))
}

function rawPublic(key: KeyObject, prefix: Buffer): Uint8Array {
  const der = key.export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(prefix.length))
}

/** The 32-byte Ed25519 public key of a seed (JWK export: a third of the cost of DER's). */
export function ed25519Public(seed: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.from(createPublicKey(ed25519Private(seed)).export({ format: 'jwk' }).x as string, 'base64url'))
}

/** The 64-byte Ed25519 signature (RFC 8032 §5.1.6, deterministic) of `message`. */
export function ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, ed25519Private(seed)))
}

export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_PUBLIC_BYTES || signature.length !== ED25519_SIGNATURE_BYTES) return false
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    return verify(null, message, key, signature)
  } catch {
    return false
  }
}

/** The uncompressed SEC 1 point (0x04 ‖ x ‖ y, 65 bytes) of a P-256 secret. */
export function p256Public(d: Uint8Array): Uint8Array {
  return rawPublic(createPublicKey(p256Private(d)), P256_SPKI_PREFIX)
}

/** ECDSA P-256 with SHA-256 over `message`; the signature as r ‖ s (IEEE P1363, 64 bytes). */
export function p256Sign(d: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign('sha256', message, { key: p256Private(d), dsaEncoding: 'ieee-p1363' }))
}

export function p256Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== P256_PUBLIC_BYTES || publicKey[0] !== 0x04 || signature.length !== P256_SIGNATURE_BYTES) return false
  try {
    const key = createPublicKey({ key: Buffer.concat([P256_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    return verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature)
  } catch {
    return false
  }
}

/** SubjectPublicKeyInfo (DER) of a raw public key as the functions above give it. */
export function spkiDer(kind: 'ed25519' | 'p256', publicKey: Uint8Array): Uint8Array {
  const prefix = kind === 'ed25519' ? ED25519_SPKI_PREFIX : P256_SPKI_PREFIX
  return new Uint8Array(Buffer.concat([prefix, publicKey]))
}
