// Key material: made fresh for a new version, sealed under the master key with
// the version's identity as associated data, and opened only where it is used.
// Callers wipe what they open as soon as they are done with it.
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { sealIdentity } from '../seal.js'
import type { KeyType, KeyVersionRecord } from '../store/records.js'

export const MATERIAL_BYTES = 32

/**
 * Fresh material for a version: 32 random bytes for every type. For `aead` and
 * `pair` they are the ChaCha20-Poly1305 key; for `x25519` the secret scalar
 * (clamped on use per RFC 7748), whose public half is derived when needed.
 */
export function newMaterial(ctx: CpContext, _type: KeyType): Uint8Array {
  return new Uint8Array(ctx.suite.randomBytes(MATERIAL_BYTES))
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
