// Signature and MAC text: like a km1 ciphertext, it names its key and version, so
// verification picks the version from the text and never tries keys in turn.
//
//   km1s:<key>:<version>:<base64url(signature)>   an ed25519 or ecdsa-p256 signature (64 bytes)
//   km1m:<key>:<version>:<base64url(tag)>         an hmac-sha256 tag (32 bytes, never truncated)
//
// The signature is over the message exactly (pure Ed25519, RFC 8032; ECDSA P-256
// with SHA-256 in IEEE P1363 form r ‖ s), so the body alone verifies outside
// keymesh with the key's public key (`keymesh key public`). The header is not
// signed: a signature moved under another key's name or version fails to verify
// there. Each value has one spelling (canonical decimal, canonical unpadded
// base64url), as in ciphertext.ts. Errors never repeat the text.
import { protoError } from './errors.js'
import { MAX_KMS_CIPHERTEXT_TEXT } from './messages/kms.js'
import { isKeyName, isKeyVersion, MAX_KEY_VERSION } from './names.js'

export const SIGNATURE_PREFIX = 'km1s'
export const MAC_PREFIX = 'km1m'
export const SIGNATURE_BYTES = 64
export const MAC_BYTES = 32

export type TagKind = 'signature' | 'mac'

export interface KeyTag {
  readonly kind: TagKind
  readonly key: string
  readonly version: number
  /** The signature or the MAC tag. */
  readonly bytes: Uint8Array
}

const VERSION_RE = /^[1-9][0-9]{0,9}$/
const prefixOf = (kind: TagKind): string => (kind === 'signature' ? SIGNATURE_PREFIX : MAC_PREFIX)
const sizeOf = (kind: TagKind): number => (kind === 'signature' ? SIGNATURE_BYTES : MAC_BYTES)
const formatError = (detail: string) => protoError('PROTO_ERR_SIGNATURE_FORMAT', detail)

/** The text of a signature or MAC made with version `version` of key `key`. */
export function formatKeyTag(t: KeyTag): string {
  if (!isKeyName(t.key)) throw protoError('PROTO_ERR_INVALID_NAME', 'key name breaks the key-name rules')
  if (!isKeyVersion(t.version)) throw protoError('PROTO_ERR_INVALID_NAME', `key version must be an integer in 1..${MAX_KEY_VERSION}`)
  if (!(t.bytes instanceof Uint8Array) || t.bytes.length !== sizeOf(t.kind)) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', `a ${t.kind} is ${sizeOf(t.kind)} bytes`)
  }
  return `${prefixOf(t.kind)}:${t.key}:${t.version}:${Buffer.from(t.bytes.buffer, t.bytes.byteOffset, t.bytes.length).toString('base64url')}`
}

/** Parses km1s (kind 'signature') or km1m (kind 'mac') text; PROTO_ERR_SIGNATURE_FORMAT for anything else. */
export function parseKeyTag(kind: TagKind, text: unknown): KeyTag {
  const prefix = prefixOf(kind)
  if (typeof text !== 'string' || text.length > MAX_KMS_CIPHERTEXT_TEXT) throw formatError(`${kind} must be ${prefix} text`)
  const parts = text.split(':')
  if (parts[0] !== prefix) throw formatError(`a ${kind} starts with ${prefix}:`)
  if (parts.length !== 4) throw formatError(`a ${kind} is ${prefix}:<key>:<version>:<data>`)
  const [, key, versionText, body] = parts as [string, string, string, string]
  if (!isKeyName(key)) throw formatError('key name breaks the key-name rules')
  if (!VERSION_RE.test(versionText) || !isKeyVersion(Number(versionText))) throw formatError(`version must be canonical decimal 1..${MAX_KEY_VERSION}`)
  const bytes = Buffer.from(body, 'base64url')
  if (bytes.toString('base64url') !== body) throw formatError('data must be canonical unpadded base64url')
  if (bytes.length !== sizeOf(kind)) throw formatError(`a ${kind} is ${sizeOf(kind)} bytes`)
  return { kind, key, version: Number(versionText), bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) }
}
