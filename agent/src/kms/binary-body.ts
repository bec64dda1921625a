// Binary batch bodies of the data API: `Content-Type: application/octet-stream`
// on any of its routes, beside the JSON `{items: [...]}` body, for clients that
// would rather not base64 their data. Same items, same per-item outcomes and
// codes as JSON (an item that breaks a rule fails alone, AGENT_ERR_BAD_REQUEST or
// AGENT_ERR_TOO_LARGE, with the field named); a body whose structure is broken
// is refused whole with AGENT_ERR_BAD_FRAME (400).
//
// Layout, version 1 (integers big-endian; str8 = u8 length + bytes, bin32 = u32
// length + bytes, str16 = u16 length + UTF-8):
//
//   request   magic u8 = 0xB2 | version u8 = 1 | count u16 (0..MAX_BATCH_ITEMS) | item × count
//   item      fields u8 | [key str8] [data bin32] [text bin32] [context] [header bin32]
//             fields: bit 0 key, 1 data (plaintext; `message` of sign, verify, hmac,
//             hmac/verify), 2 text (ciphertext; `signature` of verify, `mac` of
//             hmac/verify), 3 context, 4 header (dropopen, dropseal); other bits 0
//   context   n u8 (≤ 16) | (name str8, value str16) × n
//   answer    magic u8 = 0xB2 | version u8 = 1 | count u16 | result × count, in the order of the items
//   result    status u8: 0 ok, 1 error
//             ok:    fields u8 (bit 0 data, 1 text, 2 key, 3 version, 4 valid)
//                    [data bin32] [text bin32] [key str8] [version u32] [valid u8 0|1]
//                    data: plaintext (decrypt), the data key (datakey), chunk key
//                    (dropopen), sender term (dropseal); text: ciphertext (encrypt,
//                    rewrap, datakey), signature (sign), mac (hmac)
//             error: code str8 | message str16
//
// datakey's wrappedOnly and bytes options have no binary field: send those as
// JSON. Refusals of the whole request (401, 413, 503 while the control plane is
// unreachable, AGENT_ERR_BAD_FRAME) are JSON `{error}` bodies, as on every route.
//
// Contract:
//   - decodeBinaryBatch checks every length against the bytes left and against
//     its field's limit before taking any bytes, and refuses a wrong magic or
//     version, reserved bits, more than MAX_BATCH_ITEMS items and bytes left over
//     with AGENT_ERR_BAD_FRAME; details name the item and field, never a value.
//   - Plaintexts are views of one copy of the body (the caller wipes the body),
//     owned, then wiped, by the multiplexer.
//   - encodeBinaryAnswers wipes each result's plaintext once written.
import { ByteReader, isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { encodeValue, isKeyName, kmsRequestSchema, MAX_KMS_CIPHERTEXT_TEXT, MAX_KMS_PLAINTEXT, MAX_CONTEXT_ENTRIES, MAX_DROP_HEADER_BYTES, type KmsOp } from '../../../protocol/src/index.js'
import { agentError } from '../errors.js'
import type { KmsRequest, KmsResult } from './multiplexer.js'
import { MAX_BATCH_ITEMS } from './validate.js'

export const BINARY_BODY_MAGIC = 0xb2
export const BINARY_BODY_VERSION = 1
export const BINARY_CONTENT_TYPE = 'application/octet-stream'

const F_KEY = 1
const F_DATA = 2
const F_TEXT = 4
const F_CONTEXT = 8
const F_HEADER = 16
const R_DATA = 1
const R_TEXT = 2
const R_KEY = 4
const R_VERSION = 8
const R_VALID = 16
const MAX_CONTEXT_NAME = 64
const MAX_CONTEXT_VALUE_BYTES = 128 * 3
const CIPHERTEXT_RE = /^[\x21-\x7e]+$/

/** The API's name of each wire field, per operation, for errors (validate.ts names them so too). */
const NAMES: Partial<Record<KmsOp, { data?: string; text?: string }>> = {
  sign: { data: 'message' },
  hmac: { data: 'message' },
  verify: { data: 'message', text: 'signature' },
  hmacverify: { data: 'message', text: 'mac' },
}
/** The fields each operation takes (validate.ts FIELDS, in this format's bits). */
const ALLOWED: Readonly<Record<KmsOp, { required: number; optional: number }>> = {
  encrypt: { required: F_KEY | F_DATA, optional: F_CONTEXT },
  decrypt: { required: F_TEXT, optional: F_KEY | F_CONTEXT },
  rewrap: { required: F_TEXT, optional: F_KEY | F_CONTEXT },
  datakey: { required: F_KEY, optional: F_CONTEXT },
  dropopen: { required: F_HEADER, optional: 0 },
  dropseal: { required: F_HEADER, optional: 0 },
  sign: { required: F_KEY | F_DATA, optional: 0 },
  verify: { required: F_TEXT | F_DATA, optional: 0 },
  hmac: { required: F_KEY | F_DATA, optional: 0 },
  hmacverify: { required: F_TEXT | F_DATA, optional: 0 },
}

const badFrame = (detail: string): never => {
  throw agentError('AGENT_ERR_BAD_FRAME', detail)
}


/** One item of a binary batch: its request, or why it fails alone. */
export type BinaryItem = { readonly ok: true; readonly request: KmsRequest } | { readonly ok: false; readonly error: KeymeshError }

/**
 * The items of a binary batch body for `op` (see the layout). Structural errors
 * refuse the whole body (AGENT_ERR_BAD_FRAME); an item whose fields break the
 * operation's rules fails alone, with the code a JSON item gets.
 */
export function decodeBinaryBatch(op: KmsOp, body: Uint8Array): BinaryItem[] {
  // One copy, not from Node's shared pool (it holds plaintext): the items are views of it.
  const buf = Buffer.allocUnsafeSlow(body.length)
  buf.set(body)
  try {
    return readBatch(op, buf)
  } catch (err) {
    buf.fill(0)
    throw err
  }
}

function readBatch(op: KmsOp, buf: Buffer): BinaryItem[] {
  const r = new ByteReader(buf, badFrame, 'body')
  if (r.u8('magic') !== BINARY_BODY_MAGIC) badFrame('not a binary batch (magic)')
  const version = r.u8('version')
  if (version !== BINARY_BODY_VERSION) badFrame(`version ${version}; this agent reads ${BINARY_BODY_VERSION}`)
  const count = r.u16('count')
  if (count > MAX_BATCH_ITEMS) throw agentError('AGENT_ERR_TOO_LARGE', `items: a batch holds at most ${MAX_BATCH_ITEMS} items`)
  const items: BinaryItem[] = new Array(count)
  const names = NAMES[op] ?? {}
  for (let i = 0; i < count; i++) {
    const path = `items[${i}]`
    const fields = r.u8(`${path}.fields`)
    if ((fields & ~(F_KEY | F_DATA | F_TEXT | F_CONTEXT | F_HEADER)) !== 0) badFrame(`${path}.fields: reserved bits set`)
    let key: string | undefined
    let data: Uint8Array | undefined
    let text: string | undefined
    let context: Record<string, string> | undefined
    let header: Uint8Array | undefined
    // Each field is read whole (the structure must hold) before the item's rules are checked.
    let tooLarge: KeymeshError | undefined
    if ((fields & F_KEY) !== 0) key = r.text(r.length(1, 255, `${path}.key`), `${path}.key`, 'latin1')
    if ((fields & F_DATA) !== 0) {
      const n = r.length(4, buf.length, `${path}.${names.data ?? 'plaintext'}`)
      if (n > MAX_KMS_PLAINTEXT) {
        tooLarge = agentError('AGENT_ERR_TOO_LARGE', `${path}.${names.data ?? 'plaintext'}: at most ${MAX_KMS_PLAINTEXT} bytes`)
        r.at += n
      } else data = r.bytes(n, path)
    }
    if ((fields & F_TEXT) !== 0) {
      const n = r.length(4, buf.length, `${path}.${names.text ?? 'ciphertext'}`)
      if (n > MAX_KMS_CIPHERTEXT_TEXT) {
        tooLarge ??= agentError('AGENT_ERR_TOO_LARGE', `${path}.${names.text ?? 'ciphertext'}: at most ${MAX_KMS_CIPHERTEXT_TEXT} characters`)
        r.at += n
      } else text = r.text(n, path)
    }
    if ((fields & F_CONTEXT) !== 0) {
      const n = r.u8(`${path}.context`)
      if (n > MAX_CONTEXT_ENTRIES) badFrame(`${path}.context: more than ${MAX_CONTEXT_ENTRIES} entries`)
      context = {}
      for (let j = 0; j < n; j++) {
        const name = r.text(r.length(1, MAX_CONTEXT_NAME, `${path}.context{key}`), `${path}.context{key}`, 'latin1')
        const value = r.text(r.length(2, MAX_CONTEXT_VALUE_BYTES, `${path}.context{value}`), `${path}.context{value}`, 'utf8')
        if (Object.hasOwn(context, name)) badFrame(`${path}.context: a name given twice`)
        context[name] = value
      }
    }
    if ((fields & F_HEADER) !== 0) header = r.bytes(r.length(4, MAX_DROP_HEADER_BYTES, `${path}.header`), `${path}.header`)
    items[i] = tooLarge !== undefined
      ? (data?.fill(0), { ok: false, error: tooLarge })
      : checkItem(op, fields, { key, data, text, context, header }, path, names)
  }
  if (r.at !== buf.length) badFrame(`${buf.length - r.at} bytes after the last item`)
  return items
}

interface RawItem {
  key: string | undefined
  data: Uint8Array | undefined
  text: string | undefined
  context: Record<string, string> | undefined
  header: Uint8Array | undefined
}

/** The item's rules, as validate.ts applies them to a JSON item (the same codes, the API's field names). */
function checkItem(op: KmsOp, fields: number, f: RawItem, path: string, names: { data?: string; text?: string }): BinaryItem {
  const fail = (detail: string): BinaryItem => {
    f.data?.fill(0)
    return { ok: false, error: agentError('AGENT_ERR_BAD_REQUEST', detail) }
  }
  const rule = ALLOWED[op]
  const nameOf = (bit: number): string => (bit === F_KEY ? 'key' : bit === F_DATA ? (names.data ?? 'plaintext') : bit === F_TEXT ? (names.text ?? 'ciphertext') : bit === F_CONTEXT ? 'context' : 'header')
  for (const bit of [F_KEY, F_DATA, F_TEXT, F_CONTEXT, F_HEADER]) {
    if ((fields & bit) !== 0 && ((rule.required | rule.optional) & bit) === 0) return fail(`${path}.${nameOf(bit)}: unknown field for ${op}`)
  }
  for (const bit of [F_KEY, F_DATA, F_TEXT, F_HEADER]) {
    if ((rule.required & bit) !== 0 && (fields & bit) === 0) return fail(`${path}.${nameOf(bit)}: missing`)
  }
  if (f.key !== undefined && !isKeyName(f.key)) return fail(`${path}.key: does not match the required form`)
  if (f.text !== undefined && !CIPHERTEXT_RE.test(f.text)) return fail(`${path}.${nameOf(F_TEXT)}: does not match the required form`)
  const request: Record<string, unknown> = { op }
  if (f.key !== undefined) request['key'] = f.key
  if (f.data !== undefined) request['plaintext'] = f.data
  if (f.text !== undefined) request['ciphertext'] = f.text
  if (f.header !== undefined) request['header'] = f.header
  if (f.context !== undefined) {
    request['context'] = f.context
    // The unusual fields get the schema's own checks (it base64s the plaintext: the slow path, as JSON's).
    try {
      encodeValue(kmsRequestSchema, { ...request, id: 1 }, path)
    } catch (err) {
      const detail = isKeymeshError(err) && err.detail !== undefined ? err.detail : `${path}: not a valid ${op} request`
      return fail(detail.replace(/(^|\.)(plaintext|ciphertext)(?=:)/g, (_m, dot: string, field: string) => `${dot}${field === 'plaintext' ? nameOf(F_DATA) : nameOf(F_TEXT)}`))
    }
  }
  if (f.header !== undefined && f.header.length < 1) return fail(`${path}.header: must decode to 1..${MAX_DROP_HEADER_BYTES} bytes`)
  return { ok: true, request: request as KmsRequest }
}

/** One answer: the result of its request, or its error. */
export type BinaryAnswer = { readonly ok: true; readonly result: KmsResult } | { readonly ok: false; readonly error: KeymeshError }

/**
 * The answer body for `op`: one result per item, in order. A result that lacks
 * the field its operation must return is that item's AGENT_ERR_CP_PROTOCOL (as
 * in JSON); every result's plaintext is wiped once written.
 */
export function encodeBinaryAnswers(op: KmsOp, answers: readonly BinaryAnswer[]): Uint8Array {
  const checked: BinaryAnswer[] = answers.map((a) => (a.ok ? checkResult(op, a.result) : a))
  let n = 4
  for (const a of checked) {
    n += 1
    if (a.ok) {
      const r = a.result
      n += 1 + (r.plaintext !== undefined ? 4 + r.plaintext.length : 0) + (r.ciphertext !== undefined ? 4 + r.ciphertext.length : 0) +
        (r.key !== undefined ? 1 + r.key.length : 0) + (r.version !== undefined ? 4 : 0) + (r.valid !== undefined ? 1 : 0)
    } else n += 1 + a.error.code.length + 2 + Buffer.byteLength(a.error.message)
  }
  // Not from Node's shared pool: it holds plaintext.
  const out = Buffer.allocUnsafeSlow(n)
  out[0] = BINARY_BODY_MAGIC
  out[1] = BINARY_BODY_VERSION
  let at = out.writeUInt16BE(checked.length, 2)
  for (const a of checked) {
    if (a.ok) {
      const r = a.result
      out[at++] = 0
      out[at++] = (r.plaintext !== undefined ? R_DATA : 0) | (r.ciphertext !== undefined ? R_TEXT : 0) | (r.key !== undefined ? R_KEY : 0) |
        (r.version !== undefined ? R_VERSION : 0) | (r.valid !== undefined ? R_VALID : 0)
      if (r.plaintext !== undefined) {
        at = out.writeUInt32BE(r.plaintext.length, at)
        out.set(r.plaintext, at)
        at += r.plaintext.length
        r.plaintext.fill(0)
      }
      if (r.ciphertext !== undefined) {
        at = out.writeUInt32BE(r.ciphertext.length, at)
        at += out.write(r.ciphertext, at, 'latin1')
      }
      if (r.key !== undefined) {
        out[at++] = r.key.length
        at += out.write(r.key, at, 'latin1')
      }
      if (r.version !== undefined) at = out.writeUInt32BE(r.version, at)
      if (r.valid !== undefined) out[at++] = r.valid ? 1 : 0
    } else {
      out[at++] = 1
      out[at++] = a.error.code.length
      at += out.write(a.error.code, at, 'latin1')
      at = out.writeUInt16BE(Buffer.byteLength(a.error.message), at)
      at += out.write(a.error.message, at, 'utf8')
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, at)
}

/** The result with only the fields its operation answers, or AGENT_ERR_CP_PROTOCOL when one it must answer is missing. */
function checkResult(op: KmsOp, r: KmsResult): BinaryAnswer {
  const need = (field: 'plaintext' | 'ciphertext' | 'valid'): boolean => r[field] !== undefined
  const meta = { ...(r.key !== undefined ? { key: r.key } : {}), ...(r.version !== undefined ? { version: r.version } : {}) }
  const missing = (field: string): BinaryAnswer => {
    r.plaintext?.fill(0)
    return { ok: false, error: agentError('AGENT_ERR_CP_PROTOCOL', `the KMS answer lacks ${field}`) }
  }
  switch (op) {
    case 'encrypt':
    case 'rewrap':
    case 'sign':
    case 'hmac':
      r.plaintext?.fill(0)
      return need('ciphertext') ? { ok: true, result: { ciphertext: r.ciphertext as string, ...meta } } : missing('ciphertext')
    case 'decrypt':
    case 'dropopen':
    case 'dropseal':
      return need('plaintext') ? { ok: true, result: { plaintext: r.plaintext as Uint8Array, ...meta } } : missing('plaintext')
    case 'datakey':
      // No wrappedOnly in this format: a data key comes with its plaintext.
      if (!need('ciphertext')) return missing('ciphertext')
      return need('plaintext') ? { ok: true, result: { ciphertext: r.ciphertext as string, plaintext: r.plaintext as Uint8Array, ...meta } } : missing('plaintext')
    case 'verify':
    case 'hmacverify':
      r.plaintext?.fill(0)
      return need('valid') ? { ok: true, result: { valid: r.valid === true, ...meta } } : missing('valid')
  }
}

// ---- the client's half (tests, benches, callers in TypeScript) --------------

/** One item as a client writes it: the API's fields, binary ones as bytes. */
export interface BinaryBatchItem {
  readonly key?: string
  /** plaintext (encrypt), or the message of sign, verify, hmac, hmac/verify. */
  readonly data?: Uint8Array
  /** ciphertext (decrypt, rewrap), signature (verify) or mac (hmac/verify). */
  readonly text?: string
  readonly context?: Readonly<Record<string, string>>
  readonly header?: Uint8Array
}

/** The request body for `items` (see the layout); throws a plain Error on a field that cannot be written. */
export function encodeBinaryBatch(items: readonly BinaryBatchItem[]): Uint8Array {
  const parts: Buffer[] = [Buffer.from([BINARY_BODY_MAGIC, BINARY_BODY_VERSION, items.length >> 8, items.length & 0xff])]
  if (items.length > 0xffff) throw new Error('at most 65,535 items can be written')
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(n)
    return b
  }
  const str8 = (s: string): Buffer => {
    const b = Buffer.from(s, 'latin1')
    if (b.length > 255) throw new Error('a str8 field is longer than 255 bytes')
    return Buffer.concat([Buffer.from([b.length]), b])
  }
  for (const item of items) {
    const fields = (item.key !== undefined ? F_KEY : 0) | (item.data !== undefined ? F_DATA : 0) | (item.text !== undefined ? F_TEXT : 0) |
      (item.context !== undefined ? F_CONTEXT : 0) | (item.header !== undefined ? F_HEADER : 0)
    parts.push(Buffer.from([fields]))
    if (item.key !== undefined) parts.push(str8(item.key))
    if (item.data !== undefined) parts.push(u32(item.data.length), Buffer.from(item.data))
    if (item.text !== undefined) parts.push(u32(item.text.length), Buffer.from(item.text, 'latin1'))
    if (item.context !== undefined) {
      const entries = Object.entries(item.context)
      parts.push(Buffer.from([entries.length]))
      for (const [name, value] of entries) {
        const v = Buffer.from(value, 'utf8')
        parts.push(str8(name), Buffer.from([v.length >> 8, v.length & 0xff]), v)
      }
    }
    if (item.header !== undefined) parts.push(u32(item.header.length), Buffer.from(item.header))
  }
  return new Uint8Array(Buffer.concat(parts))
}

/** One result as a client reads it. */
export type BinaryResult =
  | { readonly ok: true; readonly data?: Uint8Array; readonly text?: string; readonly key?: string; readonly version?: number; readonly valid?: boolean }
  | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } }

/** The results of an answer body, in the order of the items; AGENT_ERR_BAD_FRAME when it is malformed. */
export function decodeBinaryAnswers(body: Uint8Array): BinaryResult[] {
  const copy = Buffer.allocUnsafeSlow(body.length)
  copy.set(body)
  const r = new ByteReader(copy, badFrame, 'body')
  if (r.u8('magic') !== BINARY_BODY_MAGIC || r.u8('version') !== BINARY_BODY_VERSION) badFrame('not a version 1 binary answer')
  const count = r.u16('count')
  const out: BinaryResult[] = []
  for (let i = 0; i < count; i++) {
    const path = `items[${i}]`
    const status = r.u8(`${path}.status`)
    if (status === 1) {
      const code = r.text(r.length(1, 64, `${path}.error.code`), `${path}.error.code`, 'latin1')
      const message = r.text(r.length(2, 0xffff, `${path}.error.message`), `${path}.error.message`, 'utf8')
      out.push({ ok: false, error: { code, message } })
      continue
    }
    if (status !== 0) badFrame(`${path}.status: must be 0 or 1`)
    const fields = r.u8(`${path}.fields`)
    if ((fields & ~(R_DATA | R_TEXT | R_KEY | R_VERSION | R_VALID)) !== 0) badFrame(`${path}.fields: reserved bits set`)
    const res: { ok: true; data?: Uint8Array; text?: string; key?: string; version?: number; valid?: boolean } = { ok: true }
    if ((fields & R_DATA) !== 0) res.data = r.bytes(r.length(4, MAX_KMS_PLAINTEXT, `${path}.data`), `${path}.data`)
    if ((fields & R_TEXT) !== 0) res.text = r.text(r.length(4, MAX_KMS_CIPHERTEXT_TEXT, `${path}.text`), `${path}.text`, 'latin1')
    if ((fields & R_KEY) !== 0) res.key = r.text(r.length(1, 255, `${path}.key`), `${path}.key`, 'latin1')
    if ((fields & R_VERSION) !== 0) res.version = r.u32(`${path}.version`)
    if ((fields & R_VALID) !== 0) res.valid = r.u8(`${path}.valid`) === 1
    out.push(res)
  }
  if (r.at !== body.length) badFrame('bytes after the last result')
  return out
}
