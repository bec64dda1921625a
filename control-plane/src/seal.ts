// Sealing of key material at rest. Every secret the store keeps is sealed under a
// key derived from the master key, with the record's identity (for example
// 'key-version:orders:3' or 'meta:cp-identity') as associated data:
//   - a copied database without the master key yields nothing;
//   - a sealed value moved to another record's place fails to open;
//   - any altered byte fails to open.
//
// Format, version 1:  0x01 || nonce (12 random bytes) || ChaCha20-Poly1305(ciphertext || tag)
// AD = 0x01 || "keymesh sealed record" || 0x00 || identity (UTF-8)
// The version byte is inside the AD too, so it cannot be swapped for another format's.
//
// Random nonces are safe here: 2^32 seals under one master key keep the collision
// risk below 2^-32 (NIST SP 800-38D's bound), far beyond any key store's writes.
import { nodeSuite } from '../../protocol/src/index.js'
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, type CryptoSuite } from '../../protocol/src/index.js'
import { cpError } from './errors.js'

export const SEAL_VERSION = 1
export const MASTER_KEY_BYTES = 32
/** Bytes a sealed value adds to its plaintext. */
export const SEAL_OVERHEAD = 1 + AEAD_NONCE_BYTES + AEAD_TAG_BYTES

const HKDF_INFO = new TextEncoder().encode('keymesh seal v1')
const AD_DOMAIN = new TextEncoder().encode('keymesh sealed record\0')

/** Record identities, so every caller spells them alike. */
export const sealIdentity = {
  keyVersion: (keyName: string, version: number): string => `key-version:${keyName}:${version}`,
  meta: (key: string): string => `meta:${key}`,
}

export interface Sealer {
  seal(identity: string, plaintext: Uint8Array): Uint8Array
  /** Throws CP_ERR_UNSEAL on a wrong master key, a moved record, or any alteration. */
  unseal(identity: string, sealed: Uint8Array): Uint8Array
  /** Zeroes the derived sealing key; the sealer is unusable afterwards. */
  wipe(): void
}

function associatedData(identity: string): Uint8Array {
  const id = new TextEncoder().encode(identity)
  const ad = new Uint8Array(1 + AD_DOMAIN.length + id.length)
  ad[0] = SEAL_VERSION
  ad.set(AD_DOMAIN, 1)
  ad.set(id, 1 + AD_DOMAIN.length)
  return ad
}

/** A sealer holding the key derived from `masterKey` (HKDF-SHA256, info 'keymesh seal v1'). */
export function createSealer(masterKey: Uint8Array, suite: CryptoSuite = nodeSuite): Sealer {
  if (!(masterKey instanceof Uint8Array) || masterKey.length !== MASTER_KEY_BYTES) {
    throw cpError('CP_ERR_MASTER_KEY', `master key must be ${MASTER_KEY_BYTES} bytes`)
  }
  // Derived rather than used raw, so the master key can later key other
  // purposes (e.g. a passphrase wrap) without two uses of one AEAD key.
  const key = suite.hkdfSha256(masterKey, new Uint8Array(0), HKDF_INFO, 32)
  let wiped = false
  const live = (): Uint8Array => {
    if (wiped) throw cpError('CP_ERR_MASTER_KEY', 'sealer was wiped')
    return key
  }

  return {
    seal(identity, plaintext) {
      const nonce = suite.randomBytes(AEAD_NONCE_BYTES)
      const body = suite.aeadSeal(live(), nonce, plaintext, associatedData(identity))
      const out = new Uint8Array(1 + AEAD_NONCE_BYTES + body.length)
      out[0] = SEAL_VERSION
      out.set(nonce, 1)
      out.set(body, 1 + AEAD_NONCE_BYTES)
      return out
    },

    unseal(identity, sealed) {
      const k = live()
      if (sealed.length < SEAL_OVERHEAD) throw cpError('CP_ERR_UNSEAL', `${identity}: too short`)
      if (sealed[0] !== SEAL_VERSION) throw cpError('CP_ERR_UNSEAL', `${identity}: unknown seal version`)
      try {
        return suite.aeadOpen(k, sealed.subarray(1, 1 + AEAD_NONCE_BYTES), sealed.subarray(1 + AEAD_NONCE_BYTES), associatedData(identity))
      } catch (cause) {
        // The cause is the suite's PROTO_ERR_DECRYPT; it carries no bytes.
        throw cpError('CP_ERR_UNSEAL', identity, { cause })
      }
    },

    wipe() {
      key.fill(0)
      wiped = true
    },
  }
}

/** One-shot seal; prefer a long-lived `createSealer` on hot paths (it derives the key once). */
export function seal(masterKey: Uint8Array, identity: string, plaintext: Uint8Array, suite: CryptoSuite = nodeSuite): Uint8Array {
  const s = createSealer(masterKey, suite)
  try {
    return s.seal(identity, plaintext)
  } finally {
    s.wipe()
  }
}

/** One-shot unseal; throws CP_ERR_UNSEAL like `Sealer.unseal`. */
export function unseal(masterKey: Uint8Array, identity: string, sealed: Uint8Array, suite: CryptoSuite = nodeSuite): Uint8Array {
  const s = createSealer(masterKey, suite)
  try {
    return s.unseal(identity, sealed)
  } finally {
    s.wipe()
  }
}
