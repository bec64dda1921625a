// The agent's KMS requests written straight to their wire bytes. encodeMessage
// walks the schema into a JSON-ready copy and JSON.stringify then scans every
// string for characters to escape: for a kms.batch of 100 items of 1 KiB, about
// a seventh of the agent's CPU per item (Node 20: ~2 µs to stringify one 1.4 KB
// base64 string). Here the same checks run on the message as it is, and the
// text is written by concatenation: base64 and the other fields hold no
// character JSON escapes, by their rules.
//
// Contract: encodeKmsRequestMessage(m) returns the very bytes encodeMessage(m)
// returns, or throws what it throws (test/protocol/messages/kms-wire.test.ts). Requests
// with a context or the datakey and agree options, and anything that fails a
// check, are handed to encodeMessage itself.
import { protoError } from '../errors.js'
import { isKeyName } from '../names.js'
import { MAX_MESSAGE_BYTES } from './fields.js'
import { encodeMessage, type KmsBatchMessage, type KmsRequestMessage } from './index.js'
import { isRequestId, KMS_OPS, MAX_KMS_BATCH_ITEMS, MAX_KMS_CIPHERTEXT_TEXT, MAX_KMS_PLAINTEXT, requestRule, type KmsBatchItem } from './kms.js'

// The schema's ciphertext characters (printable ASCII) less the quote and the
// backslash, so JSON writes the text as it is.
const PLAIN_CIPHERTEXT_RE = /^[\x21\x23-\x5b\x5d-\x7e]+$/
const OPS: readonly string[] = KMS_OPS

export function encodeKmsRequestMessage(msg: KmsRequestMessage | KmsBatchMessage): Uint8Array {
  const text = msg.type === 'kms.batch' ? batchText(msg) : msg.type === 'kms.request' ? requestText(msg) : undefined
  if (text === undefined) return encodeMessage(msg)
  if (text.length > MAX_MESSAGE_BYTES) throw protoError('PROTO_ERR_MESSAGE_TOO_LARGE')
  // Not from Node's shared pool: it holds plaintext, and the channel wipes it once sealed.
  const out = Buffer.allocUnsafeSlow(text.length)
  out.write(text, 0, 'latin1')
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

function batchText(msg: KmsBatchMessage): string | undefined {
  const { id, items } = msg
  if (Object.keys(msg).length !== 3 || !isRequestId(id) || !Array.isArray(items) || items.length < 1 || items.length > MAX_KMS_BATCH_ITEMS) return undefined
  const ids = new Set<number>()
  let out = `{"type":"kms.batch","id":${id},"items":[`
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as KmsBatchItem
    const fields = itemFields(item, 0)
    if (fields === undefined || ids.has(item.id)) return undefined
    ids.add(item.id)
    out += `${i === 0 ? '' : ','}{"id":${item.id},${fields}}`
  }
  return `${out}]}`
}

function requestText(msg: KmsRequestMessage): string | undefined {
  const fields = itemFields(msg, 1)
  return fields === undefined ? undefined : `{"type":"kms.request","id":${msg.id},${fields}}`
}

/**
 * The item's fields after its id, as encodeValue and JSON.stringify write them
 * (schema order: op, key, plaintext, ciphertext), or undefined for anything the
 * fast path does not take. `extra` counts fields beside the item's own (type).
 */
function itemFields(item: KmsBatchItem, extra: number): string | undefined {
  if (typeof item !== 'object' || item === null) return undefined
  const { id, op, key, plaintext, ciphertext } = item
  const n = 2 + extra + (key === undefined ? 0 : 1) + (plaintext === undefined ? 0 : 1) + (ciphertext === undefined ? 0 : 1)
  if (Object.keys(item).length !== n || !isRequestId(id) || !OPS.includes(op)) return undefined
  let out = `"op":"${op}"`
  if (key !== undefined) {
    if (!isKeyName(key)) return undefined
    out += `,"key":"${key}"`
  }
  if (plaintext !== undefined) {
    if (!(plaintext instanceof Uint8Array) || plaintext.length > MAX_KMS_PLAINTEXT) return undefined
    out += `,"plaintext":"${Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.length).toString('base64')}"`
  }
  if (ciphertext !== undefined) {
    if (typeof ciphertext !== 'string' || ciphertext.length > MAX_KMS_CIPHERTEXT_TEXT || !PLAIN_CIPHERTEXT_RE.test(ciphertext)) return undefined
    out += `,"ciphertext":"${ciphertext}"`
  }
  // agree needs publicKey, which this writer does not handle: the rule sends it to the schema path.
  return requestRule({ op, key, plaintext, ciphertext }) === undefined ? out : undefined
}
