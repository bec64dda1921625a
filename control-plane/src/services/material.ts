// Key material: made fresh for a new version, sealed under the master key with
// the version's identity as associated data, and opened only where it is used.
// Callers wipe what they open as soon as they are done with it.
import { isP256Secret, spkiDer } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { sealIdentity } from '../seal.js'
import type { KeyType, KeyVersionRecord } from '../store/records.js'

export const MATERIAL_BYTES = 32

/**
 * Fresh material for a version: 32 random bytes for every type. For `aead` and
 * `pair` they are the ChaCha20-Poly1305 key; for `x25519` the secret scalar
 * (clamped on use per RFC 7748), whose public half is derived when needed; for
 * `ed25519` the RFC 8032 seed; for `hmac-sha256` the HMAC key; for `ecdsa-p256`
 * the secret scalar d, drawn again until 1 ≤ d < n (FIPS 186-5 A.2.2, rejection
 * sampling: a draw fails with probability below 2^-32).
 */
export function newMaterial(ctx: CpContext, type: KeyType): Uint8Array {
  for (;;) {
    const material = new Uint8Array(ctx.suite.randomBytes(MATERIAL_BYTES))
    if (type !== 'ecdsa-p256' || isP256Secret(material)) return material
    material.fill(0)
  }
}

/** Makes, seals and wipes new material; returns the sealed bytes for the version row. */
export function sealNewMaterial(ctx: CpContext, keyName: string, version: number, type: KeyType): Uint8Array {
  const material = newMaterial(ctx, type)
  try {
    return ctx.sealer.seal(sealIdentity.keyVersion(keyName, version), material)
  } finally {
    material.fill(0)
  }
}

/** Opens a version's material; throws CP_ERR_VERSION_DESTROYED when it was erased. The caller wipes the result. */
export function openMaterial(ctx: CpContext, v: Pick<KeyVersionRecord, 'keyName' | 'version' | 'sealedMaterial'>): Uint8Array {
  if (v.sealedMaterial === null) throw cpError('CP_ERR_VERSION_DESTROYED', `${v.keyName} v${v.version}`)
  return ctx.sealer.unseal(sealIdentity.keyVersion(v.keyName, v.version), v.sealedMaterial)
}

/** The public half of an x25519 version. */
export function x25519Public(ctx: CpContext, v: Pick<KeyVersionRecord, 'keyName' | 'version' | 'sealedMaterial'>): Uint8Array {
  const secret = openMaterial(ctx, v)
  try {
    const pair = ctx.suite.x25519FromSecret(secret)
    pair.secretKey.fill(0)
    return pair.publicKey
  } finally {
    secret.fill(0)
  }
}

/** The types whose versions have a public half, and so a `key public`. */
export const PUBLIC_KEY_TYPES: readonly KeyType[] = ['x25519', 'ed25519', 'ecdsa-p256']

/**
 * The public key of an ed25519 or ecdsa-p256 version as PEM (SubjectPublicKeyInfo,
 * RFC 8410 / RFC 5480), the form OpenSSL and every JOSE or X.509 library read.
 */
export function signingPublicPem(ctx: CpContext, type: 'ed25519' | 'ecdsa-p256', v: Pick<KeyVersionRecord, 'keyName' | 'version' | 'sealedMaterial'>): string {
  const secret = openMaterial(ctx, v)
  try {
    const raw = type === 'ed25519' ? ctx.suite.ed25519Public(secret) : ctx.suite.p256Public(secret)
    const b64 = Buffer.from(spkiDer(type === 'ed25519' ? 'ed25519' : 'p256', raw)).toString('base64')
    return `-----BEGIN PUBLIC KEY-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END PUBLIC KEY-----\n`
  } finally {
    ctx.suite.signingForget(secret)
    secret.fill(0)
  }
}
