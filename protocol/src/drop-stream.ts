// The payload of a drop: the STREAM construction of Hoang, Reyhanitabar, Rogaway
// and Vizár ("Online authenticated-encryption and its nonce-reuse misuse-
// resistance", 2015), as age and Tink use it, over ChaCha20-Poly1305.
//
//   chunk key  = HKDF-SHA256(ikm = secret, salt = SHA-256(header bytes), info = 'keymesh drop v<format>')
//   nonce(i)   = nonce prefix (7 bytes, from the header) ‖ u32 BE i ‖ u8 last (1 on the final chunk)
//   chunk i    = ChaCha20-Poly1305(chunk key, nonce(i), plaintext i, ad = SHA-256(header bytes))
//
// The secret is the data key (kms mode) or the X25519 shared secret of the ephemeral
// and the recipient key (x25519 mode). A format-2 x25519 drop that names a sender key
// appends the sender term to it (ikm = ee ‖ sender term, 64 bytes), where
//
//   sender term = HKDF-SHA256(ikm = X25519(sender key, recipient key),
//                             salt = SHA-256(header bytes), info = 'keymesh drop v2 sender')
//
// so only a holder of one of the two static private keys (the control plane, for a
// caller it has checked) can produce the file key. The term is bound to the header,
// so it is no raw Diffie-Hellman value that could serve for another drop.
// Every chunk holds exactly chunkSize plaintext bytes except the final one, which
// holds 0..chunkSize (an empty payload is one empty final chunk). So on disk a
// chunk is chunkSize + 16 bytes and the final one 16..chunkSize + 16.
//
// What each attack runs into: a header edit changes the key and the AD of every
// chunk; reordering or duplicating chunks changes their index in the nonce;
// truncation leaves no chunk whose nonce says last; extension puts data after the
// chunk whose nonce says last. Both directions hold at most one chunk in memory.
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, X25519_KEY_BYTES, type CryptoSuite } from './crypto/suite.js'
import { DROP_NONCE_PREFIX_BYTES, encodeDropHeader, type DropHeader } from './drop-header.js'
import { isKeymeshError, protoError } from './errors.js'

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const INFO: Readonly<Record<number, Uint8Array>> = { 1: encode('keymesh drop v1'), 2: encode('keymesh drop v2') }
const SENDER_INFO = encode('keymesh drop v2 sender')
/** Secrets are 32 bytes in both modes: a data key or an X25519 shared secret. */
export const DROP_SECRET_BYTES = 32
/** The chunk key's length, when it is handed over already derived. */
export const DROP_CHUNK_KEY_BYTES = 32
/** Chunk indexes are u32: at most 2^32 chunks (16 TiB at the smallest chunk size). */
const MAX_CHUNK_INDEX = 0xffff_ffff

/**
 * The chunk key and the per-chunk AD of the drop whose header is `headerBytes`:
 * `secret` is 32 bytes, or 64 (ee ‖ sender term) for a format-2 drop with a sender key.
 */
export function dropChunkKey(suite: CryptoSuite, headerBytes: Uint8Array, secret: Uint8Array): { key: Uint8Array; ad: Uint8Array } {
  const version = headerBytes[6] as number
  const info = INFO[version]
  if (info === undefined) throw protoError('PROTO_ERR_DROP_VERSION', `no drop format ${version}`)
  const sized = secret instanceof Uint8Array && (secret.length === DROP_SECRET_BYTES || (version === 2 && secret.length === 2 * DROP_SECRET_BYTES))
  if (!sized) throw protoError('PROTO_ERR_INVALID_KEY', `drop secret must be ${DROP_SECRET_BYTES} bytes (or ${2 * DROP_SECRET_BYTES} with a sender term)`)
  const ad = suite.sha256(headerBytes)
  return { key: suite.hkdfSha256(secret, ad, info, DROP_CHUNK_KEY_BYTES), ad }
}

/** The sender term of a format-2 x25519 drop from X25519(sender key, recipient key) (see the header comment). */
export function dropSenderTerm(suite: CryptoSuite, headerBytes: Uint8Array, staticShared: Uint8Array): Uint8Array {
  if (headerBytes[6] !== 2) throw protoError('PROTO_ERR_DROP_VERSION', 'only format 2 drops carry a sender term')
  return suite.hkdfSha256(staticShared, suite.sha256(headerBytes), SENDER_INFO, DROP_SECRET_BYTES)
}

/** ee ‖ sender term, the secret of a drop with an authenticated sender; the caller wipes all three. */
export function withSenderTerm(ephemeralShared: Uint8Array, senderTerm: Uint8Array): Uint8Array {
  const out = new Uint8Array(ephemeralShared.length + senderTerm.length)
  out.set(ephemeralShared, 0)
  out.set(senderTerm, ephemeralShared.length)
  return out
}

/**
 * What a sealer or opener is keyed with: the drop's secret, from which it derives the
 * chunk key; or the chunk key itself, as the control plane hands it out for an x25519
 * drop (it derives the key from the header, so no raw X25519 value leaves it).
 */
export type DropKey = Uint8Array | { readonly chunkKey: Uint8Array }

function chunkKeyOf(suite: CryptoSuite, headerBytes: Uint8Array, key: DropKey): { key: Uint8Array; ad: Uint8Array } {
  if (key instanceof Uint8Array) return dropChunkKey(suite, headerBytes, key)
  if (!(key.chunkKey instanceof Uint8Array) || key.chunkKey.length !== DROP_CHUNK_KEY_BYTES) {
    throw protoError('PROTO_ERR_INVALID_KEY', `a drop chunk key is ${DROP_CHUNK_KEY_BYTES} bytes`)
  }
  return { key: new Uint8Array(key.chunkKey), ad: suite.sha256(headerBytes) }
}

/**
 * Sender side of an x25519 drop: a fresh ephemeral key pair and X25519(ephemeral,
 * recipientPublic). The ephemeral secret is wiped before returning, so only the
 * recipient's secret can recompute the shared secret. The caller wipes `secret`.
 */
export function x25519DropSecret(suite: CryptoSuite, recipientPublic: Uint8Array): { ephemeralPublic: Uint8Array; secret: Uint8Array } {
  const eph = suite.x25519Generate()
  try {
    return { ephemeralPublic: eph.publicKey, secret: suite.x25519(eph.secretKey, recipientPublic) }
  } finally {
    suite.x25519Forget(eph.secretKey)
    eph.secretKey.fill(0)
  }
}

/** Recipient side of an x25519 drop (the holder of the x25519 key): X25519(recipientSecret, ephemeralPublic). */
export function x25519DropOpenSecret(suite: CryptoSuite, recipientSecret: Uint8Array, ephemeralPublic: Uint8Array): Uint8Array {
  if (!(ephemeralPublic instanceof Uint8Array) || ephemeralPublic.length !== X25519_KEY_BYTES) {
    throw protoError('PROTO_ERR_INVALID_KEY', `ephemeral public key must be ${X25519_KEY_BYTES} bytes`)
  }
  return suite.x25519(recipientSecret, ephemeralPublic)
}

/** True when `a` and `b` hold the same bytes (headers are public: no constant time needed). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

type State = 'open' | 'finished' | 'failed' | 'destroyed'

/** What sealer and opener share: the key, the AD, the nonce, the chunk counter and the one-chunk buffer. */
abstract class DropStream {
  protected readonly suite: CryptoSuite
  protected readonly chunkSize: number
  protected readonly buf: Uint8Array
  protected len = 0
  protected state: State = 'open'
  readonly #key: Uint8Array
  readonly #ad: Uint8Array
  readonly #nonce = new Uint8Array(AEAD_NONCE_BYTES)
  readonly #view = new DataView(this.#nonce.buffer)
  #index = 0

  constructor(suite: CryptoSuite, header: DropHeader, headerBytes: Uint8Array, secret: DropKey, bufBytes: (chunk: number) => number) {
    // The header object drives chunking and the bytes drive the key: they must agree.
    if (!(headerBytes instanceof Uint8Array) || !sameBytes(encodeDropHeader(header), headerBytes)) {
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'header bytes do not encode the header')
    }
    const { key, ad } = chunkKeyOf(suite, headerBytes, secret)
    this.suite = suite
    this.chunkSize = header.chunkSize
    this.buf = new Uint8Array(bufBytes(header.chunkSize))
    this.#key = key
    this.#ad = ad
    this.#nonce.set(header.noncePrefix)
  }

  /** Number of chunks sealed or verified so far. */
  get chunks(): number {
    return this.#index
  }

  /** Wipes the chunk key and the buffer; every later call throws PROTO_ERR_DROP_STATE. */
  destroy(): void {
    if (this.state === 'open') this.state = 'destroyed'
    this.#key.fill(0)
    this.buf.fill(0)
    this.len = 0
  }

  protected checkOpen(): void {
    if (this.state !== 'open') throw protoError('PROTO_ERR_DROP_STATE', `this drop stream is ${this.state}`)
  }

  /** Marks the stream failed and wipes it; returns `e` for rethrowing. */
  protected fail(e: unknown): unknown {
    this.state = 'failed'
    this.destroy()
    return e
  }

  #setNonce(last: boolean, index = this.#index): Uint8Array {
    this.#view.setUint32(DROP_NONCE_PREFIX_BYTES, index)
    this.#nonce[AEAD_NONCE_BYTES - 1] = last ? 1 : 0
    return this.#nonce
  }

  #next(): void {
    if (this.#index === MAX_CHUNK_INDEX) throw protoError('PROTO_ERR_DROP_TOO_LARGE', `more than ${MAX_CHUNK_INDEX + 1} chunks`)
    this.#index++
  }

  protected sealChunk(plaintext: Uint8Array, last: boolean): Uint8Array {
    const out = this.suite.aeadSeal(this.#key, this.#setNonce(last), plaintext, this.#ad)
    if (!last) this.#next()
    return out
  }

  /** The verified plaintext of the current chunk opened as `last`, or undefined when its tag does not verify. */
  protected tryOpen(sealed: Uint8Array, last: boolean): Uint8Array | undefined {
    try {
      const plain = this.suite.aeadOpen(this.#key, this.#setNonce(last), sealed, this.#ad)
      if (!last) this.#next()
      return plain
    } catch (e) {
      if (isKeymeshError(e, 'PROTO_ERR_DECRYPT')) return undefined
      throw e
    }
  }
}

/**
 * Streaming sealer. Write the header bytes, then every array push() and finish()
 * return, in order. Holds at most one chunk of plaintext: a full chunk is sealed
 * only once more data shows it is not the last.
 *
 * Contract: after finish(), a failure or destroy(), push and finish throw
 * PROTO_ERR_DROP_STATE. `secret` stays the caller's to wipe. Arrays passed to
 * push() are not kept after it returns.
 */
export class DropSealer extends DropStream {
  constructor(suite: CryptoSuite, header: DropHeader, headerBytes: Uint8Array, secret: DropKey) {
    super(suite, header, headerBytes, secret, (chunk) => chunk)
  }

  push(data: Uint8Array): Uint8Array[] {
    this.checkOpen()
    const cs = this.chunkSize
    const out: Uint8Array[] = []
    try {
      let off = 0
      while (off < data.length) {
        if (this.len === cs) {
          out.push(this.sealChunk(this.buf, false))
          this.len = 0
        }
        const rest = data.length - off
        if (this.len === 0 && rest > cs) {
          // More than a chunk at hand: this one is not the last, so seal it in place.
          out.push(this.sealChunk(data.subarray(off, off + cs), false))
          off += cs
          continue
        }
        const n = Math.min(cs - this.len, rest)
        this.buf.set(data.subarray(off, off + n), this.len)
        this.len += n
        off += n
      }
    } catch (e) {
      throw this.fail(e)
    }
    return out
  }

  /** Seals the final chunk (empty when the payload was empty) and wipes the sealer. */
  finish(): Uint8Array[] {
    this.checkOpen()
    let last: Uint8Array
    try {
      last = this.sealChunk(this.buf.subarray(0, this.len), true)
    } catch (e) {
      throw this.fail(e)
    }
    this.state = 'finished'
    this.destroy()
    return [last]
  }
}

/**
 * Streaming opener. Push the file's bytes after the header in any split; push()
 * returns verified plaintext of the chunks known not to be last, and finish()
 * returns the final chunk's — the caller must write finish()'s output too. Only
 * verified bytes are ever returned, and a failing push returns nothing at all.
 *
 * Errors: PROTO_ERR_DECRYPT for a chunk that does not verify (altered, swapped,
 * duplicated, or a header edit); PROTO_ERR_DROP_TRAILING for data after a chunk
 * that verifies as final; PROTO_ERR_DROP_TRUNCATED from finish() when the data
 * ends before a final chunk, or inside a chunk after others verified (a file cut
 * short mid-chunk: the common case; a cut inside the first chunk is DECRYPT, as a
 * wrong key would be). After finish(), a failure or destroy(), push and
 * finish throw PROTO_ERR_DROP_STATE.
 */
export class DropOpener extends DropStream {
  readonly #full: number

  constructor(suite: CryptoSuite, header: DropHeader, headerBytes: Uint8Array, secret: DropKey) {
    super(suite, header, headerBytes, secret, (chunk) => chunk + AEAD_TAG_BYTES)
    this.#full = header.chunkSize + AEAD_TAG_BYTES
  }

  push(data: Uint8Array): Uint8Array[] {
    this.checkOpen()
    const full = this.#full
    const out: Uint8Array[] = []
    try {
      let off = 0
      while (off < data.length) {
        if (this.len === full) {
          out.push(this.#openInner(this.buf))
          this.len = 0
        }
        const rest = data.length - off
        if (this.len === 0 && rest > full) {
          out.push(this.#openInner(data.subarray(off, off + full)))
          off += full
          continue
        }
        const n = Math.min(full - this.len, rest)
        this.buf.set(data.subarray(off, off + n), this.len)
        this.len += n
        off += n
      }
    } catch (e) {
      // Verified chunks of this call are not handed out after all: the drop failed.
      for (const p of out) p.fill(0)
      throw this.fail(e)
    }
    return out
  }

  /** Verifies the buffered bytes as the final chunk and returns its plaintext. */
  finish(): Uint8Array[] {
    this.checkOpen()
    let last: Uint8Array | undefined
    try {
      if (this.len < AEAD_TAG_BYTES) throw protoError('PROTO_ERR_DROP_TRUNCATED', this.len === 0 ? 'no final chunk' : 'final chunk cut short')
      const sealed = this.buf.subarray(0, this.len)
      last = this.tryOpen(sealed, true)
      if (last === undefined) {
        // A full chunk that verifies as not-last means the file stopped at a chunk boundary.
        const inner = this.len === this.#full ? this.tryOpen(sealed, false) : undefined
        if (inner !== undefined) {
          inner.fill(0)
          throw protoError('PROTO_ERR_DROP_TRUNCATED', 'data ends after a chunk that is not the final one')
        }
        // Chunks that verified prove the key and the header: data that stops inside a
        // chunk that does not verify is a file cut short (or its end altered). Before
        // any chunk verified, a wrong key or an edited header looks the same: no
        // truncation can be told then.
        if (this.chunks > 0 && this.len < this.#full) {
          throw protoError('PROTO_ERR_DROP_TRUNCATED', `the data ends inside chunk ${this.chunks + 1}, which does not verify after ${this.chunks} that did: the file was cut short, or its end altered`)
        }
        throw protoError('PROTO_ERR_DECRYPT', this.chunks === 0 ? 'the first chunk does not verify: the drop was altered or cut short, or is not for this key' : 'final chunk')
      }
    } catch (e) {
      throw this.fail(e)
    }
    this.state = 'finished'
    this.destroy()
    return [last]
  }

  /** Opens a chunk that more bytes follow; it must verify as not-last. */
  #openInner(sealed: Uint8Array): Uint8Array {
    const plain = this.tryOpen(sealed, false)
    if (plain !== undefined) return plain
    // Only on failure: a chunk that verifies as final with bytes after it is an extension.
    const final = this.tryOpen(sealed, true)
    if (final !== undefined) {
      final.fill(0)
      throw protoError('PROTO_ERR_DROP_TRAILING')
    }
    throw protoError('PROTO_ERR_DECRYPT', `chunk ${this.chunks}`)
  }
}
