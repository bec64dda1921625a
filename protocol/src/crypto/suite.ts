// The one crypto interface the rest of keymesh sees. Two providers implement it
// and must produce identical bytes for identical inputs:
//   - node-provider.ts: node:crypto (OpenSSL), the fast default;
//   - stablelib-provider.ts: @stablelib/x25519 + @stablelib/chacha20poly1305, pure JS.
// Hashing (SHA-256, HMAC, HKDF) and signatures (Ed25519, ECDSA P-256: signing.ts)
// use node:crypto in both: hashing is native in Node, @stablelib has no P-256 and
// this project does not depend on @stablelib/ed25519; the portable provider exists
// for the X25519 and AEAD code paths.
//
// Contract, for every provider:
//   - X25519 per RFC 7748; `dh` rejects an all-zero output with PROTO_ERR_LOW_ORDER_POINT.
//   - ChaCha20-Poly1305 per RFC 8439 with a 12-byte nonce and 16-byte tag appended;
//     `open` throws PROTO_ERR_DECRYPT on any mismatch and never returns partial plaintext.
//   - Wrong key or nonce lengths throw PROTO_ERR_INVALID_KEY / PROTO_ERR_INVALID_NONCE.
//   - Ed25519 per RFC 8032 (pure); ECDSA P-256 with SHA-256, signatures r ‖ s (IEEE P1363).
//     The verify functions answer false, never throw, on any malformed key or signature.

export const X25519_KEY_BYTES = 32
export const AEAD_KEY_BYTES = 32
export const AEAD_NONCE_BYTES = 12
export const AEAD_TAG_BYTES = 16
export const SHA256_BYTES = 32

export interface KeyPair {
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
}

/**
 * Bytes to seal: one buffer, or several sealed as if joined (in order). The record
 * layer seals a record whose bytes span two socket reads from both, without a copy.
 */
export type Plaintext = Uint8Array | readonly Uint8Array[]

/** Fills and returns `n` random bytes. Injected so tests can fix them. */
export type RandomSource = (n: number) => Uint8Array

export interface CryptoSuite {
  readonly name: string

  randomBytes(n: number): Uint8Array

  /** A fresh key pair from the suite's random source. */
  x25519Generate(): KeyPair
  /** The key pair whose secret is `secretKey` (32 bytes, clamped per RFC 7748 on use). */
  x25519FromSecret(secretKey: Uint8Array): KeyPair
  /**
   * Drops anything the provider keeps for this secret key (node:crypto caches
   * imported keys). Called when a key is wiped, e.g. an ephemeral after its
   * handshake, so forward secrecy does not depend on a cache's eviction.
   */
  x25519Forget(secretKey: Uint8Array): void
  /** X25519(secretKey, publicKey); throws PROTO_ERR_LOW_ORDER_POINT on an all-zero result. */
  x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array

  /** ChaCha20-Poly1305 encryption: returns ciphertext || 16-byte tag. */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array): Uint8Array
  /**
   * aeadSeal writing ciphertext || tag into `out` at `offset` (room for the
   * plaintext's length + 16 bytes required). The record layer seals straight into
   * its wire buffer with it, saving a copy of every record on the tunnel's hot path;
   * a plaintext given in parts is sealed as their concatenation.
   */
  aeadSealInto(key: Uint8Array, nonce: Uint8Array, plaintext: Plaintext, ad: Uint8Array, out: Uint8Array, offset: number): void
  /** ChaCha20-Poly1305 decryption of ciphertext || tag; throws PROTO_ERR_DECRYPT on failure. */
  aeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad?: Uint8Array): Uint8Array

  sha256(...parts: Uint8Array[]): Uint8Array
  hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array
  /** The 32-byte Ed25519 public key of a 32-byte seed. */
  ed25519Public(seed: Uint8Array): Uint8Array
  /** The 64-byte Ed25519 signature of `message` (deterministic). */
  ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean
  /** The 65-byte uncompressed point of a P-256 secret scalar (32 bytes, 1 ≤ d < n). */
  p256Public(secret: Uint8Array): Uint8Array
  /** ECDSA P-256 / SHA-256 of `message`: r ‖ s, 64 bytes. */
  p256Sign(secret: Uint8Array, message: Uint8Array): Uint8Array
  p256Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean
  /** Drops any signing key the provider keeps for this secret (as x25519Forget does). */
  signingForget(secret: Uint8Array): void

  /** HKDF-SHA256 per RFC 5869 (extract then expand), `length` ≤ 255 × 32. */
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array
}
