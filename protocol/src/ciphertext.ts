// The km1 ciphertext format: self-describing text that names its key and version,
// so decryption picks the version from the header and never tries keys in turn.
//
//   km1:<key>:<version>:<base64url(nonce ‖ ciphertext ‖ tag)>
//
// - <key> follows the key-name rules of names.ts (which exclude ':', so the text
//   splits on ':' into exactly four parts);
// - <version> is canonical decimal 1..2^32-1 (no sign, no leading zero);
// - the body is canonical unpadded base64url of a 12-byte nonce and the
//   ChaCha20-Poly1305 output (ciphertext ‖ 16-byte tag);
// - the whole text is at most MAX_KMS_CIPHERTEXT_TEXT characters, so it fits the
//   KMS messages of messages/kms.ts (32 KiB of plaintext seals to ~43,800).
//
// Every parser accepts exactly one spelling per value, so a ciphertext can be
// compared and hashed as text. Associated data binds the header (key, version) and
// the caller's context, so a ciphertext moved to another key name or version, or
// opened with another context, fails authentication. Errors never repeat the text.
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES, type CryptoSuite } from './crypto/suite.js'
import { protoError } from './errors.js'
import { encodeFieldList } from './field-list.js'
import { MAX_KMS_CIPHERTEXT_TEXT } from './messages/kms.js'
import { isKeyName, isKeyVersion, MAX_KEY_VERSION } from './names.js'

export const KM1_PREFIX = 'km1'

/** Caller context bound as associated data (as in messages/kms.ts). Treat it as secret. */
export type Km1Context = Readonly<Record<string, string>>

export interface Km1Header {
  readonly key: string
  readonly version: number
}

export interface Km1 extends Km1Header {
  readonly nonce: Uint8Array
  /** ciphertext ‖ 16-byte tag. */
  readonly sealed: Uint8Array
}

const VERSION_RE = /^[1-9][0-9]{0,9}$/
const BODY_RE = /^[A-Za-z0-9_-]+$/
// Anything that looks like a later format version (km2, km10) gets its own code,
// so an old reader can say "upgrade" instead of "garbage".
const OTHER_VERSION_RE = /^km[0-9]{1,4}$/
const MIN_BODY_BYTES = AEAD_NONCE_BYTES + AEAD_TAG_BYTES

const formatError = (detail: string) => protoError('PROTO_ERR_CIPHERTEXT_FORMAT', detail)

function checkHeader(h: Km1Header): void {
  if (!isKeyName(h.key)) throw protoError('PROTO_ERR_INVALID_NAME', 'ciphertext key name breaks the key-name rules')
  if (!isKeyVersion(h.version)) throw protoError('PROTO_ERR_INVALID_NAME', `ciphertext key version must be an integer in 1..${MAX_KEY_VERSION}`)
}

/**
 * Parses and validates km1 text. Errors: PROTO_ERR_CIPHERTEXT_VERSION when the
 * prefix names another format version (km2:...), PROTO_ERR_CIPHERTEXT_FORMAT for
 * anything else that is not canonical km1. The returned nonce and sealed bytes
 * are views of one fresh buffer.
 */
export function parseKm1(text: unknown): Km1 {
  if (typeof text !== 'string') throw formatError('ciphertext must be a string')
  if (text.length > MAX_KMS_CIPHERTEXT_TEXT) throw formatError(`ciphertext longer than ${MAX_KMS_CIPHERTEXT_TEXT} characters`)
  const parts = text.split(':')
  const prefix = parts[0] as string
  if (prefix !== KM1_PREFIX) {
    if (OTHER_VERSION_RE.test(prefix)) throw protoError('PROTO_ERR_CIPHERTEXT_VERSION', 'this build reads km1 only')
    throw formatError('ciphertext must start with km1:')
  }
  if (parts.length !== 4) throw formatError('ciphertext must be km1:<key>:<version>:<data>')
  const [, key, versionText, body] = parts as [string, string, string, string]
  if (!isKeyName(key)) throw formatError('key name breaks the key-name rules')
  if (!VERSION_RE.test(versionText) || !isKeyVersion(Number(versionText))) {
    throw formatError(`version must be canonical decimal 1..${MAX_KEY_VERSION}`)
  }
  const bytes = Buffer.from(body, 'base64url')
  // Node's decoder skips stray bits and characters (and takes base64's + / and
  // padding); re-encoding is the one canonical spelling of these bytes, so
  // equality proves the alphabet and the form at once. The regex, which cost
  // as much as the decoding, only picks the message.
  if (body === '' || bytes.toString('base64url') !== body) {
    throw formatError(BODY_RE.test(body) ? 'data is not canonical base64url' : 'data must be unpadded base64url')
  }
  if (bytes.length < MIN_BODY_BYTES) throw formatError(`data shorter than nonce and tag (${MIN_BODY_BYTES} bytes)`)
  const all = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
  return {
    key,
    version: Number(versionText),
    nonce: all.subarray(0, AEAD_NONCE_BYTES),
    sealed: all.subarray(AEAD_NONCE_BYTES),
  }
}

/** The km1 text of `c`; PROTO_ERR_CIPHERTEXT_FORMAT when the result would exceed the text limit. */
export function formatKm1(c: Km1): string {
  checkHeader(c)
  if (!(c.nonce instanceof Uint8Array) || c.nonce.length !== AEAD_NONCE_BYTES) {
    throw protoError('PROTO_ERR_INVALID_NONCE', `nonce must be ${AEAD_NONCE_BYTES} bytes`)
  }
  if (!(c.sealed instanceof Uint8Array) || c.sealed.length < AEAD_TAG_BYTES) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', `sealed data must hold at least the ${AEAD_TAG_BYTES}-byte tag`)
  }
  const bodyLength = Math.ceil(((AEAD_NONCE_BYTES + c.sealed.length) * 4) / 3)
  const head = `${KM1_PREFIX}:${c.key}:${c.version}:`
  if (head.length + bodyLength > MAX_KMS_CIPHERTEXT_TEXT) throw formatError(`ciphertext would exceed ${MAX_KMS_CIPHERTEXT_TEXT} characters`)
  const body = Buffer.concat([c.nonce, c.sealed]).toString('base64url')
  return head + body
}

/**
 * Context entries as a flat list k1, v1, k2, v2, ... sorted by key (UTF-16 code
 * unit order, the same in every JavaScript engine), so the caller's key order does
 * not matter. Undefined and {} are the same context. Values must be strings.
 */
function contextFields(context: Km1Context | undefined): string[] {
  if (context === undefined) return []
  if (context === null || typeof context !== 'object' || Array.isArray(context)) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'context must be an object of string values')
  }
  const entries = Object.entries(context)
  for (const [, v] of entries) {
    if (typeof v !== 'string') throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'context values must be strings')
  }
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return entries.flat()
}

/**
 * Associated data of a km1 ciphertext: length-prefixed fields
 * ['km1', key, String(version), ...sorted context entries k, v]. The field count
 * is 3 + 2n, so header and context cannot be confused with one another.
 */
export function km1AssociatedData(h: Km1Header, context: Km1Context | undefined): Uint8Array {
  checkHeader(h)
  return encodeFieldList([KM1_PREFIX, h.key, String(h.version), ...contextFields(context)])
}

// The associated data of a call without context depends on the header alone, and
// a batch seals many items under one key version: built once per header (it is
// not secret), bounded. Only sealKm1/openKm1 use it; they never modify it.
const HEADER_AD_CACHE = 256
const headerAds = new Map<string, Uint8Array>()

function associatedData(h: Km1Header, context: Km1Context | undefined): Uint8Array {
  const bare = context === undefined || (typeof context === 'object' && context !== null && !Array.isArray(context) && Object.keys(context).length === 0)
  if (!bare || typeof h.key !== 'string' || typeof h.version !== 'number') return km1AssociatedData(h, context)
  const id = `${h.key}:${h.version}`
  let ad = headerAds.get(id)
  if (ad === undefined) {
    ad = km1AssociatedData(h, undefined)
    if (headerAds.size >= HEADER_AD_CACHE) headerAds.clear()
    headerAds.set(id, ad)
  }
  return ad
}

/**
 * SHA-256 (hex) of the canonical context encoding, for audit entries: equal
 * contexts hash alike whatever their key order, and the audit log never holds
 * the context itself. A domain label keeps it apart from other hashed encodings.
 */
export function contextHash(suite: CryptoSuite, context: Km1Context | undefined): string {
  const digest = suite.sha256(encodeFieldList(['keymesh context v1', ...contextFields(context)]))
  return Buffer.from(digest.buffer, digest.byteOffset, digest.length).toString('hex')
}

/**
 * Seals `plaintext` under the 32-byte `key` (the material of version h.version of
 * key h.key) with a fresh random nonce from the suite. Sizes whose text would pass
 * MAX_KMS_CIPHERTEXT_TEXT are refused before any encryption.
 */
export function sealKm1(suite: CryptoSuite, h: Km1Header, key: Uint8Array, plaintext: Uint8Array, context?: Km1Context): string {
  const ad = associatedData(h, context)
  const bodyLength = Math.ceil(((MIN_BODY_BYTES + plaintext.length) * 4) / 3)
  if (`${KM1_PREFIX}:${h.key}:${h.version}:`.length + bodyLength > MAX_KMS_CIPHERTEXT_TEXT) {
    throw formatError(`ciphertext would exceed ${MAX_KMS_CIPHERTEXT_TEXT} characters`)
  }
  const nonce = suite.randomBytes(AEAD_NONCE_BYTES)
  // nonce ‖ ciphertext ‖ tag sealed into one buffer, as formatKm1 would join
  // them; the header passed checkHeader in associatedData, and the length
  // check is above.
  const body = Buffer.allocUnsafe(AEAD_NONCE_BYTES + plaintext.length + AEAD_TAG_BYTES)
  body.set(nonce, 0)
  suite.aeadSealInto(key, nonce, plaintext, ad, body, AEAD_NONCE_BYTES)
  return `${KM1_PREFIX}:${h.key}:${h.version}:${body.toString('base64url')}`
}

/**
 * Opens a parsed km1 ciphertext with the material of its version. Throws
 * PROTO_ERR_DECRYPT when the key, the context, the header or any byte differs
 * from what was sealed; no plaintext is returned then.
 */
export function openKm1(suite: CryptoSuite, c: Km1, key: Uint8Array, context?: Km1Context): Uint8Array {
  return suite.aeadOpen(key, c.nonce, c.sealed, associatedData(c, context))
}
