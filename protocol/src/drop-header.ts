// The header of a drop file: who sealed it for whom, with which key, and how the
// payload is chunked. Binary, versioned, one canonical encoding per header (so
// decode → encode gives the same bytes, and SHA-256 of the bytes identifies it).
//
//   offset  size  field
//   0       6     magic 'KMDROP'
//   6       1     format version (2; this build reads 1 and 2)
//   7       1     mode: 1 = kms (data key wrapped by a KMS aead key),
//                       2 = x25519 (data key agreed with an x25519 key's public half)
//   8       4     chunk size, u32 big-endian, 4 KiB..1 MiB (plaintext bytes per chunk)
//   12      7     nonce prefix (random per drop)
//   19      2+n   sender service, u16 length then ASCII (empty only in mode 2:
//                 an outside partner has no service)
//   ...     2+n   recipient service
//   ...     2+n   key name (mode 1: the aead key; mode 2: the x25519 key)
//   ...     4     key version, u32 big-endian
//   mode 1: 2+n   wrapped data key: km1 text (the control plane's datakey output),
//                 naming the same key and version as the fields above
//   mode 2: 32    ephemeral X25519 public key
//   mode 2, format 2 only:
//           2+n   sender key: the name of an x25519 key of the sender's service
//                 whose private half took part in the key agreement, or empty
//                 (an outside partner, or a sender that does not authenticate)
//           4     sender key version, u32 big-endian (0 when the name is empty)
//
// Format 2 authenticates the sender of an x25519 drop that names a sender key:
// the file key mixes X25519(sender key, recipient key) into the agreement
// (drop-stream.ts), and the control plane computes that term only for a caller
// that is the header's sender service and holds `encrypt` on the sender key. A
// drop without a sender key, and every format-1 x25519 drop, has an unverified
// sender: anyone with the recipient's public key can write any name there.
// (As in every static-DH scheme, the recipient itself could forge a drop from
// that sender to itself; nobody else can.)
//
// The header is not sealed itself: SHA-256 of its bytes is the HKDF salt of the
// chunk key and the associated data of every chunk (drop-stream.ts), so editing
// any header byte makes the first chunk fail. decodeDropHeader still checks every
// field so that a malformed header fails with a clear error before any key use.
import type { CryptoSuite } from './crypto/suite.js'
import { X25519_KEY_BYTES } from './crypto/suite.js'
import { parseKm1 } from './ciphertext.js'
import { protoError } from './errors.js'
import { isKeyName, isKeyVersion, isServiceName, MAX_KEY_NAME, MAX_KEY_VERSION, MAX_SERVICE_NAME } from './names.js'

export const DROP_MAGIC = 'KMDROP'
/** The format this build writes; it reads format 1 too. */
export const DROP_FORMAT_VERSION = 2
const READ_VERSIONS: readonly number[] = [1, 2]
export const DROP_NONCE_PREFIX_BYTES = 7
export const MIN_DROP_CHUNK_SIZE = 4 * 1024
export const MAX_DROP_CHUNK_SIZE = 1024 * 1024
export const DEFAULT_DROP_CHUNK_SIZE = 64 * 1024
/** Longest wrapped data key text: a km1 of a 64-byte data key is ~200 characters. */
export const MAX_DROP_WRAPPED_KEY = 512
const FIXED_BYTES = DROP_MAGIC.length + 1 + 1 + 4 + DROP_NONCE_PREFIX_BYTES
export const MAX_DROP_HEADER_BYTES = FIXED_BYTES + 2 * (2 + MAX_SERVICE_NAME) + 2 + MAX_KEY_NAME + 4 +
  Math.max(2 + MAX_DROP_WRAPPED_KEY, X25519_KEY_BYTES + 2 + MAX_KEY_NAME + 4)

const MODE_KMS = 1
const MODE_X25519 = 2
const MAGIC_BYTES = new TextEncoder().encode(DROP_MAGIC)

export type DropMode = 'kms' | 'x25519'

export interface DropHeader {
  readonly formatVersion: 1 | 2
  readonly mode: DropMode
  /** Plaintext bytes per chunk; every chunk but the last is exactly this long. */
  readonly chunkSize: number
  readonly noncePrefix: Uint8Array
  /** The sealing service; '' only in x25519 mode (an outside partner). */
  readonly sender: string
  readonly recipient: string
  readonly key: string
  readonly keyVersion: number
  /** kms mode: the data key wrapped under key:keyVersion, as km1 text. */
  readonly wrappedKey?: string
  /** x25519 mode: the sender's ephemeral public key. */
  readonly ephemeralPublic?: Uint8Array
  /** x25519 mode, format 2: the sender's own x25519 key that authenticates it; '' for none. */
  readonly senderKey?: string
  /** x25519 mode, format 2: that key's version; 0 when senderKey is ''. */
  readonly senderKeyVersion?: number
}

/** True when the drop's sender is authenticated by the cryptography, not just named. */
export function dropSenderAuthenticated(h: DropHeader): boolean {
  return h.mode === 'kms' || (h.senderKey !== undefined && h.senderKey !== '')
}

const formatError = (detail: string, cause?: unknown) =>
  protoError('PROTO_ERR_DROP_FORMAT', detail, cause === undefined ? undefined : { cause })

/** Throws PROTO_ERR_DROP_FORMAT unless the mode-independent and mode fields hold together. */
function checkFields(h: DropHeader): void {
  if (h.mode !== 'kms' && h.mode !== 'x25519') throw formatError('mode must be kms or x25519')
  if (!Number.isInteger(h.chunkSize) || h.chunkSize < MIN_DROP_CHUNK_SIZE || h.chunkSize > MAX_DROP_CHUNK_SIZE) {
    throw formatError(`chunk size must be ${MIN_DROP_CHUNK_SIZE}..${MAX_DROP_CHUNK_SIZE} bytes`)
  }
  if (!(h.noncePrefix instanceof Uint8Array) || h.noncePrefix.length !== DROP_NONCE_PREFIX_BYTES) {
    throw formatError(`nonce prefix must be ${DROP_NONCE_PREFIX_BYTES} bytes`)
  }
  if (!(isServiceName(h.sender) || (h.mode === 'x25519' && h.sender === ''))) {
    throw formatError('sender must be a service name (empty only for x25519 drops)')
  }
  if (!isServiceName(h.recipient)) throw formatError('recipient must be a service name')
  if (!isKeyName(h.key)) throw formatError('key name breaks the key-name rules')
  if (!isKeyVersion(h.keyVersion)) throw formatError(`key version must be an integer in 1..${MAX_KEY_VERSION}`)
  if (h.mode === 'kms') {
    if (h.ephemeralPublic !== undefined) throw formatError('a kms drop carries no ephemeral public key')
    if (typeof h.wrappedKey !== 'string' || h.wrappedKey.length > MAX_DROP_WRAPPED_KEY) {
      throw formatError(`a kms drop needs its wrapped data key as km1 text of at most ${MAX_DROP_WRAPPED_KEY} characters`)
    }
    let wrapped
    try {
      wrapped = parseKm1(h.wrappedKey)
    } catch (cause) {
      throw formatError('wrapped data key is not km1 text', cause)
    }
    if (wrapped.key !== h.key || wrapped.version !== h.keyVersion) throw formatError('wrapped data key names another key or version')
    if (h.senderKey !== undefined || h.senderKeyVersion !== undefined) throw formatError('a kms drop names no sender key')
  } else {
    if (h.wrappedKey !== undefined) throw formatError('an x25519 drop carries no wrapped data key')
    if (!(h.ephemeralPublic instanceof Uint8Array) || h.ephemeralPublic.length !== X25519_KEY_BYTES) {
      throw formatError(`an x25519 drop needs a ${X25519_KEY_BYTES}-byte ephemeral public key`)
    }
    if (h.formatVersion === 1) {
      if (h.senderKey !== undefined || h.senderKeyVersion !== undefined) throw formatError('a format 1 drop names no sender key')
    } else if (h.senderKey === undefined || h.senderKey === '') {
      if (h.senderKeyVersion !== undefined && h.senderKeyVersion !== 0) throw formatError('a drop without a sender key has sender key version 0')
    } else {
      if (!isKeyName(h.senderKey)) throw formatError('sender key name breaks the key-name rules')
      if (!isKeyVersion(h.senderKeyVersion)) throw formatError(`sender key version must be an integer in 1..${MAX_KEY_VERSION}`)
      if (h.sender === '') throw formatError('a drop with a sender key names its sender service')
    }
  }
}

/** The canonical bytes of a header; PROTO_ERR_DROP_VERSION or PROTO_ERR_DROP_FORMAT for a bad one. */
export function encodeDropHeader(h: DropHeader): Uint8Array {
  // Format 1 is still encoded, so that a format-1 drop's header bytes (its key's salt) can be rebuilt.
  if (!READ_VERSIONS.includes(h.formatVersion)) throw protoError('PROTO_ERR_DROP_VERSION', `this build writes formats ${READ_VERSIONS.join(' and ')}`)
  checkFields(h)
  // Every text field is ASCII after checkFields, so its length is its byte length.
  const texts = [h.sender, h.recipient, h.key]
  const senderKey = h.senderKey ?? ''
  const v2x = h.mode === 'x25519' && h.formatVersion === 2
  const tail = h.mode === 'kms' ? 2 + (h.wrappedKey as string).length : X25519_KEY_BYTES + (v2x ? 2 + senderKey.length + 4 : 0)
  const out = new Uint8Array(FIXED_BYTES + texts.reduce((n, s) => n + 2 + s.length, 0) + 4 + tail)
  const view = new DataView(out.buffer)
  out.set(MAGIC_BYTES, 0)
  out[6] = h.formatVersion
  out[7] = h.mode === 'kms' ? MODE_KMS : MODE_X25519
  view.setUint32(8, h.chunkSize)
  out.set(h.noncePrefix, 12)
  let off = FIXED_BYTES
  const putText = (s: string): void => {
    view.setUint16(off, s.length)
    for (let i = 0; i < s.length; i++) out[off + 2 + i] = s.charCodeAt(i)
    off += 2 + s.length
  }
  for (const s of texts) putText(s)
  view.setUint32(off, h.keyVersion)
  off += 4
  if (h.mode === 'kms') putText(h.wrappedKey as string)
  else {
    out.set(h.ephemeralPublic as Uint8Array, off)
    off += X25519_KEY_BYTES
    if (v2x) {
      putText(senderKey)
      view.setUint32(off, h.senderKeyVersion ?? 0)
    }
  }
  return out
}

/**
 * Incremental decoder: `bytes` is the start of a drop file, of any length.
 * Returns undefined while the header is incomplete, then the header and its byte
 * length (the payload starts there). Fails as soon as the bytes at hand are
 * wrong — magic, version, mode, a length over its limit — rather than waiting
 * for more: PROTO_ERR_DROP_VERSION for another format version, otherwise
 * PROTO_ERR_DROP_FORMAT. A header never exceeds MAX_DROP_HEADER_BYTES.
 */
export function decodeDropHeader(bytes: Uint8Array): { header: DropHeader; length: number } | undefined {
  for (let i = 0; i < Math.min(bytes.length, MAGIC_BYTES.length); i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) throw formatError('not a keymesh drop (bad magic)')
  }
  if (bytes.length > 6 && !READ_VERSIONS.includes(bytes[6] as number)) {
    throw protoError('PROTO_ERR_DROP_VERSION', `this build reads formats ${READ_VERSIONS.join(' and ')}`)
  }
  if (bytes.length > 7 && bytes[7] !== MODE_KMS && bytes[7] !== MODE_X25519) throw formatError('unknown mode')
  if (bytes.length < FIXED_BYTES) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const mode: DropMode = bytes[7] === MODE_KMS ? 'kms' : 'x25519'
  const chunkSize = view.getUint32(8)
  if (chunkSize < MIN_DROP_CHUNK_SIZE || chunkSize > MAX_DROP_CHUNK_SIZE) {
    throw formatError(`chunk size must be ${MIN_DROP_CHUNK_SIZE}..${MAX_DROP_CHUNK_SIZE} bytes`)
  }
  let off = FIXED_BYTES
  // Each reader returns undefined when the bytes run out before the field ends.
  const text = (max: number, what: string): string | undefined => {
    if (bytes.length < off + 2) return undefined
    const n = view.getUint16(off)
    if (n > max) throw formatError(`${what} longer than ${max} bytes`)
    if (bytes.length < off + 2 + n) return undefined
    // latin1: one character per byte, so a non-ASCII byte can only fail the field checks.
    const s = String.fromCharCode(...bytes.subarray(off + 2, off + 2 + n))
    off += 2 + n
    return s
  }
  const sender = text(MAX_SERVICE_NAME, 'sender')
  if (sender === undefined) return undefined
  const recipient = text(MAX_SERVICE_NAME, 'recipient')
  if (recipient === undefined) return undefined
  const key = text(MAX_KEY_NAME, 'key name')
  if (key === undefined) return undefined
  if (bytes.length < off + 4) return undefined
  const keyVersion = view.getUint32(off)
  off += 4
  let header: DropHeader
  const formatVersion = bytes[6] as 1 | 2
  const common = { formatVersion, mode, chunkSize, sender, recipient, key, keyVersion } as const
  if (mode === 'kms') {
    const wrappedKey = text(MAX_DROP_WRAPPED_KEY, 'wrapped data key')
    if (wrappedKey === undefined) return undefined
    header = { ...common, noncePrefix: bytes.slice(12, FIXED_BYTES), wrappedKey }
  } else {
    if (bytes.length < off + X25519_KEY_BYTES) return undefined
    const ephemeralPublic = bytes.slice(off, off + X25519_KEY_BYTES)
    off += X25519_KEY_BYTES
    if (formatVersion === 1) header = { ...common, noncePrefix: bytes.slice(12, FIXED_BYTES), ephemeralPublic }
    else {
      const senderKey = text(MAX_KEY_NAME, 'sender key name')
      if (senderKey === undefined || bytes.length < off + 4) return undefined
      const senderKeyVersion = view.getUint32(off)
      off += 4
      header = { ...common, noncePrefix: bytes.slice(12, FIXED_BYTES), ephemeralPublic, senderKey, senderKeyVersion }
    }
  }
  checkFields(header)
  return { header, length: off }
}

/**
 * The KMS context of a kms-mode drop's data key, so the control plane can check
 * that the opener is the named recipient before it unwraps the key.
 */
export function dropContext(h: Pick<DropHeader, 'sender' | 'recipient'>): Record<string, string> {
  return { 'keymesh:drop': 'v1', 'keymesh:from': h.sender, 'keymesh:to': h.recipient }
}

export interface NewDropHeader {
  readonly mode: DropMode
  readonly sender: string
  readonly recipient: string
  readonly key: string
  readonly keyVersion: number
  readonly chunkSize?: number
  readonly wrappedKey?: string
  readonly ephemeralPublic?: Uint8Array
  /** x25519 mode: the sender's own x25519 key and version, to authenticate the sender. */
  readonly senderKey?: string
  readonly senderKeyVersion?: number
}

/** A checked header with a random nonce prefix from the suite and the default chunk size unless given. */
export function newDropHeader(suite: CryptoSuite, fields: NewDropHeader): DropHeader {
  const x25519 = fields.mode === 'x25519'
  const header: DropHeader = {
    ...fields,
    ...(x25519 ? { senderKey: fields.senderKey ?? '', senderKeyVersion: fields.senderKeyVersion ?? 0 } : {}),
    formatVersion: DROP_FORMAT_VERSION,
    chunkSize: fields.chunkSize ?? DEFAULT_DROP_CHUNK_SIZE,
    noncePrefix: suite.randomBytes(DROP_NONCE_PREFIX_BYTES),
  }
  checkFields(header)
  return header
}
