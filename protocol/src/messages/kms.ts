// KMS operations an agent performs for its service over the control session
// (issue 5). Requests carry an id chosen by the agent (unique among its pending
// requests) and the response echoes it, so many requests can be in flight; a batch
// API call travels as kms.batch messages (below).
//
//   op        required                 optional           result
//   encrypt   key, plaintext           context            ciphertext, key, version
//   decrypt   ciphertext               key, context       plaintext, key, version
//   rewrap    ciphertext               key, context       ciphertext, key, version
//   datakey   key                      context, wrappedOnly, bytes
//                                                         ciphertext (+ plaintext unless wrappedOnly)
//   dropopen  header                                      plaintext (the drop's chunk key), key, version
//   dropseal  header                                      plaintext (the drop's sender term), key, version
//   sign      key, plaintext                              ciphertext (km1s signature text), key, version
//   verify    ciphertext, plaintext                       valid, key, version
//   hmac      key, plaintext                              ciphertext (km1m MAC text), key, version
//   hmacverify ciphertext, plaintext                      valid, key, version
//
// The signature operations (signature.ts) reuse the two data fields: `plaintext`
// carries the message signed or MACed (secret like any plaintext), `ciphertext`
// the km1s or km1m text. A signature or MAC that does not verify is `valid: false`,
// not an error; a key of another type, a missing right or an unusable version is.
//
// Both take the header of an x25519 drop (drop-header.ts) and derive from it, so no
// operation hands out a raw X25519 result that could open another drop:
//   - `dropopen`: the caller must be the header's recipient service and hold `decrypt`
//     on the header's key; the control plane computes the chunk key of that drop
//     (with the sender term when the header names a sender key) and returns it.
//   - `dropseal`: the caller must be the header's sender service and hold `encrypt` on
//     the header's sender key; the control plane returns the sender term that
//     authenticates it (drop-stream.ts). The answer names the sender key.
//
// `ciphertext` is the self-describing text form (km1:<key>:<version>:...), defined
// with the ciphertext format; here it is bounded printable ASCII. Plaintext is at
// most 32 KiB per request so that base64 of it, a context and the envelope fit
// one record; larger data goes through a data key (envelope encryption).
//
// Batches: kms.batch {id, items} carries 1..MAX_KMS_BATCH_ITEMS requests, each
// exactly a kms.request without its `type`, with its own id (unique in the
// message). The control plane answers with one or more kms.batch.response
// {id, last, items} that together hold exactly one kms.response-shaped reply
// per item, in the order of the items, the final part with `last: true`; more
// than one part only when the replies do not fit one record. kms-batch.ts sizes
// batches to records (planKmsBatches) and packs the replies.
import { MAX_DROP_HEADER_BYTES } from '../drop-header.js'
import { isKeyName, isKeyVersion } from '../names.js'
import { errorCode, errorText, keyName, keyVersion } from './fields.js'
import { array, bool, bytes, int, map, object, oneOf, optional, str, type Infer, type ObjectField, type Shape } from './schema.js'

export const MAX_KMS_PLAINTEXT = 32 * 1024
export const MAX_KMS_CIPHERTEXT_TEXT = 44_000
export const MAX_CONTEXT_ENTRIES = 16
export const KMS_OPS = ['encrypt', 'decrypt', 'rewrap', 'datakey', 'dropopen', 'dropseal', 'sign', 'verify', 'hmac', 'hmacverify'] as const
export type KmsOp = (typeof KMS_OPS)[number]

const CIPHERTEXT_RE = /^[\x21-\x7e]+$/
const ciphertextText = str(MAX_KMS_CIPHERTEXT_TEXT, { pattern: CIPHERTEXT_RE })
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
  dropopen: ['header'],
  dropseal: ['header'],
  sign: ['key', 'plaintext'],
  verify: ['ciphertext', 'plaintext'],
  hmac: ['key', 'plaintext'],
  hmacverify: ['ciphertext', 'plaintext'],
}
const ALLOWED: Record<string, readonly string[]> = {
  encrypt: ['key', 'plaintext', 'context'],
  decrypt: ['key', 'ciphertext', 'context'],
  rewrap: ['key', 'ciphertext', 'context'],
  datakey: ['key', 'context', 'wrappedOnly', 'bytes'],
  dropopen: ['header'],
  dropseal: ['header'],
  sign: ['key', 'plaintext'],
  verify: ['ciphertext', 'plaintext'],
  hmac: ['key', 'plaintext'],
  hmacverify: ['ciphertext', 'plaintext'],
}
const OPTIONAL_FIELDS = ['key', 'plaintext', 'ciphertext', 'context', 'wrappedOnly', 'bytes', 'header']

/** The fields each operation requires and allows; the name of the first offending field (kms-wire.ts uses it too). */
export function requestRule(r: Record<string, unknown>): string | undefined {
  const op = r['op'] as string
  for (const f of REQUIRED[op] as readonly string[]) if (r[f] === undefined) return f
  for (const f of OPTIONAL_FIELDS) {
    if (r[f] !== undefined && !(ALLOWED[op] as readonly string[]).includes(f)) return f
  }
  return undefined
}

export const kmsRequestSchema = fast(object(
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
    /** dropopen, dropseal: the bytes of an x25519 drop's header. */
    header: optional(bytes(1, MAX_DROP_HEADER_BYTES)),
  },
  requestRule,
), decodeRequestFast)

export const kmsResultSchema = object({
  plaintext: optional(bytes(0, MAX_KMS_PLAINTEXT, { secret: true })),
  ciphertext: optional(ciphertextText),
  key: optional(keyName),
  version: optional(keyVersion),
  /** verify, hmacverify: whether the signature or MAC is that of the message. */
  valid: optional(bool()),
})

export const kmsResponseSchema = fast(object(
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
), decodeReplyFast)

/** Requests in one kms.batch message, and replies in one kms.batch.response. */
export const MAX_KMS_BATCH_ITEMS = 256

/** One item of a kms.batch: a kms.request without its `type`. */
export type KmsBatchItem = Infer<typeof kmsRequestSchema>
/** One reply of a kms.batch.response: a kms.response without its `type`. */
export type KmsItemReply = Infer<typeof kmsResponseSchema>

/** Each reply is matched to its item by id, so the ids in one message must differ. */
function uniqueItemIds(r: Record<string, unknown>): string | undefined {
  const items = r['items'] as readonly { id: number }[]
  const seen = new Set<number>()
  for (const item of items) {
    if (seen.has(item.id)) return 'items'
    seen.add(item.id)
  }
  return undefined
}

export const kmsBatchSchema = object(
  {
    id: requestId,
    items: array(kmsRequestSchema, MAX_KMS_BATCH_ITEMS, 1),
  },
  uniqueItemIds,
)

export const kmsBatchResponseSchema = object(
  {
    id: requestId,
    /** True on the final part: every item of the batch has had its reply. */
    last: bool(),
    items: array(kmsResponseSchema, MAX_KMS_BATCH_ITEMS, 1),
  },
  uniqueItemIds,
)

// ---- fast decoding ---------------------------------------------------------
//
// A kms.batch of 100 items went through the generic schema walk item by item,
// on the agent (API bodies, replies) and on the control plane (requests): about
// a fifth of each process's CPU per item. These decoders take the usual shapes
// (a request with id, op, key, plaintext, ciphertext; a successful reply) and
// apply the very same rules; anything else (a context, the datakey and drop
// fields, an error reply, any field that fails) returns undefined, so the
// generic walk runs and raises its own error. Each returns what the walk would,
// field for field and in the same order (test/protocol/messages/kms.test.ts).

/** Base64 text of the largest plaintext. */
export const MAX_PLAINTEXT_B64 = Math.ceil(MAX_KMS_PLAINTEXT / 3) * 4

function fast<S extends Shape>(f: ObjectField<S>, fastDecode: (v: unknown) => Record<string, unknown> | undefined): ObjectField<S> {
  return { ...f, fastDecode }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

export const isRequestId = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1
const present = (v: unknown): number => (v === undefined ? 0 : 1)

/** Canonical padded base64 of at most MAX_KMS_PLAINTEXT bytes, as schema.ts decodeBytes checks it. */
function plaintextOf(v: unknown): Uint8Array | undefined {
  if (typeof v !== 'string' || v.length > MAX_PLAINTEXT_B64) return undefined
  const buf = Buffer.from(v, 'base64')
  if (buf.length > MAX_KMS_PLAINTEXT || buf.toString('base64') !== v) return undefined
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

const isCiphertextText = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_KMS_CIPHERTEXT_TEXT && CIPHERTEXT_RE.test(v)

function decodeRequestFast(v: unknown): Record<string, unknown> | undefined {
  if (!isRecord(v) || !isRequestId(v['id'])) return undefined
  return decodeFields(v, v['op'], { id: v['id'], op: v['op'] }, 2)
}

/**
 * A request's fields without its id (the data API's body of `op`), decoded as
 * the kms.request schema would decode them with that id and op; undefined for
 * anything but the usual shapes, which then take the schema path and its errors.
 */
export function decodeKmsRequestFields(op: KmsOp, v: unknown): Omit<KmsBatchItem, 'id'> | undefined {
  if (!isRecord(v)) return undefined
  return decodeFields(v, op, { op }, 0) as Omit<KmsBatchItem, 'id'> | undefined
}

/** The operations whose fields are only key, plaintext and ciphertext. */
const FAST_OPS: ReadonlySet<string> = new Set(['encrypt', 'decrypt', 'rewrap', 'datakey', 'sign', 'verify', 'hmac', 'hmacverify'])

/** `out` (holding `own` of v's fields so far) with the op's fields added, when they are the usual ones and pass. */
function decodeFields(v: Record<string, unknown>, op: unknown, out: Record<string, unknown>, own: number): Record<string, unknown> | undefined {
  const { key, plaintext, ciphertext } = v
  // Any other field (or one given as undefined) is for the walk.
  if (Object.keys(v).length !== own + present(key) + present(plaintext) + present(ciphertext)) return undefined
  if (!FAST_OPS.has(op as string)) return undefined
  if (key !== undefined) {
    if (!isKeyName(key)) return undefined
    out['key'] = key
  }
  if (ciphertext !== undefined && !isCiphertextText(ciphertext)) return undefined
  if (requestRule({ op, key, plaintext, ciphertext }) !== undefined) return undefined
  if (plaintext !== undefined) {
    const bytes = plaintextOf(plaintext)
    if (bytes === undefined) return undefined
    out['plaintext'] = bytes
  }
  if (ciphertext !== undefined) out['ciphertext'] = ciphertext
  return out
}

function decodeReplyFast(v: unknown): Record<string, unknown> | undefined {
  if (!isRecord(v)) return undefined
  const { id, ok, result: r } = v
  if (ok !== true || !isRequestId(id) || !isRecord(r) || Object.keys(v).length !== 3) return undefined
  const { plaintext, ciphertext, key, version } = r
  if (Object.keys(r).length !== present(plaintext) + present(ciphertext) + present(key) + present(version)) return undefined
  if ((ciphertext !== undefined && !isCiphertextText(ciphertext)) || (key !== undefined && !isKeyName(key)) || (version !== undefined && !isKeyVersion(version))) {
    return undefined
  }
  const result: Record<string, unknown> = {}
  if (plaintext !== undefined) {
    const bytes = plaintextOf(plaintext)
    if (bytes === undefined) return undefined
    result['plaintext'] = bytes
  }
  if (ciphertext !== undefined) result['ciphertext'] = ciphertext
  if (key !== undefined) result['key'] = key
  if (version !== undefined) result['version'] = version
  return { id, ok, result }
}
