// KMS operations an agent performs for its service over the control session
// (issue 5). Requests carry an id chosen by the agent (unique among its pending
// requests) and the response echoes it, so many requests can be in flight; a batch
// API call becomes several requests.
//
//   op        required                 optional           result
//   encrypt   key, plaintext           context            ciphertext, key, version
//   decrypt   ciphertext               key, context       plaintext, key, version
//   rewrap    ciphertext               key, context       ciphertext, key, version
//   datakey   key                      context, wrappedOnly, bytes
//                                                         ciphertext (+ plaintext unless wrappedOnly)
//   agree     key, publicKey           context, version   plaintext (the X25519 shared secret), key, version
//
// `agree` opens public-key drops sealed offline to an x25519 key's public half:
// the control plane computes X25519(version's private scalar, publicKey) and hands
// the shared secret to a caller holding `decrypt`. `version` names the key version
// the drop was sealed to (its header says which); the default is the primary.
//
// `ciphertext` is the self-describing text form (km1:<key>:<version>:...), defined
// with the ciphertext format; here it is bounded printable ASCII. Plaintext is at
// most 32 KiB per request so that base64 of it, a context and the envelope fit
// one record; larger data goes through a data key (envelope encryption).
import { X25519_KEY_BYTES } from '../crypto/suite.js'
import { errorCode, errorText, keyName, keyVersion } from './fields.js'
import { bool, bytes, int, map, object, oneOf, optional, str } from './schema.js'

export const MAX_KMS_PLAINTEXT = 32 * 1024
export const MAX_KMS_CIPHERTEXT_TEXT = 44_000
export const MAX_CONTEXT_ENTRIES = 16
export const KMS_OPS = ['encrypt', 'decrypt', 'rewrap', 'datakey', 'agree'] as const
export type KmsOp = (typeof KMS_OPS)[number]

const ciphertextText = str(MAX_KMS_CIPHERTEXT_TEXT, { pattern: /^[\x21-\x7e]+$/ })
/** Caller context bound as associated data. Logged only as a hash: treat it as secret. */
const context = map(
  str(64, { pattern: /^[A-Za-z0-9._:/-]+$/ }),
  str(128, { min: 0 }),
  MAX_CONTEXT_ENTRIES,
  { secret: true },
)
const requestId = int(1, Number.MAX_SAFE_INTEGER)

const REQUIRED: Record<string, readonly string[]> = {
  encrypt: ['key', 'plaintext'],
  decrypt: ['ciphertext'],
  rewrap: ['ciphertext'],
  datakey: ['key'],
  agree: ['key', 'publicKey'],
}
const ALLOWED: Record<string, readonly string[]> = {
  encrypt: ['key', 'plaintext', 'context'],
  decrypt: ['key', 'ciphertext', 'context'],
  rewrap: ['key', 'ciphertext', 'context'],
  datakey: ['key', 'context', 'wrappedOnly', 'bytes'],
  agree: ['key', 'publicKey', 'context', 'version'],
}
const OPTIONAL_FIELDS = ['key', 'plaintext', 'ciphertext', 'context', 'wrappedOnly', 'bytes', 'publicKey', 'version']

export const kmsRequestSchema = object(
  {
    id: requestId,
    op: oneOf(...KMS_OPS),
    key: optional(keyName),
    plaintext: optional(bytes(0, MAX_KMS_PLAINTEXT, { secret: true })),
    ciphertext: optional(ciphertextText),
    context: optional(context),
    /** datakey: return only the wrapped key. */
    wrappedOnly: optional(bool()),
    /** datakey: data key length in bytes (default 32). */
    bytes: optional(int(16, 64)),
    /** agree: the peer's X25519 public key (e.g. a drop's ephemeral key). */
    publicKey: optional(bytes(X25519_KEY_BYTES)),
    /** agree: the x25519 key version to use (default the primary). */
    version: optional(keyVersion),
  },
  (r) => {
    const op = r['op'] as string
    for (const f of REQUIRED[op] as readonly string[]) if (r[f] === undefined) return f
    for (const f of OPTIONAL_FIELDS) {
      if (r[f] !== undefined && !(ALLOWED[op] as readonly string[]).includes(f)) return f
    }
    return undefined
  },
)

export const kmsResultSchema = object({
  plaintext: optional(bytes(0, MAX_KMS_PLAINTEXT, { secret: true })),
  ciphertext: optional(ciphertextText),
  key: optional(keyName),
  version: optional(keyVersion),
})

export const kmsResponseSchema = object(
  {
    id: requestId,
    ok: bool(),
    result: optional(kmsResultSchema),
    error: optional(object({ code: errorCode, message: errorText })),
  },
  (r) => {
    if (r['ok'] === true) return r['result'] === undefined ? 'result' : r['error'] !== undefined ? 'error' : undefined
    return r['error'] === undefined ? 'error' : r['result'] !== undefined ? 'result' : undefined
  },
)
