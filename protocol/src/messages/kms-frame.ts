// The binary KMS frame: kms.batch and kms.batch.response as length-prefixed
// bytes instead of JSON, for the agent ↔ control-plane session once both ends
// agreed to the 'kms.frame' feature (control-features.ts). Plaintext travels as
// raw bytes (no base64 on either end), items carry no field names, and decoding
// is one pass over the record with every length checked before it is used.
// Everything unusual keeps the JSON/schema path: a request item with a context,
// the datakey options or a drop header, any item the fast checks do not pass,
// and every reply that is not a plain success (error replies are taken from the
// JSON path's own text, so they are the same replies).
//
// Layout, version 1 (integers big-endian; `str8` = u8 length + bytes, `bin32` =
// u32 length + bytes):
//
//   frame    magic u8 = 0xB1 | version u8 = 1 | kind u8 | flags u8 | id u64 | count u16 | item × count
//            kind 1 kms.batch (flags 0), kind 2 kms.batch.response (flags bit 0: last)
//   request  id u64 | op u8 (index in KMS_OPS) | fields u8 (bit 0 key, 1 plaintext, 2 ciphertext)
//            [key str8] [plaintext bin32] [ciphertext bin32]
//   reply    id u64 | status u8 (0 ok, 1 error)
//            ok:    fields u8 (bit 0 plaintext, 1 ciphertext, 2 key, 3 version, 4 valid)
//                   [plaintext bin32] [ciphertext bin32] [key str8] [version u32] [valid u8 0|1]
//            error: code str8 | message u16 length + UTF-8
//
// 0xB1 cannot begin UTF-8 text, so a frame is never taken for a JSON message
// (which begins with `{`); a reader that does not know the feature fails it as
// malformed JSON. A ciphertext is its km1 text (ASCII): the base64url inside it
// is the ciphertext format's own, handed to the caller as it is.
//
// Contract:
//   - decodeKmsFrame returns exactly the message decodeMessage returns for the
//     JSON of the same message (fields, values, order); test/protocol/messages/
//     kms-frame.test.ts holds the two equal over seeded random messages.
//   - It rejects with PROTO_ERR_KMS_FRAME_VERSION a version or kind it does not
//     read, and with PROTO_ERR_KMS_FRAME anything else that is wrong: a length
//     past the end of the frame or over its field's limit (checked before any
//     bytes are taken), a count outside 1..MAX_KMS_BATCH_ITEMS, a reserved bit
//     set, a field that breaks the schema's rule, a repeated item id, bytes left
//     over. Details name the item index and field, never a value.
//   - The decoded plaintexts are views of one fresh copy of the frame (the
//     caller's buffer is wiped by the channel); their owners wipe them.
//   - The encoders return undefined for a message they do not take; the caller
//     then uses the JSON encoders (kms-wire.ts, kms-batch.ts), which raise their
//     own errors. Their output is not from Node's shared pool: it may hold
//     plaintext, and the channel wipes it once sealed.
import { ByteReader } from '../byte-reader.js'
import { protoError } from '../errors.js'
import { isKeyName, isKeyVersion, MAX_KEY_NAME } from '../names.js'
import { MAX_MESSAGE_BYTES } from './fields.js'
import { kmsBatchLimits, kmsReplyJson, type KmsBatchLimits } from './kms-batch.js'
import {
  isRequestId,
  KMS_OPS,
  kmsResponseSchema,
  MAX_KMS_BATCH_ITEMS,
  MAX_KMS_CIPHERTEXT_TEXT,
  MAX_KMS_PLAINTEXT,
  requestRule,
  type KmsBatchItem,
  type KmsItemReply,
} from './kms.js'
import { decodeValue } from './schema.js'

export const KMS_FRAME_MAGIC = 0xb1
export const KMS_FRAME_VERSION = 1
export const KMS_FRAME_BATCH = 1
export const KMS_FRAME_RESPONSE = 2
/** magic, version, kind, flags, id, count. */
export const KMS_FRAME_HEAD_BYTES = 1 + 1 + 1 + 1 + 8 + 2
/** The longest error message text (the schema's errorText), and its UTF-8 bound. */
const MAX_ERROR_TEXT = 512
const MAX_ERROR_TEXT_BYTES = MAX_ERROR_TEXT * 3
const MAX_ERROR_CODE = 64
const ERROR_CODE_RE = /^(?:PROTO|CP|AGENT)_ERR_[A-Z0-9_]{1,50}$/
const CIPHERTEXT_RE = /^[\x21-\x7e]+$/

const REQ_KEY = 1
const REQ_PLAINTEXT = 2
const REQ_CIPHERTEXT = 4
const RES_PLAINTEXT = 1
const RES_CIPHERTEXT = 2
const RES_KEY = 4
const RES_VERSION = 8
const RES_VALID = 16

const OP_INDEX: ReadonlyMap<string, number> = new Map(KMS_OPS.map((op, i) => [op, i]))
const TWO_32 = 0x1_0000_0000

/** The frame is a binary KMS frame (by its first byte), not a JSON message. */
export function isKmsFrame(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === KMS_FRAME_MAGIC
}

// ---- encoding --------------------------------------------------------------

interface ReqPlan {
  readonly item: KmsBatchItem
  readonly op: number
  readonly key: string | undefined
}

/**
 * The binary frame of a kms.batch, or undefined for one the frame does not take
 * (see the header): the caller then sends its JSON.
 */
export function encodeKmsBatchFrame(msg: { readonly type: 'kms.batch'; readonly id: number; readonly items: readonly KmsBatchItem[] }): Uint8Array | undefined {
  const { id, items } = msg
  if (!isRequestId(id) || !Array.isArray(items) || items.length < 1 || items.length > MAX_KMS_BATCH_ITEMS) return undefined
  let n = KMS_FRAME_HEAD_BYTES
  const plans: ReqPlan[] = new Array(items.length)
  const ids = new Set<number>()
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as KmsBatchItem
    const plan = planRequest(item)
    if (plan === undefined || ids.has(item.id)) return undefined
    ids.add(item.id)
    plans[i] = plan
    n += 8 + 1 + 1
    if (item.key !== undefined) n += 1 + item.key.length
    if (item.plaintext !== undefined) n += 4 + item.plaintext.length
    if (item.ciphertext !== undefined) n += 4 + item.ciphertext.length
  }
  if (n > MAX_MESSAGE_BYTES) return undefined
  const out = Buffer.allocUnsafeSlow(n)
  let at = head(out, KMS_FRAME_BATCH, 0, id, items.length)
  for (const { item, op, key } of plans) {
    at = writeId(out, at, item.id)
    out[at++] = op
    const { plaintext, ciphertext } = item
    out[at++] = (key !== undefined ? REQ_KEY : 0) | (plaintext !== undefined ? REQ_PLAINTEXT : 0) | (ciphertext !== undefined ? REQ_CIPHERTEXT : 0)
    if (key !== undefined) at = writeStr8(out, at, key)
    if (plaintext !== undefined) at = writeBin32(out, at, plaintext)
    if (ciphertext !== undefined) {
      out.writeUInt32BE(ciphertext.length, at)
      at += 4
      at += out.write(ciphertext, at, 'latin1')
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, at)
}

/** The item's op index when it holds only id, op, key, plaintext and ciphertext, each passing the schema's rule. */
function planRequest(item: KmsBatchItem): ReqPlan | undefined {
  if (typeof item !== 'object' || item === null) return undefined
  const { id, op, key, plaintext, ciphertext } = item
  // Only these fields, none of them given as undefined (id and op are checked below).
  for (const name in item) {
    if (name === 'key' || name === 'plaintext' || name === 'ciphertext') {
      if ((item as Record<string, unknown>)[name] === undefined) return undefined
    } else if (name !== 'id' && name !== 'op') return undefined
  }
  const opIndex = OP_INDEX.get(op)
  if (!isRequestId(id) || opIndex === undefined) return undefined
  if (key !== undefined && !isKeyName(key)) return undefined
  if (plaintext !== undefined && (!(plaintext instanceof Uint8Array) || plaintext.length > MAX_KMS_PLAINTEXT)) return undefined
  if (ciphertext !== undefined && (typeof ciphertext !== 'string' || ciphertext.length > MAX_KMS_CIPHERTEXT_TEXT || !CIPHERTEXT_RE.test(ciphertext))) return undefined
  if (requestRule({ op, key, plaintext, ciphertext }) !== undefined) return undefined
  return { item, op: opIndex, key }
}

/**
 * The replies to batch `id` as binary kms.batch.response frames, split like
 * encodeKmsBatchResponse (at most maxItems replies and maxBytes a frame, the
 * last with its flag). A reply that is not a plain success is first put through
 * the JSON path's rules (kmsReplyJson), so an error reply, or a reply that
 * breaks its schema, becomes exactly the reply JSON would have carried.
 */
export function encodeKmsResponseFrames(id: number, replies: readonly KmsItemReply[], limits: KmsBatchLimits = {}): Uint8Array[] {
  const { maxItems, maxBytes } = kmsBatchLimits(limits)
  if (replies.length === 0) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'a batch response holds at least one reply')
  if (!isRequestId(id)) throw protoError('PROTO_ERR_MESSAGE_FIELD', 'id: must be in 1..9007199254740991')
  const room = maxBytes - KMS_FRAME_HEAD_BYTES
  const parts: { replies: KmsItemReply[]; bytes: number }[] = []
  let part: { replies: KmsItemReply[]; bytes: number } = { replies: [], bytes: 0 }
  for (const given of replies) {
    let reply = given
    let n = plainReplyBytes(reply)
    if (n === undefined) {
      reply = decodeValue(kmsResponseSchema, JSON.parse(kmsReplyJson(given))) as KmsItemReply
      n = replyBytes(reply)
    }
    if (n > room) {
      reply = { id: reply.id, ok: false, error: { code: 'PROTO_ERR_MESSAGE_TOO_LARGE', message: protoError('PROTO_ERR_MESSAGE_TOO_LARGE').message } }
      n = replyBytes(reply)
    }
    if (part.replies.length > 0 && (part.replies.length >= maxItems || part.bytes + n > room)) {
      parts.push(part)
      part = { replies: [], bytes: 0 }
    }
    part.replies.push(reply)
    part.bytes += n
  }
  parts.push(part)
  return parts.map((p, i) => {
    const out = Buffer.allocUnsafeSlow(KMS_FRAME_HEAD_BYTES + p.bytes)
    let at = head(out, KMS_FRAME_RESPONSE, i === parts.length - 1 ? 1 : 0, id, p.replies.length)
    for (const r of p.replies) at = writeReply(out, at, r)
    return new Uint8Array(out.buffer, out.byteOffset, at)
  })
}

/** The bytes of a successful reply that passes the schema's rules, else undefined. */
function plainReplyBytes(reply: KmsItemReply): number | undefined {
  const r = reply.result
  if (reply.ok !== true || typeof r !== 'object' || r === null || reply.error !== undefined || !isRequestId(reply.id)) return undefined
  for (const name of Object.keys(reply)) {
    if (name !== 'id' && name !== 'ok' && name !== 'result' && name !== 'error') return undefined
  }
  for (const name of Object.keys(r)) {
    if (name !== 'plaintext' && name !== 'ciphertext' && name !== 'key' && name !== 'version' && name !== 'valid') return undefined
  }
  const { plaintext, ciphertext, key, version, valid } = r
  if (plaintext !== undefined && (!(plaintext instanceof Uint8Array) || plaintext.length > MAX_KMS_PLAINTEXT)) return undefined
  if (ciphertext !== undefined && (typeof ciphertext !== 'string' || ciphertext.length > MAX_KMS_CIPHERTEXT_TEXT || !CIPHERTEXT_RE.test(ciphertext))) return undefined
  if (key !== undefined && !isKeyName(key)) return undefined
  if (version !== undefined && !isKeyVersion(version)) return undefined
  if (valid !== undefined && typeof valid !== 'boolean') return undefined
  return replyBytes(reply)
}

/** The encoded length of a reply that has passed its checks. */
function replyBytes(reply: KmsItemReply): number {
  let n = 8 + 1
  const r = reply.result
  if (reply.ok && r !== undefined) {
    n += 1
    if (r.plaintext !== undefined) n += 4 + r.plaintext.length
    if (r.ciphertext !== undefined) n += 4 + r.ciphertext.length
    if (r.key !== undefined) n += 1 + r.key.length
    if (r.version !== undefined) n += 4
    if (r.valid !== undefined) n += 1
    return n
  }
  const e = reply.error as { code: string; message: string }
  return n + 1 + e.code.length + 2 + Buffer.byteLength(e.message)
}

function writeReply(out: Buffer, at: number, reply: KmsItemReply): number {
  at = writeId(out, at, reply.id)
  const r = reply.result
  if (reply.ok && r !== undefined) {
    out[at++] = 0
    const { plaintext, ciphertext, key, version, valid } = r
    out[at++] = (plaintext !== undefined ? RES_PLAINTEXT : 0) | (ciphertext !== undefined ? RES_CIPHERTEXT : 0) | (key !== undefined ? RES_KEY : 0) |
      (version !== undefined ? RES_VERSION : 0) | (valid !== undefined ? RES_VALID : 0)
    if (plaintext !== undefined) at = writeBin32(out, at, plaintext)
    if (ciphertext !== undefined) {
      out.writeUInt32BE(ciphertext.length, at)
      at += 4
      at += out.write(ciphertext, at, 'latin1')
    }
    if (key !== undefined) at = writeStr8(out, at, key)
    if (version !== undefined) at = out.writeUInt32BE(version, at)
    if (valid !== undefined) out[at++] = valid ? 1 : 0
    return at
  }
  out[at++] = 1
  const e = reply.error as { code: string; message: string }
  at = writeStr8(out, at, e.code)
  const len = Buffer.byteLength(e.message)
  at = out.writeUInt16BE(len, at)
  return at + out.write(e.message, at, 'utf8')
}

function head(out: Buffer, kind: number, flags: number, id: number, count: number): number {
  out[0] = KMS_FRAME_MAGIC
  out[1] = KMS_FRAME_VERSION
  out[2] = kind
  out[3] = flags
  writeId(out, 4, id)
  out.writeUInt16BE(count, 12)
  return KMS_FRAME_HEAD_BYTES
}

function writeId(out: Buffer, at: number, id: number): number {
  out.writeUInt32BE(Math.floor(id / TWO_32), at)
  out.writeUInt32BE(id % TWO_32, at + 4)
  return at + 8
}

function writeStr8(out: Buffer, at: number, s: string): number {
  out[at] = s.length
  return at + 1 + out.write(s, at + 1, 'latin1')
}

function writeBin32(out: Buffer, at: number, b: Uint8Array): number {
  out.writeUInt32BE(b.length, at)
  out.set(b, at + 4)
  return at + 4 + b.length
}

// ---- decoding --------------------------------------------------------------

export type KmsFrameMessage =
  | { type: 'kms.batch'; id: number; items: KmsBatchItem[] }
  | { type: 'kms.batch.response'; id: number; last: boolean; items: KmsItemReply[] }

const bad = (detail: string): never => {
  throw protoError('PROTO_ERR_KMS_FRAME', detail)
}


/**
 * Decodes a binary KMS frame of at most `maxBytes` (default and at most
 * MAX_MESSAGE_BYTES) into the message its JSON would decode to; see the contract.
 */
export function decodeKmsFrame(bytes: Uint8Array, maxBytes = MAX_MESSAGE_BYTES): KmsFrameMessage {
  if (!(bytes instanceof Uint8Array)) bad('not bytes')
  if (bytes.length > Math.min(maxBytes, MAX_MESSAGE_BYTES)) throw protoError('PROTO_ERR_MESSAGE_TOO_LARGE')
  if (bytes.length < KMS_FRAME_HEAD_BYTES) bad('shorter than the frame header')
  if (bytes[0] !== KMS_FRAME_MAGIC) bad('not a KMS frame')
  if (bytes[1] !== KMS_FRAME_VERSION) throw protoError('PROTO_ERR_KMS_FRAME_VERSION', `version ${bytes[1]}; this build reads ${KMS_FRAME_VERSION}`)
  const kind = bytes[2]
  if (kind !== KMS_FRAME_BATCH && kind !== KMS_FRAME_RESPONSE) throw protoError('PROTO_ERR_KMS_FRAME_VERSION', `kind ${kind}`)
  // One copy: the caller wipes its buffer once decoded, and the plaintexts live on as views.
  const copy = Buffer.allocUnsafeSlow(bytes.length)
  copy.set(bytes)
  const r = new ByteReader(copy, bad, 'frame')
  r.at = 3
  const flags = r.u8('flags')
  const id = r.id('id')
  const count = r.u16('count')
  if (count < 1 || count > MAX_KMS_BATCH_ITEMS) bad(`count: must be 1..${MAX_KMS_BATCH_ITEMS}`)
  const ids = new Set<number>()
  let out: KmsFrameMessage
  if (kind === KMS_FRAME_BATCH) {
    if (flags !== 0) bad('flags: reserved bits set')
    const items: KmsBatchItem[] = new Array(count)
    for (let i = 0; i < count; i++) {
      const item = readRequest(r, `items[${i}]`)
      if (ids.has(item.id)) bad(`items[${i}].id: repeated`)
      ids.add(item.id)
      items[i] = item
    }
    out = { type: 'kms.batch', id, items }
  } else {
    if ((flags & ~1) !== 0) bad('flags: reserved bits set')
    const items: KmsItemReply[] = new Array(count)
    for (let i = 0; i < count; i++) {
      const item = readReply(r, `items[${i}]`)
      if (ids.has(item.id)) bad(`items[${i}].id: repeated`)
      ids.add(item.id)
      items[i] = item
    }
    out = { type: 'kms.batch.response', id, last: (flags & 1) === 1, items }
  }
  if (r.at !== copy.length) bad(`${copy.length - r.at} bytes after the last item`)
  return out
}

function readRequest(r: ByteReader, path: string): KmsBatchItem {
  const id = r.id(`${path}.id`)
  const opIndex = r.u8(`${path}.op`)
  const op = KMS_OPS[opIndex]
  if (op === undefined) bad(`${path}.op: unknown operation`)
  const fields = r.u8(`${path}.fields`)
  if ((fields & ~(REQ_KEY | REQ_PLAINTEXT | REQ_CIPHERTEXT)) !== 0) bad(`${path}.fields: reserved bits set`)
  const out: Record<string, unknown> = { id, op }
  let key: string | undefined
  let plaintext: Uint8Array | undefined
  let ciphertext: string | undefined
  if ((fields & REQ_KEY) !== 0) {
    key = r.text(r.length(1, MAX_KEY_NAME, `${path}.key`), `${path}.key`)
    if (!isKeyName(key)) bad(`${path}.key: does not match the required form`)
    out['key'] = key
  }
  if ((fields & REQ_PLAINTEXT) !== 0) plaintext = r.bytes(r.length(4, MAX_KMS_PLAINTEXT, `${path}.plaintext`), `${path}.plaintext`)
  if ((fields & REQ_CIPHERTEXT) !== 0) ciphertext = readCiphertext(r, `${path}.ciphertext`)
  const rule = requestRule({ op, key, plaintext, ciphertext })
  if (rule !== undefined) bad(`${path}.${rule}: not allowed with the other fields`)
  if (plaintext !== undefined) out['plaintext'] = plaintext
  if (ciphertext !== undefined) out['ciphertext'] = ciphertext
  return out as KmsBatchItem
}

function readCiphertext(r: ByteReader, path: string): string {
  const s = r.text(r.length(4, MAX_KMS_CIPHERTEXT_TEXT, path), path)
  if (!CIPHERTEXT_RE.test(s)) bad(`${path}: does not match the required form`)
  return s
}

function readReply(r: ByteReader, path: string): KmsItemReply {
  const id = r.id(`${path}.id`)
  const status = r.u8(`${path}.status`)
  if (status === 1) {
    const code = r.text(r.length(1, MAX_ERROR_CODE, `${path}.error.code`), `${path}.error.code`)
    if (!ERROR_CODE_RE.test(code)) bad(`${path}.error.code: does not match the required form`)
    const n = r.length(2, MAX_ERROR_TEXT_BYTES, `${path}.error.message`)
    let message: string
    try {
      message = UTF8.decode(r.bytes(n, `${path}.error.message`))
    } catch {
      return bad(`${path}.error.message: not UTF-8`)
    }
    if (message.length > MAX_ERROR_TEXT) bad(`${path}.error.message: longer than ${MAX_ERROR_TEXT} characters`)
    return { id, ok: false, error: { code, message } }
  }
  if (status !== 0) bad(`${path}.status: must be 0 or 1`)
  const fields = r.u8(`${path}.fields`)
  if ((fields & ~(RES_PLAINTEXT | RES_CIPHERTEXT | RES_KEY | RES_VERSION | RES_VALID)) !== 0) bad(`${path}.fields: reserved bits set`)
  const result: NonNullable<KmsItemReply['result']> = {}
  if ((fields & RES_PLAINTEXT) !== 0) result.plaintext = r.bytes(r.length(4, MAX_KMS_PLAINTEXT, `${path}.result.plaintext`), `${path}.result.plaintext`)
  if ((fields & RES_CIPHERTEXT) !== 0) result.ciphertext = readCiphertext(r, `${path}.result.ciphertext`)
  if ((fields & RES_KEY) !== 0) {
    const key = r.text(r.length(1, MAX_KEY_NAME, `${path}.result.key`), `${path}.result.key`)
    if (!isKeyName(key)) bad(`${path}.result.key: does not match the required form`)
    result.key = key
  }
  if ((fields & RES_VERSION) !== 0) {
    const version = r.u32(`${path}.result.version`)
    if (!isKeyVersion(version)) bad(`${path}.result.version: out of range`)
    result.version = version
  }
  if ((fields & RES_VALID) !== 0) {
    const valid = r.u8(`${path}.result.valid`)
    if (valid > 1) bad(`${path}.result.valid: must be 0 or 1`)
    result.valid = valid === 1
  }
  return { id, ok: true, result }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
