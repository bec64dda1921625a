// Sizing KMS batches to records (protocol/src/messages/kms-batch.ts): the plan
// an agent splits its items with, and the packing of a batch's replies.
import t from 'tap'

import { sealKm1 } from '../../../protocol/src/ciphertext.js'
import { nodeSuite } from '../../../protocol/src/crypto/node-provider.js'
import { isKeymeshError } from '../../../protocol/src/errors.js'
import {
  decodeMessage,
  encodeKmsBatchResponse,
  encodeMessage,
  fastReplyJson,
  kmsItemBytes,
  kmsReplyEstimate,
  kmsRequestSchema,
  kmsResponseSchema,
  MAX_KMS_BATCH_ITEMS,
  MAX_KMS_CIPHERTEXT_TEXT,
  MAX_KMS_PLAINTEXT,
  MAX_MESSAGE_BYTES,
  planKmsBatches,
  type KmsBatchItem,
  type KmsItemReply,
} from '../../../protocol/src/messages/index.js'
import { encodeValue } from '../../../protocol/src/messages/schema.js'

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
  } catch (e) {
    if (isKeymeshError(e)) return e.code
    throw e
  }
  return undefined
}
const jsonBytes = (f: typeof kmsRequestSchema | typeof kmsResponseSchema, v: unknown): number => Buffer.byteLength(JSON.stringify(encodeValue(f, v)))

/** A small deterministic generator (xorshift32), so a failure can be replayed. */
function rng(seed: number): (n: number) => number {
  let x = seed
  return (n) => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) % n
  }
}

function randomItem(r: (n: number) => number, id: number): KmsBatchItem {
  const context = r(3) === 0 ? undefined : Object.fromEntries(Array.from({ length: r(16) + 1 }, (_, i) => [`k${i}`, ['plain', '"quoted"\\', 'é ünïcødé ✓', '\u0001\u001f'][r(4)] as string]))
  const size = [0, 1, 100, 1024, 4000, MAX_KMS_PLAINTEXT][r(6)] as number
  const key = r(2) === 0 ? 'k' : 'k'.repeat(63)
  switch (r(7)) {
    case 0:
      return { id, op: 'encrypt', key, plaintext: new Uint8Array(size).fill(7), ...(context ? { context } : {}) }
    case 1:
      return { id, op: 'decrypt', ciphertext: `km1:${key}:1:${'A'.repeat(Math.max(40, Math.ceil((size * 4) / 3)))}`, ...(context ? { context } : {}) }
    case 2:
      return { id, op: 'rewrap', ciphertext: `km1:${key}:1:"\\${'B'.repeat(Math.ceil((size * 4) / 3))}`, key }
    case 3:
      return { id, op: 'datakey', key, bytes: 16 + r(49), wrappedOnly: r(2) === 0, ...(context ? { context } : {}) }
    case 4:
      return { id, op: r(2) === 0 ? 'sign' : 'hmac', key, plaintext: new Uint8Array(size).fill(5) }
    case 5:
      return { id, op: r(2) === 0 ? 'verify' : 'hmacverify', ciphertext: `km1s:${key}:1:${'S'.repeat(86)}`, plaintext: new Uint8Array(size).fill(6) }
    default:
      return { id, op: r(2) === 0 ? 'dropopen' : 'dropseal', header: new Uint8Array(1 + r(400)).fill(3) }
  }
}

t.test('kmsItemBytes is the exact length of an item in a kms.batch, its comma included', async (t) => {
  const r = rng(7)
  for (let i = 0; i < 200; i++) {
    const item = randomItem(r, Number.MAX_SAFE_INTEGER - i)
    t.equal(kmsItemBytes(item), jsonBytes(kmsRequestSchema, item) + 1, `${item.op} item ${i}`)
  }
})

t.test('splits 100 items of 1 KiB into a few messages that each fit a record, in order', async (t) => {
  const items: KmsBatchItem[] = Array.from({ length: 100 }, (_, i) => ({ id: i + 1, op: 'encrypt', key: 'orders', plaintext: new Uint8Array(1024).fill(i) }))
  const groups = planKmsBatches(items)
  t.same(groups.flat().map((i) => i.id), items.map((i) => i.id), 'every item once, in order')
  t.equal(groups.length, 3, '~45 items of 1 KiB per message')
  for (const [n, group] of groups.entries()) {
    const bytes = encodeMessage({ type: 'kms.batch', id: n + 1, items: group })
    t.ok(bytes.length <= MAX_MESSAGE_BYTES, `${group.length} items in ${bytes.length} bytes`)
    if (n < groups.length - 1) t.ok(bytes.length > MAX_MESSAGE_BYTES * 0.9, 'and messages are full')
  }
})

const headerKey = (item: KmsBatchItem): string => (item.ciphertext ?? '').split(':')[1] as string
const body = (item: KmsBatchItem): number => ((item.ciphertext ?? '').split(':')[3] as string).length

t.test('every planned message fits, and the successes it asks for fit one reply', async (t) => {
  const suite = nodeSuite
  const material = new Uint8Array(32).fill(1)
  for (const seed of [1, 2, 3, 4, 5]) {
    const r = rng(seed)
    const items = Array.from({ length: 300 }, (_, i) => randomItem(r, i + 1))
    const groups = planKmsBatches(items)
    t.same(groups.flat(), items, `seed ${seed}: the items, in order`)
    for (const group of groups) {
      t.ok(group.length >= 1 && group.length <= MAX_KMS_BATCH_ITEMS)
      const bytes = encodeMessage({ type: 'kms.batch', id: Number.MAX_SAFE_INTEGER, items: group })
      if (bytes.length > MAX_MESSAGE_BYTES) t.fail(`seed ${seed}: a message of ${bytes.length} bytes`)
      // The successful replies, as the control plane would make them, fit one part.
      const replies: KmsItemReply[] = group.map((item) => {
        const version = 4_294_967_295
        switch (item.op) {
          case 'encrypt':
          case 'datakey': {
            const pt = item.plaintext ?? new Uint8Array(item.bytes ?? 32)
            const ciphertext = sealKm1(suite, { key: item.key as string, version }, material, pt, item.context)
            const plaintext = item.op === 'datakey' && item.wrappedOnly !== true ? { plaintext: pt } : {}
            return { id: item.id, ok: true, result: { ciphertext, ...plaintext, key: item.key as string, version } }
          }
          case 'decrypt':
            return { id: item.id, ok: true, result: { plaintext: new Uint8Array(Math.max(0, Math.floor((body(item) * 3) / 4) - 28)), key: headerKey(item), version } }
          case 'rewrap':
            return { id: item.id, ok: true, result: { ciphertext: `km1:${headerKey(item)}:${version}:${'C'.repeat(body(item))}`, key: headerKey(item), version } }
          case 'dropopen':
          case 'dropseal':
            return { id: item.id, ok: true, result: { plaintext: new Uint8Array(32), key: 'k'.repeat(63), version } }
          case 'sign':
          case 'hmac':
            return { id: item.id, ok: true, result: { ciphertext: `km1s:${item.key as string}:${version}:${'T'.repeat(86)}`, key: item.key as string, version } }
          case 'verify':
          case 'hmacverify':
            return { id: item.id, ok: true, result: { valid: false, key: headerKey(item), version } }
        }
      })
      for (const [i, reply] of replies.entries()) {
        const estimate = kmsReplyEstimate(group[i] as KmsBatchItem)
        const actual = jsonBytes(kmsResponseSchema, reply) + 1
        if (estimate < actual) t.fail(`seed ${seed}: ${reply.id} estimated ${estimate} < ${actual}`)
      }
      t.equal(encodeKmsBatchResponse(Number.MAX_SAFE_INTEGER, replies).length, 1, 'one reply part')
    }
  }
})

t.test('respects maxItems and maxBytes, and sends an item too large to share alone', async (t) => {
  const tiny = Array.from({ length: 600 }, (_, i): KmsBatchItem => ({ id: i + 1, op: 'datakey', key: 'k', wrappedOnly: true, bytes: 16 }))
  t.same(planKmsBatches(tiny).map((g) => g.length), [256, 256, 88])
  t.same(planKmsBatches(tiny.slice(0, 10), { maxItems: 4 }).map((g) => g.length), [4, 4, 2])
  const big: KmsBatchItem = { id: 1001, op: 'encrypt', key: 'k', plaintext: new Uint8Array(MAX_KMS_PLAINTEXT) }
  const groups = planKmsBatches([tiny[0] as KmsBatchItem, big, { ...big, id: 1002 }, tiny[1] as KmsBatchItem])
  t.same(groups.map((g) => g.map((i) => i.id)), [[1, 1001], [1002, 2]], 'two 32 KiB items never share a message; small ones join them')
  t.same(planKmsBatches([big], { maxBytes: 1000 }).map((g) => g.length), [1], 'an item over maxBytes still goes, alone')
  t.same(planKmsBatches([]), [])
  for (const limits of [{ maxItems: 0 }, { maxItems: MAX_KMS_BATCH_ITEMS + 1 }, { maxItems: 1.5 }, { maxBytes: 10 }, { maxBytes: MAX_MESSAGE_BYTES + 1 }]) {
    t.equal(codeOf(() => planKmsBatches(tiny, limits)), 'PROTO_ERR_INVALID_ARGUMENT', JSON.stringify(limits))
  }
})

t.test('packs replies into one kms.batch.response when they fit, byte for byte as encodeMessage', async (t) => {
  const replies: KmsItemReply[] = [
    { id: 1, ok: true, result: { ciphertext: 'km1:k:1:AAAA', key: 'k', version: 1 } },
    { id: 2, ok: false, error: { code: 'CP_ERR_FORBIDDEN', message: 'service app lacks decrypt on key k' } },
    { id: 3, ok: true, result: { plaintext: new Uint8Array([1, 2, 3]), key: 'k', version: 1 } },
  ]
  const parts = encodeKmsBatchResponse(42, replies)
  t.equal(parts.length, 1)
  t.same(Buffer.from(parts[0] as Uint8Array), Buffer.from(encodeMessage({ type: 'kms.batch.response', id: 42, last: true, items: replies })))
  t.equal(codeOf(() => encodeKmsBatchResponse(1, [])), 'PROTO_ERR_INVALID_ARGUMENT')
})

t.test('splits replies that do not fit one record into parts, the last marked', async (t) => {
  // 256 data keys of 64 bytes: tiny requests, replies near 300 bytes each.
  const replies: KmsItemReply[] = Array.from({ length: 256 }, (_, i) => ({
    id: i + 1,
    ok: true,
    result: { ciphertext: `km1:k:1:${'A'.repeat(139)}`, plaintext: new Uint8Array(64).fill(i), key: 'k', version: 1 },
  }))
  const parts = encodeKmsBatchResponse(9, replies).map((p) => {
    t.ok(p.length <= MAX_MESSAGE_BYTES, `${p.length} bytes`)
    return decodeMessage(p)
  })
  t.ok(parts.length >= 2, `${parts.length} parts`)
  t.same(parts.map((p) => p.type === 'kms.batch.response' && p.last), [...Array(parts.length - 1).fill(false), true])
  t.same(parts.flatMap((p) => (p.type === 'kms.batch.response' ? p.items : [])), replies, 'every reply once, in order')

  const many = Array.from({ length: 600 }, (_, i): KmsItemReply => ({ id: i + 1, ok: false, error: { code: 'CP_ERR_KMS_BUSY', message: '' } }))
  t.same(encodeKmsBatchResponse(1, many).map((p) => (decodeMessage(p) as { items: unknown[] }).items.length), [256, 256, 88])
  const small = encodeKmsBatchResponse(1, many.slice(0, 10), { maxBytes: 400 })
  t.ok(small.length > 1 && small.every((p) => p.length <= 400), 'maxBytes is honoured')
})

t.test('a reply that cannot be encoded becomes an error reply for its id alone', async (t) => {
  const fine: KmsItemReply = { id: 1, ok: true, result: { key: 'k', version: 1, ciphertext: 'km1:k:1:AAAA' } }
  const noResult = { id: 2, ok: true } as KmsItemReply
  const huge: KmsItemReply = { id: 3, ok: true, result: { plaintext: new Uint8Array(MAX_KMS_PLAINTEXT), ciphertext: 'c'.repeat(MAX_KMS_CIPHERTEXT_TEXT) } }
  const parts = encodeKmsBatchResponse(5, [fine, noResult, huge])
  const items = parts.flatMap((p) => (decodeMessage(p) as { items: KmsItemReply[] }).items)
  t.same(items[0], fine)
  t.match(items[1], { id: 2, ok: false, error: { code: 'PROTO_ERR_MESSAGE_FIELD' } })
  t.match(items[2], { id: 3, ok: false, error: { code: 'PROTO_ERR_MESSAGE_TOO_LARGE' } })
  t.equal(items.length, 3)
})

t.test('the fast reply encoding writes what the schema writes, and leaves anything unusual to it', async (t) => {
  const schemaJson = (r: KmsItemReply): string => JSON.stringify(encodeValue(kmsResponseSchema, r))
  const ct = sealKm1(nodeSuite, { key: 'orders.db', version: 7 }, new Uint8Array(32).fill(1), new Uint8Array(1024).fill(2))
  const usual: KmsItemReply[] = [
    { id: 1, ok: true, result: { ciphertext: ct, key: 'orders.db', version: 7 } },
    { id: Number.MAX_SAFE_INTEGER, ok: true, result: { version: 0xffff_ffff, key: 'k', ciphertext: ct } },
    { id: 3, ok: true, result: { plaintext: new Uint8Array(1024).fill(9), key: 'k', version: 1 } },
    { id: 4, ok: true, result: { plaintext: new Uint8Array(0), ciphertext: ct, key: undefined, version: 2 } as KmsItemReply['result'] },
    { id: 5, ok: true, result: {} },
  ]
  for (const r of usual) t.equal(fastReplyJson(r), schemaJson(r), `reply ${r.id}`)
  const unusual: Array<[string, KmsItemReply]> = [
    ['an error reply', { id: 1, ok: false, error: { code: 'CP_ERR_DECRYPT', message: 'no' } }],
    ['a quote in the ciphertext', { id: 1, ok: true, result: { ciphertext: 'km1:k:1:"\\' } }],
    ['an empty ciphertext', { id: 1, ok: true, result: { ciphertext: '' } }],
    ['a ciphertext over the limit', { id: 1, ok: true, result: { ciphertext: 'c'.repeat(MAX_KMS_CIPHERTEXT_TEXT + 1) } }],
    ['a bad key name', { id: 1, ok: true, result: { key: 'Bad' } }],
    ['version 0', { id: 1, ok: true, result: { version: 0 } }],
    ['plaintext over the limit', { id: 1, ok: true, result: { plaintext: new Uint8Array(MAX_KMS_PLAINTEXT + 1) } }],
    ['plaintext that is not bytes', { id: 1, ok: true, result: { plaintext: 'AAAA' as unknown as Uint8Array } }],
    ['an unknown result field', { id: 1, ok: true, result: { secret: 'x' } as KmsItemReply['result'] }],
    ['an unknown reply field', { id: 1, ok: true, result: { key: 'k' }, extra: 1 } as KmsItemReply],
    ['id 0', { id: 0, ok: true, result: { key: 'k' } }],
    ['no result', { id: 1, ok: true } as KmsItemReply],
    ['a result that is not an object', { id: 1, ok: true, result: null } as unknown as KmsItemReply],
    ['both result and error', { id: 1, ok: true, result: { key: 'k' }, error: { code: 'CP_ERR_X', message: '' } }],
  ]
  for (const [what, r] of unusual) t.equal(fastReplyJson(r), undefined, what)
  const [part] = encodeKmsBatchResponse(8, [unusual[1]?.[1] as KmsItemReply, { ...(unusual[4]?.[1] as KmsItemReply), id: 2 }])
  const items = (decodeMessage(part as Uint8Array) as { items: KmsItemReply[] }).items
  t.same(items[0], { id: 1, ok: true, result: { ciphertext: 'km1:k:1:"\\' } }, 'a quote still goes, escaped, by the schema path')
  t.match(items[1], { id: 2, ok: false, error: { code: 'PROTO_ERR_MESSAGE_FIELD' } }, 'a bad field still fails by the schema path')
})
