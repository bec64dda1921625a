// Sizing KMS batches to records. A kms.batch and each kms.batch.response are one
// control message, so one record: at most MAX_MESSAGE_BYTES (65,510) encoded and
// MAX_KMS_BATCH_ITEMS items. An agent holding N items (a batch call of its local
// API) splits them with planKmsBatches; the control plane packs the replies with
// encodeKmsBatchResponse, in as many parts as they need.
//
// Sizes are computed, not measured by encoding: kmsItemBytes is the exact length
// of a schema-valid item's JSON in a kms.batch (plus its comma), from the lengths
// of its fields, so planning costs no base64 and no pass over long strings.
// kmsReplyEstimate bounds its successful reply from above; the plan keeps both
// under the limit, so a batch of successes is answered in one part. Error
// replies (up to ~650 bytes each) can be longer than a small item's success:
// the control plane then answers in several parts, never losing a reply.
//
// Contract:
//   - planKmsBatches keeps the order of the items; every group it returns has
//     1..maxItems items and, when its items are schema-valid, encodes as one
//     kms.batch within maxBytes (any valid item fits a message alone).
//   - encodeKmsBatchResponse returns one or more encoded kms.batch.response
//     messages, each within maxBytes and MAX_KMS_BATCH_ITEMS, together holding
//     one reply per given reply in order, the last with `last: true`. A reply
//     that fails its schema or cannot fit a message alone is sent as an error
//     reply with the same id (its code: PROTO_ERR_MESSAGE_FIELD or
//     PROTO_ERR_MESSAGE_TOO_LARGE), like a single kms.response the control plane
//     cannot encode.
import { AEAD_NONCE_BYTES, AEAD_TAG_BYTES } from '../crypto/suite.js'
import { isKeymeshError, protoError } from '../errors.js'
import { ED25519_SIGNATURE_BYTES as SIGNATURE_BYTES } from '../crypto/signing.js'
import { isKeyName, isKeyVersion, MAX_KEY_NAME, MAX_KEY_VERSION } from '../names.js'
import { MAX_MESSAGE_BYTES } from './fields.js'
import { kmsResponseSchema, MAX_KMS_BATCH_ITEMS, MAX_KMS_CIPHERTEXT_TEXT, MAX_KMS_PLAINTEXT, type KmsBatchItem, type KmsItemReply } from './kms.js'
import { encodeValue } from './schema.js'

export interface KmsBatchLimits {
  /** Items per message; default and at most MAX_KMS_BATCH_ITEMS. */
  readonly maxItems?: number
  /** Encoded bytes per message; default and at most MAX_MESSAGE_BYTES. */
  readonly maxBytes?: number
}

const MAX_ID = Number.MAX_SAFE_INTEGER
/** The longest envelope around the items of either message, `[]` included. */
const ENVELOPE_BYTES = Math.max(
  `{"type":"kms.batch","id":${MAX_ID},"items":[]}`.length,
  `{"type":"kms.batch.response","id":${MAX_ID},"last":false,"items":[]}`.length,
)
const VERSION_DIGITS = String(MAX_KEY_VERSION).length
/** A successful reply around its id, key name and version, with its comma. */
const REPLY_FRAME = '{"id":,"ok":true,"result":{"key":"","version":}},'.length
/** These fields around their values, with their commas. */
const CIPHERTEXT_FIELD = '"ciphertext":"",'.length
const PLAINTEXT_FIELD = '"plaintext":"",'.length
const VALID_FIELD = '"valid":false,'.length
/** km1:<key>:<version>: before the sealed body, less the key name. */
const KM1_HEADER = 'km1:::'.length + VERSION_DIGITS
/** Nonce and tag around the plaintext in a km1 body. */
const KM1_OVERHEAD = AEAD_NONCE_BYTES + AEAD_TAG_BYTES
const DEFAULT_DATA_KEY_BYTES = 32

const b64 = (n: number): number => Math.ceil(n / 3) * 4
const b64url = (n: number): number => Math.ceil((n * 4) / 3)
const jsonBytes = (v: string | object): number => Buffer.byteLength(JSON.stringify(v))
/** Printable ASCII without `"` and `\\`: text JSON writes as it is, between quotes. */
const JSON_PLAIN_RE = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/**
 * ASCII without a quote or a backslash: JSON writes it as it is, one byte a
 * character, unless it holds a control character, which no schema-valid string
 * field of a request does (the key-name and ciphertext rules exclude them). A
 * regex proving that too cost ~0.8 µs per 1.4 KB ciphertext; this, ~0.05.
 */
const isPlainText = (v: string): boolean => !v.includes('"') && !v.includes('\\') && Buffer.byteLength(v) === v.length

/**
 * Bytes of `item` inside a kms.batch message, its separating comma included;
 * exact for a schema-valid item (one that is not fails its encoding anyway).
 */
export function kmsItemBytes(item: KmsBatchItem): number {
  let n = 2 + 1 // braces, comma
  let fields = 0
  for (const [name, v] of Object.entries(item)) {
    if (v === undefined) continue
    fields++
    n += name.length + 3 // "name":
    if (v instanceof Uint8Array) n += b64(v.length) + 2
    else if (typeof v === 'string' && isPlainText(v)) n += v.length + 2 // a ciphertext: no escapes, one byte a character
    else if (typeof v === 'string' || typeof v === 'object') n += jsonBytes(v)
    else n += String(v).length
  }
  return n + Math.max(0, fields - 1)
}

/**
 * At least the bytes of the successful reply to `item` inside a
 * kms.batch.response, its comma included (the key name of a decrypt or rewrap
 * is read from the ciphertext's header, the version taken at its longest).
 */
export function kmsReplyEstimate(item: KmsBatchItem): number {
  const ciphertext = item.ciphertext ?? ''
  const key = item.key?.length ?? headerKeyLength(ciphertext)
  const frame = REPLY_FRAME + String(item.id).length + key + VERSION_DIGITS
  const sealed = (n: number): number => CIPHERTEXT_FIELD + KM1_HEADER + key + b64url(KM1_OVERHEAD + n)
  switch (item.op) {
    case 'encrypt':
      return frame + sealed(item.plaintext?.length ?? 0)
    case 'decrypt':
      // The plaintext's base64 is shorter than the base64url of nonce + plaintext + tag.
      return frame + PLAINTEXT_FIELD + ciphertext.length
    case 'rewrap':
      // The same body under the primary, whose version may be longer.
      return frame + CIPHERTEXT_FIELD + ciphertext.length + VERSION_DIGITS
    case 'datakey': {
      const n = item.bytes ?? DEFAULT_DATA_KEY_BYTES
      return frame + sealed(n) + (item.wrappedOnly === true ? 0 : PLAINTEXT_FIELD + b64(n))
    }
    case 'dropopen':
    case 'dropseal':
      // A 32-byte chunk key or sender term.
      return frame + PLAINTEXT_FIELD + b64(32)
    case 'sign':
    case 'hmac':
      // km1s:<key>:<version>:<64 bytes> (both signature kinds; a km1m tag is shorter).
      return frame + CIPHERTEXT_FIELD + KM1_HEADER + 1 + key + b64url(SIGNATURE_BYTES)
    case 'verify':
    case 'hmacverify':
      return frame + VALID_FIELD
  }
}

/** The key name's length in a km1 header (`km1:<key>:…`); the longest name when there is none. */
function headerKeyLength(ciphertext: string): number {
  const start = ciphertext.indexOf(':') + 1
  const end = start > 0 ? ciphertext.indexOf(':', start) : -1
  return end > start ? end - start : MAX_KEY_NAME
}

/** The limits with their defaults, checked (PROTO_ERR_INVALID_ARGUMENT). */
export function kmsBatchLimits(limits: KmsBatchLimits): { maxItems: number; maxBytes: number } {
  return limitsOf(limits)
}

function limitsOf(limits: KmsBatchLimits): { maxItems: number; maxBytes: number } {
  const maxItems = limits.maxItems ?? MAX_KMS_BATCH_ITEMS
  const maxBytes = limits.maxBytes ?? MAX_MESSAGE_BYTES
  if (!Number.isSafeInteger(maxItems) || maxItems < 1 || maxItems > MAX_KMS_BATCH_ITEMS) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', `maxItems must be 1..${MAX_KMS_BATCH_ITEMS}`)
  }
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= ENVELOPE_BYTES || maxBytes > MAX_MESSAGE_BYTES) {
    throw protoError('PROTO_ERR_INVALID_ARGUMENT', `maxBytes must be ${ENVELOPE_BYTES + 1}..${MAX_MESSAGE_BYTES}`)
  }
  return { maxItems, maxBytes }
}

/**
 * Splits `items` into consecutive groups, each one kms.batch message: at most
 * maxItems items, and both the items and the estimate of their successful
 * replies within maxBytes. An item too large to share goes alone.
 */
export function planKmsBatches<T extends KmsBatchItem>(items: readonly T[], limits: KmsBatchLimits = {}): T[][] {
  const { maxItems, maxBytes } = limitsOf(limits)
  const room = maxBytes - ENVELOPE_BYTES
  const groups: T[][] = []
  let group: T[] = []
  let request = 0
  let reply = 0
  for (const item of items) {
    const q = kmsItemBytes(item)
    const r = kmsReplyEstimate(item)
    if (group.length > 0 && (group.length >= maxItems || request + q > room || reply + r > room)) {
      groups.push(group)
      group = []
      request = 0
      reply = 0
    }
    group.push(item)
    request += q
    reply += r
  }
  if (group.length > 0) groups.push(group)
  return groups
}

/** The replies to batch `id` as encoded kms.batch.response messages (see the contract above). */
export function encodeKmsBatchResponse(id: number, replies: readonly KmsItemReply[], limits: KmsBatchLimits = {}): Uint8Array[] {
  const { maxItems, maxBytes } = limitsOf(limits)
  if (replies.length === 0) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'a batch response holds at least one reply')
  const room = maxBytes - ENVELOPE_BYTES
  const parts: Part[] = []
  let part: Part = { items: [], bytes: 0 }
  for (const reply of replies) {
    let json = replyJson(reply)
    let n = Buffer.byteLength(json)
    if (n + 1 > room) {
      json = errorJson(reply.id, protoError('PROTO_ERR_MESSAGE_TOO_LARGE'))
      n = Buffer.byteLength(json)
    }
    if (part.items.length > 0 && (part.items.length >= maxItems || part.bytes + n + 1 > room)) {
      parts.push(part)
      part = { items: [], bytes: 0 }
    }
    part.items.push(json)
    part.bytes += n + 1
  }
  parts.push(part)
  return parts.map((p, i) => encodePart(id, i === parts.length - 1, p))
}

interface Part {
  readonly items: string[]
  /** UTF-8 bytes of the items with one separator each. */
  bytes: number
}

/**
 * One part, written straight into its buffer (no joined string, no second
 * encoding pass); field order as encodeMessage writes it: type, id, last, items.
 * The buffer is not from Node's shared pool: it may hold plaintext, and the
 * session wipes it once sent.
 */
function encodePart(id: number, last: boolean, p: Part): Uint8Array {
  const head = `{"type":"kms.batch.response","id":${id},"last":${last},"items":[`
  const out = Buffer.allocUnsafeSlow(head.length + p.bytes - 1 + 2)
  let at = out.write(head, 0, 'latin1')
  p.items.forEach((json, i) => {
    if (i > 0) out[at++] = 0x2c // ,
    at += out.write(json, at, 'utf8')
  })
  out[at++] = 0x5d // ]
  out[at++] = 0x7d // }
  return new Uint8Array(out.buffer, out.byteOffset, at)
}

/**
 * One reply's JSON in a kms.batch.response, as encodeKmsBatchResponse writes it:
 * the reply itself, or, when it fails its schema, an error reply with its id and
 * the schema's code (kms-frame.ts takes the binary frame's unusual replies from here).
 */
export function kmsReplyJson(reply: KmsItemReply): string {
  return replyJson(reply)
}

function replyJson(reply: KmsItemReply): string {
  try {
    return fastReplyJson(reply) ?? JSON.stringify(encodeValue(kmsResponseSchema, reply))
  } catch (err) {
    return errorJson(reply.id, err)
  }
}


/**
 * The JSON of a successful reply, byte for byte what the schema path writes (its
 * field order, its checks), written without the generic walk: on Node 20,
 * JSON.stringify of a 1.4 KB ciphertext costs ~2.4 µs, a third of a whole
 * encrypt. Undefined for anything unusual (an error reply, a field the check
 * does not pass), which then takes the schema path and its errors.
 */
export function fastReplyJson(reply: KmsItemReply): string | undefined {
  const r = reply.result
  if (reply.ok !== true || typeof r !== 'object' || r === null || reply.error !== undefined || !Number.isSafeInteger(reply.id) || reply.id < 1) return undefined
  for (const name of Object.keys(reply)) {
    if (name !== 'id' && name !== 'ok' && name !== 'result' && name !== 'error') return undefined
  }
  let out = `{"id":${reply.id},"ok":true,"result":{`
  let sep = ''
  for (const name of Object.keys(r)) {
    if (name !== 'plaintext' && name !== 'ciphertext' && name !== 'key' && name !== 'version') return undefined
  }
  if (r.plaintext !== undefined) {
    if (!(r.plaintext instanceof Uint8Array) || r.plaintext.length > MAX_KMS_PLAINTEXT) return undefined
    out += `"plaintext":"${Buffer.from(r.plaintext.buffer, r.plaintext.byteOffset, r.plaintext.length).toString('base64')}"`
    sep = ','
  }
  if (r.ciphertext !== undefined) {
    const c = r.ciphertext
    if (typeof c !== 'string' || c.length > MAX_KMS_CIPHERTEXT_TEXT || !JSON_PLAIN_RE.test(c)) return undefined
    out += `${sep}"ciphertext":"${c}"`
    sep = ','
  }
  if (r.key !== undefined) {
    if (!isKeyName(r.key)) return undefined
    out += `${sep}"key":"${r.key}"`
    sep = ','
  }
  if (r.version !== undefined) {
    if (!isKeyVersion(r.version)) return undefined
    out += `${sep}"version":${r.version}`
  }
  return `${out}}}`
}

function errorJson(id: number, err: unknown): string {
  const e = isKeymeshError(err) ? err : protoError('PROTO_ERR_MESSAGE_FIELD')
  return JSON.stringify(encodeValue(kmsResponseSchema, { id, ok: false, error: { code: e.code, message: e.message.slice(0, 512) } }))
}
