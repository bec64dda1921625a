import t from 'tap'

import {
  contextHash,
  formatKm1,
  km1AssociatedData,
  openKm1,
  parseKm1,
  sealKm1,
  type Km1,
} from '../../protocol/src/ciphertext.js'
import { createNodeSuite, createStablelibSuite, nodeSuite, stablelibSuite, type CryptoSuite } from '../../protocol/src/crypto/index.js'
import { MAX_KMS_CIPHERTEXT_TEXT, MAX_KMS_PLAINTEXT } from '../../protocol/src/messages/kms.js'
import { codeOf } from '../kit/errors.js'
import { seededRandom } from '../kit/seeded-random.js'
import { toHex } from '../kit/vectors.js'

const PROVIDERS: readonly CryptoSuite[] = [nodeSuite, stablelibSuite]
const key = (fill: number): Uint8Array => new Uint8Array(32).fill(fill)
const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const h = { key: 'orders.db', version: 3 }
const ctx = { tenant: 'acme', table: 'orders' }

for (const suite of PROVIDERS) {
  t.test(`${suite.name}: seals and opens, with and without context, at 0 bytes and at the plaintext limit`, async (t) => {
    for (const n of [0, 1, 100, MAX_KMS_PLAINTEXT]) {
      const plain = new Uint8Array(n).fill(0x5a)
      const ct = sealKm1(suite, h, key(1), plain, ctx)
      t.match(ct, /^km1:orders\.db:3:[A-Za-z0-9_-]+$/, `${n} bytes: km1 text`)
      t.ok(ct.length <= MAX_KMS_CIPHERTEXT_TEXT, `${n} bytes: within the text limit`)
      t.equal(toHex(openKm1(suite, parseKm1(ct), key(1), ctx)), toHex(plain), `${n} bytes round trip`)
    }
    const bare = sealKm1(suite, h, key(1), text('no context'))
    t.equal(Buffer.from(openKm1(suite, parseKm1(bare), key(1))).toString(), 'no context')
    t.equal(Buffer.from(openKm1(suite, parseKm1(bare), key(1), {})).toString(), 'no context', 'an empty context is no context')
  })

  t.test(`${suite.name}: a wrong context, key, version or key name fails to open`, async (t) => {
    const ct = parseKm1(sealKm1(suite, h, key(1), text('secret'), ctx))
    const fails = (c: Km1, k: Uint8Array, context?: Record<string, string>) => codeOf(() => openKm1(suite, c, k, context))
    t.equal(fails(ct, key(1), { tenant: 'acme', table: 'invoices' }), 'PROTO_ERR_DECRYPT', 'changed value')
    t.equal(fails(ct, key(1), { tenant: 'acme' }), 'PROTO_ERR_DECRYPT', 'missing entry')
    t.equal(fails(ct, key(1), { ...ctx, extra: '' }), 'PROTO_ERR_DECRYPT', 'extra entry, even empty')
    t.equal(fails(ct, key(1)), 'PROTO_ERR_DECRYPT', 'no context')
    t.equal(fails(ct, key(2), ctx), 'PROTO_ERR_DECRYPT', 'other key material')
    t.equal(fails({ ...ct, version: 4 }, key(1), ctx), 'PROTO_ERR_DECRYPT', 'header names another version')
    t.equal(fails({ ...ct, key: 'orders.dc' }, key(1), ctx), 'PROTO_ERR_DECRYPT', 'header names another key')
    // The same edits made in the text, as an attacker would.
    const textual = formatKm1(ct).replace(':3:', ':4:')
    t.equal(fails(parseKm1(textual), key(1), ctx), 'PROTO_ERR_DECRYPT', 'version edited in the text')
    t.equal(fails(ct, key(1), ctx), 'no error', 'the original still opens')
  })

  t.test(`${suite.name}: every single flipped character of a ciphertext is refused`, async (t) => {
    const ct = sealKm1(suite, h, key(7), text('flip me'), ctx)
    let refused = 0
    for (let i = 0; i < ct.length; i++) {
      const c = String.fromCharCode(ct.charCodeAt(i) ^ 0x01)
      const bad = ct.slice(0, i) + c + ct.slice(i + 1)
      const code = codeOf(() => openKm1(suite, parseKm1(bad), key(7), ctx))
      if (/^PROTO_ERR_(DECRYPT|CIPHERTEXT_FORMAT|CIPHERTEXT_VERSION)$/.test(code)) refused++
      else t.fail(`position ${i}: ${code}`)
    }
    t.equal(refused, ct.length, 'all positions refused with a typed code')
  })
}

t.test('both providers give the same km1 text for the same random nonce', async (t) => {
  const a = sealKm1(createNodeSuite({ random: seededRandom('km1') }), h, key(3), text('same'), ctx)
  const b = sealKm1(createStablelibSuite({ random: seededRandom('km1') }), h, key(3), text('same'), ctx)
  t.equal(a, b)
  t.equal(Buffer.from(openKm1(stablelibSuite, parseKm1(a), key(3), ctx)).toString(), 'same')
})

t.test('context order does not matter, and the encoding tells contexts apart', async (t) => {
  const ab = km1AssociatedData(h, { a: '1', b: '2' })
  t.equal(toHex(km1AssociatedData(h, { b: '2', a: '1' })), toHex(ab), 'key order is irrelevant')
  const ct = sealKm1(nodeSuite, h, key(1), text('x'), { a: '1', b: '2' })
  t.equal(Buffer.from(openKm1(nodeSuite, parseKm1(ct), key(1), { b: '2', a: '1' })).toString(), 'x')
  const distinct = [
    km1AssociatedData(h, undefined),
    km1AssociatedData(h, { a: 'bc' }),
    km1AssociatedData(h, { ab: 'c' }),
    km1AssociatedData(h, { a: '', bc: '' }),
    km1AssociatedData(h, { a: 'b', c: '' }),
    km1AssociatedData({ key: 'orders.db', version: 30 }, undefined),
    km1AssociatedData({ key: 'orders.db3', version: 1 }, undefined),
  ].map(toHex)
  t.equal(new Set(distinct).size, distinct.length, 'no two differing inputs share an encoding')
  t.equal(toHex(km1AssociatedData(h, {})), toHex(km1AssociatedData(h, undefined)), 'an empty context is no context')
  t.equal(codeOf(() => km1AssociatedData(h, { a: 1 } as unknown as Record<string, string>)), 'PROTO_ERR_INVALID_ARGUMENT', 'non-string value')
  t.equal(codeOf(() => km1AssociatedData(h, ['a'] as unknown as Record<string, string>)), 'PROTO_ERR_INVALID_ARGUMENT', 'array context')
  t.equal(codeOf(() => km1AssociatedData({ key: 'Bad', version: 1 }, undefined)), 'PROTO_ERR_INVALID_NAME', 'bad key name')
  t.equal(codeOf(() => km1AssociatedData({ key: 'k', version: 0 }, undefined)), 'PROTO_ERR_INVALID_NAME', 'version 0')
})

t.test('contextHash is order-independent hex and does not contain the context', async (t) => {
  const one = contextHash(nodeSuite, { tenant: 'acme-secret-tenant', table: 'orders' })
  t.match(one, /^[0-9a-f]{64}$/)
  t.equal(contextHash(stablelibSuite, { table: 'orders', tenant: 'acme-secret-tenant' }), one)
  t.not(contextHash(nodeSuite, { tenant: 'acme-secret-tenant' }), one)
  t.equal(contextHash(nodeSuite, undefined), contextHash(nodeSuite, {}))
  t.notMatch(one, /acme|orders/)
})

t.test('parse and format are inverse on canonical text', async (t) => {
  const ct = sealKm1(nodeSuite, { key: 'a', version: 4294967295 }, key(1), text('edge'))
  const parsed = parseKm1(ct)
  t.equal(parsed.key, 'a')
  t.equal(parsed.version, 4294967295)
  t.equal(parsed.nonce.length, 12)
  t.equal(parsed.sealed.length, 4 + 16)
  t.equal(formatKm1(parsed), ct)
})

t.test('parse rejects every malformed form with a typed code', async (t) => {
  const body = Buffer.alloc(28, 1).toString('base64url') // nonce + empty ciphertext + tag
  t.equal(codeOf(() => parseKm1(`km1:k:1:${body}`)), 'no error', 'the baseline parses')
  const cases: Array<[string, unknown, string]> = [
    ['not a string', 42, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['empty', '', 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['another format version', `km2:k:1:${body}`, 'PROTO_ERR_CIPHERTEXT_VERSION'],
    ['a far later version', `km10:k:1:${body}`, 'PROTO_ERR_CIPHERTEXT_VERSION'],
    ['upper-case prefix', `KM1:k:1:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['other prefix', `vault:v1:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['too few parts', `km1:k:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['too many parts', `km1:k:1:${body}:x`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['empty key', `km1::1:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['upper-case key', `km1:K:1:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['key starting with a dot', `km1:.k:1:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['version 0', `km1:k:0:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['version with a leading zero', `km1:k:01:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['version with a sign', `km1:k:+1:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['version 2^32', `km1:k:4294967296:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['fractional version', `km1:k:1.0:${body}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['empty data', 'km1:k:1:', 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['padded base64', `km1:k:1:${body}==`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['standard base64 alphabet', `km1:k:1:${Buffer.alloc(30, 0xfb).toString('base64')}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['non-canonical trailing bits', `km1:k:1:${Buffer.alloc(29, 1).toString('base64url').slice(0, -1)}B`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['impossible length (4n+1 characters)', `km1:k:1:${Buffer.alloc(30, 1).toString('base64url')}A`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['shorter than nonce and tag', `km1:k:1:${Buffer.alloc(27, 1).toString('base64url')}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['whitespace', `km1:k:1:${body}\n`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
    ['over the text limit', `km1:k:1:${'A'.repeat(MAX_KMS_CIPHERTEXT_TEXT)}`, 'PROTO_ERR_CIPHERTEXT_FORMAT'],
  ]
  for (const [what, input, code] of cases) t.equal(codeOf(() => parseKm1(input)), code, what)
  // Errors never echo the text (it may be someone's data pasted into the wrong field).
  try {
    parseKm1('km1:k:1:c2VjcmV0LXBheWxvYWQ')
    t.fail('should throw')
  } catch (e) {
    t.notMatch(String((e as Error).message), /c2VjcmV0/)
  }
})

t.test('format and seal refuse what parse would refuse', async (t) => {
  const ok = parseKm1(sealKm1(nodeSuite, h, key(1), text('x')))
  t.equal(codeOf(() => formatKm1({ ...ok, nonce: new Uint8Array(11) })), 'PROTO_ERR_INVALID_NONCE')
  t.equal(codeOf(() => formatKm1({ ...ok, sealed: new Uint8Array(15) })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(codeOf(() => formatKm1({ ...ok, key: 'a:b' })), 'PROTO_ERR_INVALID_NAME')
  t.equal(codeOf(() => formatKm1({ ...ok, version: 1.5 })), 'PROTO_ERR_INVALID_NAME')
  t.equal(codeOf(() => sealKm1(nodeSuite, h, key(1), new Uint8Array(MAX_KMS_PLAINTEXT + 200))), 'PROTO_ERR_CIPHERTEXT_FORMAT', 'too large to fit the text limit')
  t.equal(codeOf(() => sealKm1(nodeSuite, h, new Uint8Array(16), text('x'))), 'PROTO_ERR_INVALID_KEY', 'a 16-byte key')
})

t.test('many key versions without context: each ciphertext opens under its own header only', async (t) => {
  // More headers than the associated-data cache holds, so it is emptied on the way.
  const key = new Uint8Array(32).fill(5)
  const plaintext = new Uint8Array([1, 2, 3])
  let opened = 0
  let refused = 0
  for (let version = 1; version <= 300; version++) {
    const h = { key: 'cache.test', version }
    const c = parseKm1(sealKm1(nodeSuite, h, key, plaintext, version % 2 === 0 ? {} : undefined))
    if (Buffer.from(openKm1(nodeSuite, c, key)).equals(Buffer.from(plaintext))) opened++
    if (codeOf(() => openKm1(nodeSuite, { ...c, version: version + 1 }, key)) === 'PROTO_ERR_DECRYPT') refused++
    if (codeOf(() => openKm1(nodeSuite, c, key, { a: 'b' })) === 'PROTO_ERR_DECRYPT') refused++
  }
  t.equal(opened, 300, 'every ciphertext opens, with {} or no context alike')
  t.equal(refused, 600, 'and none under the next version or with a context')
  t.equal(codeOf(() => sealKm1(nodeSuite, { key: 'Bad', version: 1 }, key, plaintext)), 'PROTO_ERR_INVALID_NAME', 'a bad header is still refused')
})

t.test('a body outside the base64url alphabet and a non-canonical one are told apart', async (t) => {
  const messageOf = (input: string): string => {
    try {
      parseKm1(input)
    } catch (e) {
      return (e as Error).message
    }
    return 'no error'
  }
  const body = Buffer.alloc(28, 1).toString('base64url')
  for (const bad of [`${body}==`, `${body.slice(0, -1)}+`, `${body}\n`, '']) t.match(messageOf(`km1:k:1:${bad}`), /unpadded base64url/, JSON.stringify(bad.slice(-2)))
  t.match(messageOf(`km1:k:1:${Buffer.alloc(29, 1).toString('base64url').slice(0, -1)}B`), /not canonical base64url/, 'stray trailing bits')
  t.match(messageOf(`km1:k:1:${Buffer.alloc(30, 1).toString('base64url')}A`), /not canonical base64url/, 'a length no bytes have (4n+1)')
})
