// The binary KMS frame (protocol/src/messages/kms-frame.ts): over seeded random
// batches and replies, a frame decodes to exactly what the JSON of the same
// message decodes to; the encoders leave the unusual to JSON; and the decoder is
// strict: every truncation, every length over its limit or past the end, reserved
// bits, repeated ids, trailing bytes and random corruption end in its own two
// codes and nothing else, with no plaintext in the error.
import t, { type Test } from 'tap'

import {
  decodeKmsFrame,
  decodeMessage,
  encodeKmsBatchFrame,
  encodeKmsBatchResponse,
  encodeKmsResponseFrames,
  encodeMessage,
  isKeymeshError,
  KMS_FRAME_HEAD_BYTES,
  KMS_OPS,
  MAX_KMS_BATCH_ITEMS,
  MAX_KMS_PLAINTEXT,
  MAX_MESSAGE_BYTES,
  planKmsBatches,
  type KmsBatchItem,
  type KmsBatchMessage,
  type KmsItemReply,
  type Message,
} from '../../../protocol/src/index.js'
import { prng } from '../../kit/seeded-random.js'

const ITERATIONS = 300
const FRAME_CODES = new Set(['PROTO_ERR_KMS_FRAME', 'PROTO_ERR_KMS_FRAME_VERSION'])
const MARK = 'SECRET-PLAINTEXT-MARK'

function gen(seed: number) {
  const rnd = prng(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T
  const bytes = (n: number): Uint8Array => {
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = int(256)
    return b
  }
  const keyName = (): string => pick(['k', 'bench-data', 'a.b_c-9', 'x'.repeat(63)])
  const ciphertext = (): string => `km1:${keyName()}:${1 + int(5)}:${Buffer.from(bytes(28 + int(200))).toString('base64url')}`
  const size = (): number => pick([0, 1, 16, 1024, int(3000), MAX_KMS_PLAINTEXT])
  let nextId = 1 + int(1000)
  let highId = Number.MAX_SAFE_INTEGER - int(1000)
  const request = (): KmsBatchItem => {
    const id = rnd() < 0.2 ? highId-- : nextId++
    switch (int(6)) {
      case 0: return { id, op: 'decrypt', ciphertext: ciphertext(), ...(rnd() < 0.5 ? { key: keyName() } : {}) }
      case 1: return { id, op: 'rewrap', ciphertext: ciphertext() }
      case 2: return { id, op: 'sign', key: keyName(), plaintext: bytes(size() % 4096) }
      case 3: return { id, op: 'verify', ciphertext: ciphertext(), plaintext: bytes(int(100)) }
      case 4: return { id, op: 'datakey', key: keyName() }
      default: return { id, op: 'encrypt', key: keyName(), plaintext: bytes(size() % 4096) }
    }
  }
  const reply = (id: number): KmsItemReply => {
    switch (int(5)) {
      case 0: return { id, ok: false, error: { code: pick(['CP_ERR_FORBIDDEN', 'CP_ERR_DECRYPT', 'PROTO_ERR_CIPHERTEXT_FORMAT']), message: pick(['', 'no grant', 'é'.repeat(300), 'x'.repeat(512)]) } }
      case 1: return { id, ok: true, result: { plaintext: bytes(size() % 4096), key: keyName(), version: 1 + int(0xffff_fffe) } }
      case 2: return { id, ok: true, result: { valid: rnd() < 0.5, key: keyName(), version: 1 } }
      case 3: return { id, ok: true, result: {} }
      default: return { id, ok: true, result: { ciphertext: ciphertext(), key: keyName(), version: 1 + int(9) } }
    }
  }
  return { rnd, int, pick, bytes, request, reply }
}

const jsonRoundTrip = (m: Message): Message => decodeMessage(encodeMessage(m))

t.test('a kms.batch frame decodes to what its JSON decodes to (seeded, 300 batches)', async (t) => {
  let framed = 0
  for (let s = 0; s < ITERATIONS; s++) {
    const g = gen(s)
    const items = Array.from({ length: 1 + g.int(40) }, () => g.request())
    // planKmsBatches keeps each group within a record as JSON; frames are smaller still.
    for (const group of planKmsBatches(items)) {
      const m: KmsBatchMessage = { type: 'kms.batch', id: 1 + g.int(1e9), items: group }
      const frame = encodeKmsBatchFrame(m)
      if (frame === undefined) return t.fail(`seed ${s}: a plain batch was left to JSON`)
      t.ok(frame.length < encodeMessage(m).length, 'smaller than its JSON') || t.comment(`seed ${s}`)
      const viaFrame = decodeMessage(frame, { kmsFrames: true })
      t.same(viaFrame, jsonRoundTrip(m), `seed ${s}: the same message`)
      t.strictSame(Object.keys((viaFrame as KmsBatchMessage).items[0] as object), Object.keys((jsonRoundTrip(m) as KmsBatchMessage).items[0] as object), 'fields in the same order')
      framed++
    }
  }
  t.ok(framed >= ITERATIONS)
})

t.test('kms.batch.response frames carry the replies JSON parts carry, split by the same limits (seeded, 300 sets)', async (t) => {
  for (let s = 0; s < ITERATIONS; s++) {
    const g = gen(1000 + s)
    const count = 1 + g.int(s % 10 === 0 ? 300 : 30)
    const replies = Array.from({ length: count }, (_, i) => g.reply(10 + i))
    const limits = s % 3 === 0 ? { maxItems: 1 + g.int(20), maxBytes: 2000 + g.int(60_000) } : {}
    const id = 1 + g.int(1e6)
    const json = encodeKmsBatchResponse(id, replies, limits).map((p) => decodeMessage(p) as Extract<Message, { type: 'kms.batch.response' }>)
    const frames = encodeKmsResponseFrames(id, replies, limits).map((p) => decodeMessage(p, { kmsFrames: true }) as Extract<Message, { type: 'kms.batch.response' }>)
    t.same(frames.flatMap((p) => p.items), json.flatMap((p) => p.items), `seed ${s}: the same replies in the same order`)
    t.same(frames.map((p) => p.last), frames.map((_, i) => i === frames.length - 1), 'only the final part is last')
    t.ok(frames.every((p) => p.id === id && p.items.length <= (limits.maxItems ?? MAX_KMS_BATCH_ITEMS)))
    t.ok(frames.length <= json.length, 'never more parts than JSON')
    t.ok(encodeKmsResponseFrames(id, replies, limits).every((f) => f.length <= (limits.maxBytes ?? MAX_MESSAGE_BYTES)), 'each part within maxBytes')
  }
})

t.test('a reply that breaks its schema becomes the same error reply as in JSON', async (t) => {
  const broken: KmsItemReply[] = [
    { id: 1, ok: true, result: { key: 'bad key!', version: 1 } },
    { id: 2, ok: true, result: { ciphertext: 'has space' } },
    { id: 3, ok: true, result: { version: 0 } },
    { id: 4, ok: true, result: { plaintext: new Uint8Array(MAX_KMS_PLAINTEXT + 1) } },
    { id: 5, ok: false, error: { code: 'not-a-code', message: 'x' } },
    { id: 6, ok: true } as KmsItemReply,
  ]
  const json = (decodeMessage(encodeKmsBatchResponse(9, broken)[0] as Uint8Array) as Extract<Message, { type: 'kms.batch.response' }>).items
  const frame = (decodeMessage(encodeKmsResponseFrames(9, broken)[0] as Uint8Array, { kmsFrames: true }) as Extract<Message, { type: 'kms.batch.response' }>).items
  t.same(frame, json)
  t.same(frame.map((r) => r.error?.code), broken.map(() => 'PROTO_ERR_MESSAGE_FIELD'))
})

t.test('the encoder leaves the unusual to JSON: context, datakey options, drop headers, bad items, repeated ids', async (t) => {
  const base = { type: 'kms.batch' as const, id: 1 }
  const p = new Uint8Array(4)
  const cases: [string, KmsBatchItem[]][] = [
    ['context', [{ id: 1, op: 'encrypt', key: 'k', plaintext: p, context: { a: 'b' } }]],
    ['wrappedOnly', [{ id: 1, op: 'datakey', key: 'k', wrappedOnly: true }]],
    ['bytes', [{ id: 1, op: 'datakey', key: 'k', bytes: 16 }]],
    ['header', [{ id: 1, op: 'dropopen', header: p }]],
    ['bad key name', [{ id: 1, op: 'encrypt', key: 'no spaces', plaintext: p }]],
    ['missing plaintext', [{ id: 1, op: 'encrypt', key: 'k' } as KmsBatchItem]],
    ['ciphertext with a space', [{ id: 1, op: 'decrypt', ciphertext: 'km1 x' }]],
    ['plaintext too large', [{ id: 1, op: 'encrypt', key: 'k', plaintext: new Uint8Array(MAX_KMS_PLAINTEXT + 1) }]],
    ['repeated id', [{ id: 1, op: 'encrypt', key: 'k', plaintext: p }, { id: 1, op: 'encrypt', key: 'k', plaintext: p }]],
    ['unknown op', [{ id: 1, op: 'nope', key: 'k' } as unknown as KmsBatchItem]],
    ['an undefined field', [{ id: 1, op: 'encrypt', key: 'k', plaintext: p, ciphertext: undefined }]],
  ]
  for (const [what, items] of cases) t.equal(encodeKmsBatchFrame({ ...base, items }), undefined, what)
  t.equal(encodeKmsBatchFrame({ ...base, items: [] }), undefined, 'no items')
  t.equal(encodeKmsBatchFrame({ ...base, id: 0, items: [{ id: 1, op: 'encrypt', key: 'k', plaintext: p }] }), undefined, 'bad batch id')
  const big = Array.from({ length: 3 }, (_, i) => ({ id: i + 1, op: 'encrypt' as const, key: 'k', plaintext: new Uint8Array(MAX_KMS_PLAINTEXT) }))
  t.equal(encodeKmsBatchFrame({ ...base, items: big }), undefined, 'over one record: JSON raises its own error')
})

t.test('without the feature a frame is malformed JSON; with it, JSON messages still decode', async (t) => {
  const frame = encodeKmsBatchFrame({ type: 'kms.batch', id: 1, items: [{ id: 2, op: 'encrypt', key: 'k', plaintext: new Uint8Array(3) }] }) as Uint8Array
  t.throws(() => decodeMessage(frame), { code: 'PROTO_ERR_MESSAGE_MALFORMED' })
  t.same(decodeMessage(encodeMessage({ type: 'usage.ack', seq: 3 }), { kmsFrames: true }), { type: 'usage.ack', seq: 3 })
  t.throws(() => decodeMessage(frame, { kmsFrames: true, maxBytes: frame.length - 1 }), { code: 'PROTO_ERR_MESSAGE_TOO_LARGE' })
})

/** The frame's code, or 'ok'; anything else (a TypeError, a RangeError) fails the test. */
function outcome(t: Test, bytes: Uint8Array): string {
  try {
    decodeKmsFrame(bytes)
    return 'ok'
  } catch (err) {
    if (!isKeymeshError(err) || !FRAME_CODES.has(err.code)) {
      t.fail(`not a frame error: ${String(err)}`)
      return 'other'
    }
    if (err.message.includes(MARK)) t.fail('the error quotes the plaintext')
    return err.code
  }
}

t.test('every truncation, and every byte past the end, is PROTO_ERR_KMS_FRAME', async (t) => {
  const mark = new Uint8Array(Buffer.from(MARK))
  const req = encodeKmsBatchFrame({ type: 'kms.batch', id: 7, items: [
    { id: 1, op: 'encrypt', key: 'k', plaintext: mark },
    { id: 2, op: 'decrypt', ciphertext: 'km1:k:1:AAAA', key: 'k' },
  ] }) as Uint8Array
  const res = encodeKmsResponseFrames(7, [
    { id: 1, ok: true, result: { plaintext: mark, key: 'k', version: 3, valid: true } },
    { id: 2, ok: false, error: { code: 'CP_ERR_FORBIDDEN', message: 'no' } },
  ])[0] as Uint8Array
  for (const frame of [req, res]) {
    t.equal(outcome(t, frame), 'ok')
    let refused = 0
    for (let n = 0; n < frame.length; n++) if (outcome(t, frame.subarray(0, n)) === 'PROTO_ERR_KMS_FRAME') refused++
    t.equal(refused, frame.length, 'each shorter prefix')
    t.equal(outcome(t, Buffer.concat([frame, Buffer.from([0])])), 'PROTO_ERR_KMS_FRAME', 'a byte left over')
  }
})

t.test('lengths over their limits, reserved bits, bad counts, ids and versions are refused by code', async (t) => {
  const one = encodeKmsBatchFrame({ type: 'kms.batch', id: 7, items: [{ id: 1, op: 'encrypt', key: 'k', plaintext: new Uint8Array(2) }] }) as Uint8Array
  const H = KMS_FRAME_HEAD_BYTES
  const at = (offset: number, value: number[]): Uint8Array => {
    const b = Buffer.from(one)
    b.set(value, offset)
    return b
  }
  const expect = (what: string, bytes: Uint8Array, code: string): void => {
    t.equal(outcome(t, bytes), code, what)
  }
  // item: id(8) op(1) fields(1) keylen(1) 'k' ptlen(4) pt(2)
  expect('version 2', at(1, [2]), 'PROTO_ERR_KMS_FRAME_VERSION')
  expect('kind 3', at(2, [3]), 'PROTO_ERR_KMS_FRAME_VERSION')
  expect('a request flag', at(3, [1]), 'PROTO_ERR_KMS_FRAME')
  expect('batch id 0', at(4, [0, 0, 0, 0, 0, 0, 0, 0]), 'PROTO_ERR_KMS_FRAME')
  expect('batch id over 2^53 - 1', at(4, [0, 0x20, 0, 0, 0, 0, 0, 0]), 'PROTO_ERR_KMS_FRAME')
  expect('count 0', at(12, [0, 0]), 'PROTO_ERR_KMS_FRAME')
  expect(`count ${MAX_KMS_BATCH_ITEMS + 1}`, at(12, [(MAX_KMS_BATCH_ITEMS + 1) >> 8, (MAX_KMS_BATCH_ITEMS + 1) & 0xff]), 'PROTO_ERR_KMS_FRAME')
  expect('count 2 with one item', at(12, [0, 2]), 'PROTO_ERR_KMS_FRAME')
  expect('unknown op', at(H + 8, [KMS_OPS.length]), 'PROTO_ERR_KMS_FRAME')
  expect('reserved field bit', at(H + 9, [0x83]), 'PROTO_ERR_KMS_FRAME')
  expect('fields the op forbids (encrypt without plaintext)', at(H + 9, [0x01]), 'PROTO_ERR_KMS_FRAME')
  expect('key length 64', at(H + 10, [64]), 'PROTO_ERR_KMS_FRAME')
  expect('key length 0', at(H + 10, [0]), 'PROTO_ERR_KMS_FRAME')
  expect('key not a key name', at(H + 11, [0x20]), 'PROTO_ERR_KMS_FRAME')
  expect('plaintext length over the limit', at(H + 12, [0, 0, 0x80, 1]), 'PROTO_ERR_KMS_FRAME')
  expect('plaintext length past the end', at(H + 12, [0, 0, 0, 3]), 'PROTO_ERR_KMS_FRAME')
  expect('plaintext length 2^32 - 1', at(H + 12, [0xff, 0xff, 0xff, 0xff]), 'PROTO_ERR_KMS_FRAME')
  const twice = encodeKmsBatchFrame({ type: 'kms.batch', id: 7, items: [1, 2].map((id) => ({ id, op: 'encrypt' as const, key: 'k', plaintext: new Uint8Array(1) })) }) as Uint8Array
  const dup = Buffer.from(twice)
  dup[H + 8 + 1 + 1 + 2 + 4 + 1 + 7] = 1
  expect('a repeated item id', dup, 'PROTO_ERR_KMS_FRAME')

  const res = encodeKmsResponseFrames(5, [{ id: 1, ok: false, error: { code: 'CP_ERR_X', message: 'é' } }])[0] as Uint8Array
  const r = (offset: number, value: number[]): Uint8Array => {
    const b = Buffer.from(res)
    b.set(value, offset)
    return b
  }
  t.equal(outcome(t, res), 'ok')
  t.equal(outcome(t, r(3, [2])), 'PROTO_ERR_KMS_FRAME', 'a reserved response flag')
  t.equal(outcome(t, r(H + 8, [2])), 'PROTO_ERR_KMS_FRAME', 'status 2')
  t.equal(outcome(t, r(H + 10, [0x61])), 'PROTO_ERR_KMS_FRAME', 'an error code out of form')
  t.equal(outcome(t, r(H + 9 + 1 + 8 + 2, [0xc3, 0x28])), 'PROTO_ERR_KMS_FRAME', 'an error message that is not UTF-8')
  const ok = encodeKmsResponseFrames(5, [{ id: 1, ok: true, result: { version: 1, valid: false } }])[0] as Uint8Array
  const o = (offset: number, value: number[]): Uint8Array => {
    const b = Buffer.from(ok)
    b.set(value, offset)
    return b
  }
  t.equal(outcome(t, ok), 'ok')
  t.equal(outcome(t, o(H + 10, [0, 0, 0, 0])), 'PROTO_ERR_KMS_FRAME', 'version 0')
  t.equal(outcome(t, o(H + 14, [2])), 'PROTO_ERR_KMS_FRAME', 'valid 2')
  t.equal(outcome(t, o(H + 9, [0x20])), 'PROTO_ERR_KMS_FRAME', 'a reserved result bit')
})

t.test('random corruption of frames ends in a frame error or a valid message, never another throw (seeded, 3,000 mutations)', async (t) => {
  const g = gen(77)
  const mark = new Uint8Array(Buffer.from(MARK))
  let refused = 0
  for (let s = 0; s < 3000; s++) {
    const frame = s % 2 === 0
      ? (encodeKmsBatchFrame({ type: 'kms.batch', id: 1 + s, items: Array.from({ length: 1 + g.int(4) }, (_, i) => ({ id: i + 1, op: 'encrypt' as const, key: 'k', plaintext: mark })) }) as Uint8Array)
      : (encodeKmsResponseFrames(1 + s, Array.from({ length: 1 + g.int(4) }, (_, i) => g.reply(i + 1)))[0] as Uint8Array)
    const b = Buffer.from(frame)
    for (let k = 1 + g.int(3); k > 0; k--) b[1 + g.int(b.length - 1)] = g.int(256)
    if (outcome(t, g.rnd() < 0.2 ? b.subarray(0, g.int(b.length)) : b) !== 'ok') refused++
  }
  t.ok(refused > 1000, `most corruptions are refused (${refused})`)
})

t.test('decoded plaintexts are a copy: wiping the record leaves them whole', async (t) => {
  const frame = encodeKmsBatchFrame({ type: 'kms.batch', id: 1, items: [{ id: 2, op: 'encrypt', key: 'k', plaintext: new Uint8Array([1, 2, 3]) }] }) as Uint8Array
  const m = decodeKmsFrame(frame)
  frame.fill(0)
  t.same([...((m.items[0] as KmsBatchItem).plaintext ?? [])], [1, 2, 3])
})
