// The agent's KMS requests written straight to bytes (protocol/src/messages/kms-wire.ts):
// byte for byte what encodeMessage writes, and the same errors.
import t from 'tap'

import { isKeymeshError } from '../../../protocol/src/errors.js'
import {
  encodeMessage,
  MAX_KMS_BATCH_ITEMS,
  MAX_KMS_CIPHERTEXT_TEXT,
  MAX_KMS_PLAINTEXT,
  type KmsBatchItem,
  type KmsBatchMessage,
  type KmsRequestMessage,
} from '../../../protocol/src/messages/index.js'
import { encodeKmsRequestMessage } from '../../../protocol/src/messages/kms-wire.js'

type Msg = KmsRequestMessage | KmsBatchMessage

function outcome(encode: (m: Msg) => Uint8Array, m: Msg): string {
  try {
    return Buffer.from(encode(m)).toString('latin1')
  } catch (e) {
    if (!isKeymeshError(e)) throw e
    return `${e.code}: ${e.message}`
  }
}

const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill)
const ct = 'km1:records:7:' + Buffer.alloc(1052, 3).toString('base64url')
const usual: KmsBatchItem[] = [
  { id: 1, op: 'encrypt', key: 'records', plaintext: bytes(1024) },
  { id: 2, op: 'encrypt', key: 'r.e_c-9', plaintext: new Uint8Array(0) },
  { id: 3, op: 'decrypt', ciphertext: ct },
  { id: 4, op: 'decrypt', key: 'records', ciphertext: ct },
  { id: 5, op: 'rewrap', ciphertext: ct },
  { id: Number.MAX_SAFE_INTEGER, op: 'datakey', key: 'records' },
  // a view into a larger buffer: only its own bytes go
  { id: 7, op: 'encrypt', key: 'k', plaintext: bytes(64, 5).subarray(3, 40) },
  // fields in another order than the schema's
  { plaintext: bytes(3), key: 'k', op: 'encrypt', id: 8 } as KmsBatchItem,
]

t.test('the usual requests and batches encode to the bytes encodeMessage writes', async (t) => {
  for (const item of usual) {
    const m: KmsRequestMessage = { ...item, type: 'kms.request' }
    t.equal(outcome(encodeKmsRequestMessage, m), outcome(encodeMessage, m), `kms.request ${item.op} ${item.id}`)
  }
  const batch: KmsBatchMessage = { type: 'kms.batch', id: 99, items: usual }
  const fast = encodeKmsRequestMessage(batch)
  t.equal(Buffer.from(fast).toString('latin1'), Buffer.from(encodeMessage(batch)).toString('latin1'), 'a mixed kms.batch')
  t.ok(fast instanceof Uint8Array)
  const full: KmsBatchMessage = { type: 'kms.batch', id: 1, items: Array.from({ length: MAX_KMS_BATCH_ITEMS }, (_, i) => ({ id: i + 1, op: 'datakey', key: 'k' })) }
  t.equal(outcome(encodeKmsRequestMessage, full), outcome(encodeMessage, full), `${MAX_KMS_BATCH_ITEMS} items`)
})

t.test('anything unusual or wrong is written, or refused, as encodeMessage does it', async (t) => {
  const items: Array<[string, KmsBatchItem]> = [
    ['a context', { id: 1, op: 'encrypt', key: 'k', plaintext: bytes(2), context: { tenant: 'a"b' } }],
    ['datakey options', { id: 1, op: 'datakey', key: 'k', wrappedOnly: true, bytes: 16 }],
    ['dropopen', { id: 1, op: 'dropopen', header: bytes(90) }],
    ['a quote and a backslash in the ciphertext', { id: 1, op: 'decrypt', ciphertext: 'km1:k:1:"\\' }],
    ['a space in the ciphertext', { id: 1, op: 'decrypt', ciphertext: 'km1:k:1: ' }],
    ['an empty ciphertext', { id: 1, op: 'decrypt', ciphertext: '' }],
    ['a ciphertext over the limit', { id: 1, op: 'decrypt', ciphertext: 'c'.repeat(MAX_KMS_CIPHERTEXT_TEXT + 1) }],
    ['plaintext over the limit', { id: 1, op: 'encrypt', key: 'k', plaintext: bytes(MAX_KMS_PLAINTEXT + 1) }],
    ['plaintext as text', { id: 1, op: 'encrypt', key: 'k', plaintext: 'AAAA' as unknown as Uint8Array }],
    ['a bad key', { id: 1, op: 'datakey', key: 'K' }],
    ['id 0', { id: 0, op: 'datakey', key: 'k' }],
    ['an unknown op', { id: 1, op: 'sign', key: 'k' } as unknown as KmsBatchItem],
    ['encrypt without plaintext', { id: 1, op: 'encrypt', key: 'k' }],
    ['encrypt without key', { id: 1, op: 'encrypt', plaintext: bytes(1) }],
    ['encrypt with a ciphertext', { id: 1, op: 'encrypt', key: 'k', plaintext: bytes(1), ciphertext: ct }],
    ['decrypt with plaintext', { id: 1, op: 'decrypt', ciphertext: ct, plaintext: bytes(1) }],
    ['datakey with plaintext', { id: 1, op: 'datakey', key: 'k', plaintext: bytes(1) }],
    ['a field given as undefined', { id: 1, op: 'datakey', key: 'k', context: undefined }],
    ['an unknown field', { id: 1, op: 'datakey', key: 'k', extra: 1 } as KmsBatchItem],
  ]
  for (const [what, item] of items) {
    const single: KmsRequestMessage = { ...item, type: 'kms.request' }
    t.equal(outcome(encodeKmsRequestMessage, single), outcome(encodeMessage, single), `kms.request: ${what}`)
    const batch: KmsBatchMessage = { type: 'kms.batch', id: 5, items: [usual[0] as KmsBatchItem, item] }
    t.equal(outcome(encodeKmsRequestMessage, batch), outcome(encodeMessage, batch), `kms.batch: ${what}`)
  }
  const batches: Array<[string, KmsBatchMessage]> = [
    ['a repeated item id', { type: 'kms.batch', id: 1, items: [usual[0] as KmsBatchItem, usual[0] as KmsBatchItem] }],
    ['no items', { type: 'kms.batch', id: 1, items: [] }],
    ['too many items', { type: 'kms.batch', id: 1, items: Array.from({ length: MAX_KMS_BATCH_ITEMS + 1 }, (_, i) => ({ id: i + 1, op: 'datakey' as const, key: 'k' })) }],
    ['batch id 0', { type: 'kms.batch', id: 0, items: [usual[5] as KmsBatchItem] }],
    ['items not an array', { type: 'kms.batch', id: 1, items: 'x' as unknown as KmsBatchItem[] }],
    ['an item not an object', { type: 'kms.batch', id: 1, items: [null as unknown as KmsBatchItem] }],
    ['an unknown field', { type: 'kms.batch', id: 1, items: [usual[5] as KmsBatchItem], more: 1 } as KmsBatchMessage],
    ['over the message limit', { type: 'kms.batch', id: 1, items: Array.from({ length: 3 }, (_, i) => ({ id: i + 1, op: 'encrypt' as const, key: 'k', plaintext: bytes(MAX_KMS_PLAINTEXT) })) }],
  ]
  for (const [what, m] of batches) {
    const want = outcome(encodeMessage, m)
    t.equal(outcome(encodeKmsRequestMessage, m), want, what)
    t.match(want, /^PROTO_ERR_MESSAGE/, `${what}: refused`)
  }
  const other = { type: 'usage.ack', seq: 1 } as unknown as Msg
  t.equal(outcome(encodeKmsRequestMessage, other), outcome(encodeMessage, other), 'another type goes to encodeMessage')
})
