import { cpError } from '../errors.js';
import { sealIdentity } from '../seal.js';
export const MATERIAL_BYTES = 32;
/**
 * Fresh material for a version: 32 random bytes for every type. For `aead` and
 * `pair` they are the ChaCha20-Poly1305 key; for `x25519` the secret scalar
 * (clamped on use per RFC 7748), whose public half is derived when needed.
 */
export function newMaterial(ctx, _type) {
    return new Uint8Array(ctx.suite.randomBytes(MATERIAL_BYTES));
}
/** Makes, seals and wipes new material; returns the sealed bytes for the version row. */
export function sealNewMaterial(ctx, keyName, version, type) {
    const material = newMaterial(ctx, type);
    try {
        return ctx.sealer.seal(sealIdentity.keyVersion(keyName, version), material);
    }
    finally {
        material.fill(0);
    }
}
/** Opens a version's material; throws CP_ERR_VERSION_DESTROYED when it was erased. The caller wipes the result. */
export function openMaterial(ctx, v) {
    if (v.sealedMaterial === null)
        throw cpError('CP_ERR_VERSION_DESTROYED', `${v.keyName} v${v.version}`);
    return ctx.sealer.unseal(sealIdentity.keyVersion(v.keyName, v.version), v.sealedMaterial);
}
/** The public half of an x25519 version. */
export function x25519Public(ctx, v) {
    const secret = openMaterial(ctx, v);
    try {
        const pair = ctx.suite.x25519FromSecret(secret);
        pair.secretKey.fill(0);
        return pair.publicKey;
    }
    finally {
        secret.fill(0);
    }
}
//# sourceMappingURL=material.js.map