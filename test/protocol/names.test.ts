import t from 'tap'

import {
  AGENT_ID_PREFIX,
  formatKeyRef,
  formatPublicKey,
  isEndpointUrl,
  isId,
  isKeyName,
  isPairId,
  isPublicKeyText,
  isServiceName,
  newAgentId,
  newId,
  newTokenId,
  pairId,
  parseKeyRef,
  parsePairId,
  parsePublicKey,
  peerOf,
  validateAgentId,
  validateEndpointUrl,
  validateId,
  validateKeyName,
  validateKeyRef,
  validateServiceName,
  validateTokenId,
} from '../../protocol/src/names.js'
import { codeOf } from '../kit/errors.js'

const code = codeOf
const fixed = (fill: number) => (n: number) => new Uint8Array(n).fill(fill)

t.test('accepts service names that are DNS labels', async (t) => {
  for (const s of ['a', 'api', 'billing-v2', '0', 'a1-b2', 'x'.repeat(63)]) {
    t.equal(validateServiceName(s), s, s)
    t.ok(isServiceName(s))
  }
})

t.test('rejects service names that break the DNS label rules', async (t) => {
  for (const s of ['', '-api', 'api-', 'API', 'a_b', 'a.b', 'a b', 'x'.repeat(64), 'é', 'a:b', 7, null, undefined]) {
    t.equal(code(() => validateServiceName(s)), 'PROTO_ERR_INVALID_NAME', String(s))
  }
})

t.test('accepts key names and rejects colons, capitals and leading punctuation', async (t) => {
  for (const s of ['k', 'orders.v1', 'a_b-c.d', '9', 'k'.repeat(63)]) t.equal(validateKeyName(s), s)
  for (const s of ['', '.k', '-k', '_k', 'K', 'a:b', 'a/b', 'k'.repeat(64), {}]) {
    t.equal(code(() => validateKeyName(s)), 'PROTO_ERR_INVALID_NAME', String(s))
    t.notOk(isKeyName(s))
  }
})

t.test('formats and parses key references as name:version', async (t) => {
  t.equal(formatKeyRef({ name: 'orders', version: 3 }), 'orders:3')
  t.same(parseKeyRef('orders:3'), { name: 'orders', version: 3 })
  t.same(parseKeyRef('a.b:4294967295'), { name: 'a.b', version: 4_294_967_295 })
  t.same(validateKeyRef({ name: 'k', version: 1 }), { name: 'k', version: 1 })
  for (const s of ['orders', 'orders:', 'orders:0', 'orders:03', 'orders:-1', 'orders:1.5', ':1', 'orders:4294967296', 'x'.repeat(80), 'a:b:1', 5]) {
    t.equal(code(() => parseKeyRef(s)), 'PROTO_ERR_INVALID_NAME', String(s))
  }
  for (const v of [0, -1, 1.5, 2 ** 32, '1', NaN]) {
    t.equal(code(() => formatKeyRef({ name: 'k', version: v as number })), 'PROTO_ERR_INVALID_NAME', String(v))
  }
})

t.test('makes the same pair id whichever order the services come in', async (t) => {
  t.equal(pairId('web', 'api'), 'api:web')
  t.equal(pairId('api', 'web'), 'api:web')
  t.equal(pairId('a-1', 'a'), 'a:a-1')
  t.same(parsePairId('api:web'), { lo: 'api', hi: 'web' })
  t.equal(peerOf('api:web', 'api'), 'web')
  t.equal(peerOf('api:web', 'web'), 'api')
  t.equal(code(() => peerOf('api:web', 'db')), 'PROTO_ERR_INVALID_NAME')
})

t.test('refuses a pair of one service, and pair ids that are not canonical', async (t) => {
  t.equal(code(() => pairId('api', 'api')), 'PROTO_ERR_INVALID_NAME')
  t.equal(code(() => pairId('api', 'Web')), 'PROTO_ERR_INVALID_NAME')
  t.equal(code(() => pairId('-x', 'web')), 'PROTO_ERR_INVALID_NAME')
  for (const s of ['web:api', 'api:api', 'api', 'api:', ':web', 'api:web:x', 'API:web', `${'a'.repeat(64)}:b`, 'a'.repeat(200), 1]) {
    t.equal(code(() => parsePairId(s)), 'PROTO_ERR_INVALID_NAME', String(s))
    t.notOk(isPairId(s))
  }
  t.ok(isPairId(`${'a'.repeat(63)}:${'b'.repeat(63)}`))
})

t.test('makes ids of a prefix and 26 base32 characters from the injected random source', async (t) => {
  t.equal(newId('agt', fixed(0)), `agt_${'a'.repeat(26)}`)
  t.equal(newId('agt', fixed(0xff)), `agt_${'7'.repeat(25)}4`)
  const id = newAgentId(fixed(0x5a))
  t.match(id, /^agt_[a-z2-7]{26}$/)
  t.equal(validateAgentId(id), id)
  t.equal(validateTokenId(newTokenId(fixed(1))), newTokenId(fixed(1)))
  t.ok(isId(id, AGENT_ID_PREFIX))
  t.equal(code(() => newId('A', fixed(0))), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => newId('agt', () => new Uint8Array(15))), 'PROTO_ERR_INVALID_ARGUMENT')
})

t.test('encodes 128 bits in base32 exactly (RFC 4648 alphabet, lowercase)', async (t) => {
  const bytes = Buffer.from('00112233445566778899aabbccddeeff', 'hex')
  // RFC 4648 base32 of those bytes, as Python's base64.b32encode gives it, lowercased and unpadded.
  t.equal(newId('tok', () => new Uint8Array(bytes)), 'tok_aaisem2ekvthpcezvk54zxpo74')
})

t.test('rejects ids with the wrong prefix, length, alphabet or a non-canonical last character', async (t) => {
  const good = newAgentId(fixed(7))
  const bad = [
    good.replace('agt_', 'tok_'),
    good.slice(0, -1),
    `${good}a`,
    good.toUpperCase(),
    good.replace('_', '-'),
    `${good.slice(0, -1)}b`, // unused low bits set
    `${good.slice(0, -2)}1a`,
    '',
    null,
  ]
  for (const s of bad) t.equal(code(() => validateAgentId(s)), 'PROTO_ERR_INVALID_ID', String(s))
  t.equal(code(() => validateId(good, 'tok')), 'PROTO_ERR_INVALID_ID')
})

t.test('formats a public key as x25519: and unpadded base64url and parses it back', async (t) => {
  const key = new Uint8Array(32).map((_, i) => i * 9 + 250)
  const text = formatPublicKey(key)
  t.match(text, /^x25519:[A-Za-z0-9_-]{43}$/)
  t.same(parsePublicKey(text), key)
  t.ok(isPublicKeyText(text))
  t.equal(formatPublicKey(new Uint8Array(32)), `x25519:${'A'.repeat(43)}`)
  t.equal(formatPublicKey(new Uint8Array(32).fill(0xff)), `x25519:${'_'.repeat(42)}8`)
  t.same(parsePublicKey(formatPublicKey(new Uint8Array(33).fill(1).subarray(1))), new Uint8Array(32).fill(1))
  t.equal(code(() => formatPublicKey(new Uint8Array(31))), 'PROTO_ERR_INVALID_KEY')
})

t.test('rejects public-key text that is not exactly canonical', async (t) => {
  const text = formatPublicKey(new Uint8Array(32).fill(3))
  const body = text.slice(7)
  const bad = [
    body,
    `X25519:${body}`,
    `ed25519:${body}`,
    `x25519:${body}=`,
    `x25519:${body.slice(0, -1)}`,
    `x25519:${body}A`,
    `x25519:${body.slice(0, -1)}B`, // non-zero unused bits
    `x25519:${body.slice(0, -2)}+A`,
    `x25519:${body.slice(0, -2)}/A`,
    `x25519: ${body.slice(1)}`,
    '',
    42,
  ]
  for (const s of bad) {
    const c = code(() => parsePublicKey(s))
    t.equal(c, 'PROTO_ERR_INVALID_PUBLIC_KEY_TEXT', String(s))
  }
  try {
    parsePublicKey(`x25519:${body.slice(0, -1)}B`)
  } catch (e) {
    t.notMatch((e as Error).message, body.slice(0, 10), 'the error does not echo the text')
  }
})

t.test('accepts ws and wss endpoints and rejects everything else', async (t) => {
  for (const s of ['ws://10.0.0.1:7000', 'wss://agent-1.example.com:8443/tunnel', 'wss://[::1]:9000/', 'ws://h/p?x=1']) {
    t.equal(validateEndpointUrl(s), s, s)
  }
  const bad = [
    'http://example.com',
    'wss://',
    'wss://user:pw@example.com',
    'wss://user@example.com',
    'wss://example.com/#frag',
    'wss://exa mple.com',
    'wss://example.com/"',
    `wss://${'a'.repeat(160)}.com`,
    'wss://[::1',
    'WSS://example.com',
    7,
  ]
  for (const s of bad) {
    t.equal(code(() => validateEndpointUrl(s)), 'PROTO_ERR_INVALID_NAME', String(s))
    t.notOk(isEndpointUrl(s))
  }
})
