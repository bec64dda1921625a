// The fast decoders of protocol/src/messages/kms.ts: for every value, decoding
// with them gives what the generic schema walk gives (the same fields in the
// same order, the same bytes), or the same error; the usual shapes do take them.
import t from 'tap'

import { isKeymeshError } from '../../../protocol/src/errors.js'
import {
  decodeKmsRequestFields,
  kmsRequestSchema,
  kmsResponseSchema,
  MAX_KMS_CIPHERTEXT_TEXT,
  MAX_KMS_PLAINTEXT,
  type KmsOp,
} from '../../../protocol/src/messages/index.js'
import { decodeValue, type ObjectField } from '../../../protocol/src/messages/schema.js'

/** The schema without its fast path: the generic walk alone. */
const walkOf = (f: ObjectField): ObjectField => {
  const { fastDecode: _fast, ...rest } = f
  return rest as ObjectField
}

/** What a decode gives, comparably: the value with its key order and bytes as hex, or the error. */
function outcome(f: ObjectField, v: unknown): unknown {
  try {
    return shape(decodeValue(f, v))
  } catch (e) {
    if (!isKeymeshError(e)) throw e
    return { error: e.code, message: e.message }
  }
}
function shape(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex'), view: v.constructor.name }
  if (typeof v !== 'object' || v === null) return v
  return Object.entries(v).map(([k, x]) => [k, shape(x)])
}

const b64 = (n: number, fill = 7): string => Buffer.alloc(n, fill).toString('base64')
const ct = 'km1:records:12:' + Buffer.alloc(40, 9).toString('base64url')

const requests: Array<[string, unknown]> = [
  ['encrypt', { id: 1, op: 'encrypt', key: 'records', plaintext: b64(1024) }],
  ['encrypt, empty plaintext', { id: 2, op: 'encrypt', key: 'records', plaintext: '' }],
  ['encrypt, largest plaintext', { id: 3, op: 'encrypt', key: 'records', plaintext: b64(MAX_KMS_PLAINTEXT) }],
  ['decrypt', { id: 4, op: 'decrypt', ciphertext: ct }],
  ['decrypt with key', { id: Number.MAX_SAFE_INTEGER, op: 'decrypt', key: 'records', ciphertext: ct }],
  ['rewrap', { id: 5, op: 'rewrap', ciphertext: ct }],
  ['datakey', { id: 6, op: 'datakey', key: 'records' }],
  // the usual shapes, gone wrong
  ['plaintext over the limit', { id: 1, op: 'encrypt', key: 'records', plaintext: b64(MAX_KMS_PLAINTEXT + 3) }],
  ['plaintext not canonical (bits)', { id: 1, op: 'encrypt', key: 'k', plaintext: 'AB==' }],
  ['plaintext without padding', { id: 1, op: 'encrypt', key: 'k', plaintext: 'AAA' }],
  ['plaintext in base64url', { id: 1, op: 'encrypt', key: 'k', plaintext: '-_-_' }],
  ['plaintext with a space', { id: 1, op: 'encrypt', key: 'k', plaintext: 'AAAA AAAA' }],
  ['plaintext not text', { id: 1, op: 'encrypt', key: 'k', plaintext: [1, 2] }],
  ['ciphertext with a space', { id: 1, op: 'decrypt', ciphertext: 'km1:k:1: x' }],
  ['ciphertext over the limit', { id: 1, op: 'decrypt', ciphertext: 'c'.repeat(MAX_KMS_CIPHERTEXT_TEXT + 1) }],
  ['empty ciphertext', { id: 1, op: 'decrypt', ciphertext: '' }],
  ['ciphertext with a quote (allowed)', { id: 1, op: 'decrypt', ciphertext: 'km1:k:1:"\\' }],
  ['bad key name', { id: 1, op: 'encrypt', key: 'Records', plaintext: '' }],
  ['key not text', { id: 1, op: 'datakey', key: 7 }],
  ['id 0', { id: 0, op: 'datakey', key: 'k' }],
  ['id not whole', { id: 1.5, op: 'datakey', key: 'k' }],
  ['unknown op', { id: 1, op: 'sign', key: 'k' }],
  ['encrypt without plaintext', { id: 1, op: 'encrypt', key: 'k' }],
  ['encrypt with ciphertext', { id: 1, op: 'encrypt', key: 'k', plaintext: '', ciphertext: ct }],
  ['decrypt with plaintext', { id: 1, op: 'decrypt', ciphertext: ct, plaintext: '' }],
  ['datakey with plaintext', { id: 1, op: 'datakey', key: 'k', plaintext: '' }],
  ['unknown field', { id: 1, op: 'datakey', key: 'k', extra: 1 }],
  ['a field given as undefined', { id: 1, op: 'datakey', key: 'k', context: undefined }],
  ['a null field', { id: 1, op: 'datakey', key: 'k', context: null }],
  ['__proto__ as a field', JSON.parse('{"id":1,"op":"datakey","key":"k","__proto__":{"x":1}}')],
  // shapes for the walk
  ['with a context', { id: 1, op: 'encrypt', key: 'k', plaintext: '', context: { tenant: 'a' } }],
  ['datakey options', { id: 1, op: 'datakey', key: 'k', wrappedOnly: true, bytes: 16 }],
  ['agree', { id: 1, op: 'agree', key: 'k', publicKey: b64(32) }],
  ['not an object', 'encrypt'],
  ['an array', [1]],
  ['bytes', new Uint8Array(2)],
]

t.test('a request decodes with the fast path as with the walk, error for error', async (t) => {
  const walk = walkOf(kmsRequestSchema)
  for (const [what, v] of requests) t.same(outcome(kmsRequestSchema, v), outcome(walk, v), what)
  for (const [what, v] of requests.slice(0, 7)) t.not(kmsRequestSchema.fastDecode?.(v), undefined, `${what}: fast`)
  t.equal(kmsRequestSchema.fastDecode?.({ id: 1, op: 'encrypt', key: 'k', plaintext: '', context: {} }), undefined, 'a context takes the walk')
})

t.test("a body's fields decode as the request with that op would", async (t) => {
  const bodies: Array<[KmsOp, unknown]> = requests
    .filter(([, v]) => typeof v === 'object' && v !== null && !Array.isArray(v) && 'op' in v)
    .map(([, v]) => {
      const { id: _id, op, ...body } = v as Record<string, unknown>
      return [op as KmsOp, body]
    })
  let fast = 0
  for (const [op, body] of bodies) {
    const got = decodeKmsRequestFields(op, body)
    if (got === undefined) continue
    fast++
    const walked = decodeValue(walkOf(kmsRequestSchema), { ...(body as object), id: 1, op }) as Record<string, unknown>
    const { id: _id, ...want } = walked
    t.same(shape(got), shape(want), `${op} ${Object.keys(body as object).join(',')}`)
  }
  // The seven usual ones, the quoted ciphertext, and the two whose only fault was their id.
  t.equal(fast, 10, 'the usual bodies take the fast path')
  t.equal(decodeKmsRequestFields('encrypt', { id: 1, key: 'k', plaintext: '' }), undefined, 'an id in a body is not a field of it')
  t.equal(decodeKmsRequestFields('encrypt', { op: 'encrypt', key: 'k', plaintext: '' }), undefined, 'nor is an op')
  t.equal(decodeKmsRequestFields('dropopen', { header: 'AAAA' }), undefined)
  t.equal(decodeKmsRequestFields('encrypt', null), undefined)
})

t.test('a reply decodes with the fast path as with the walk, error for error', async (t) => {
  const replies: Array<[string, unknown]> = [
    ['encrypt', { id: 1, ok: true, result: { ciphertext: ct, key: 'records', version: 12 } }],
    ['decrypt', { id: 2, ok: true, result: { plaintext: b64(1024), key: 'records', version: 1 } }],
    ['datakey', { id: 3, ok: true, result: { ciphertext: ct, plaintext: b64(32), key: 'records', version: 4294967295 } }],
    ['fields in another order', { ok: true, result: { version: 1, key: 'k', ciphertext: ct }, id: 4 }],
    ['an empty result', { id: 5, ok: true, result: {} }],
    ['an error', { id: 6, ok: false, error: { code: 'CP_ERR_DECRYPT', message: 'no' } }],
    ['ok without result', { id: 7, ok: true }],
    ['ok with an error too', { id: 8, ok: true, result: {}, error: { code: 'CP_ERR_X', message: '' } }],
    ['version 0', { id: 9, ok: true, result: { version: 0 } }],
    ['version past u32', { id: 9, ok: true, result: { version: 4294967296 } }],
    ['bad key', { id: 9, ok: true, result: { key: '-k' } }],
    ['bad ciphertext', { id: 9, ok: true, result: { ciphertext: 'a b' } }],
    ['bad plaintext', { id: 9, ok: true, result: { plaintext: 'A' } }],
    ['plaintext over the limit', { id: 9, ok: true, result: { plaintext: b64(MAX_KMS_PLAINTEXT + 1) } }],
    ['unknown result field', { id: 9, ok: true, result: { secret: 'AAAA' } }],
    ['unknown reply field', { id: 9, ok: true, result: {}, more: 1 }],
    ['result not an object', { id: 9, ok: true, result: [] }],
    ['id 0', { id: 0, ok: true, result: {} }],
    ['not an object', null],
  ]
  const walk = walkOf(kmsResponseSchema)
  for (const [what, v] of replies) t.same(outcome(kmsResponseSchema, v), outcome(walk, v), what)
  for (const [what, v] of replies.slice(0, 5)) t.not(kmsResponseSchema.fastDecode?.(v), undefined, `${what}: fast`)
})
