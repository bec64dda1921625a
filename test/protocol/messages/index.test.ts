import t from 'tap'
import { MAX_DROP_HEADER_BYTES } from '../../../protocol/src/index.js'

import { isKeymeshError } from '../../../protocol/src/errors.js'
import {
  decodeMessage,
  encodeMessage,
  MAX_CONTEXT_ENTRIES,
  MAX_KMS_BATCH_ITEMS,
  MAX_KMS_PLAINTEXT,
  MAX_MESSAGE_BYTES,
  MAX_PAIR_PEERS,
  MAX_PAIR_VERSIONS,
  MAX_LOST_SEQS,
  MAX_USAGE_EVENTS,
  MESSAGE_TYPES,
  SECRET_FIELD_PATHS,
  type Message,
  type PairEntry,
  type UsageEvent,
  type UsageLoss,
} from '../../../protocol/src/messages/index.js'
import { decodeValue, encodeValue, literal, nullable, optional, secretPaths, str } from '../../../protocol/src/messages/schema.js'
import { formatPublicKey, newAgentId } from '../../../protocol/src/names.js'

const err = (fn: () => unknown): { code: string; message: string } | undefined => {
  try {
    fn()
  } catch (e) {
    if (isKeymeshError(e)) return { code: e.code, message: e.message }
    throw e
  }
  return undefined
}
const fixed = (fill: number) => (n: number) => new Uint8Array(n).fill(fill)
const KEY = new Uint8Array(32).fill(0xab)
const AGENT = newAgentId(fixed(1))
const PEER_AGENT = newAgentId(fixed(2))
const STATIC = formatPublicKey(new Uint8Array(32).fill(9))

const pair: PairEntry = {
  pairId: 'api:web',
  peerService: 'api',
  mayInitiate: true,
  mayAccept: false,
  versions: [
    { version: 2, key: KEY, state: 'current', notAfter: null },
    { version: 1, key: new Uint8Array(32).fill(1), state: 'previous', notAfter: 1_700_000_000_000 },
  ],
  peers: [
    { agentId: PEER_AGENT, staticKey: STATIC, endpoint: 'wss://api-1.internal:7443/tunnel' },
    { agentId: AGENT, staticKey: STATIC, endpoint: null },
  ],
}

/** One valid message of every type, with optional fields present. */
const SAMPLES: Message[] = [
  { type: 'hello', protocol: 'keymesh/1', service: 'web', joinToken: 'jtk_0123456789abcdef', agentVersion: '0.1.0', endpoint: 'wss://web-1:7443', features: ['peer.up'] },
  { type: 'welcome', agentId: AGENT, service: 'web', serverTime: 1_700_000_000_000 },
  { type: 'keyset.begin', generation: 7, pairCount: 1 },
  { type: 'keyset.pair', pair },
  { type: 'keyset.end', generation: 7 },
  { type: 'pair.update', pair },
  { type: 'pair.remove', pairId: 'api:web' },
  {
    type: 'usage.batch',
    seq: 1,
    events: [
      { kind: 'conn.open', at: 1, pairId: 'api:web', peerService: 'api', peerAgent: PEER_AGENT, keyVersion: 2 },
      { kind: 'conn.close', at: 2, bytesIn: 10, bytesOut: 20, durationMs: 5 },
      { kind: 'handshake.fail', at: 3, reason: 'PROTO_ERR_DECRYPT' },
    ],
  },
  { type: 'usage.ack', seq: 1 },
  { type: 'kms.request', id: 1, op: 'encrypt', key: 'orders', plaintext: new Uint8Array([1, 2, 3]), context: { tenant: 't1' } },
  { type: 'kms.request', id: 2, op: 'decrypt', ciphertext: 'km1:orders:2:AAAA', context: {} },
  { type: 'kms.request', id: 3, op: 'rewrap', ciphertext: 'km1:orders:1:AAAA', key: 'orders' },
  { type: 'kms.request', id: 4, op: 'datakey', key: 'orders', wrappedOnly: true, bytes: 32 },
  { type: 'kms.response', id: 1, ok: true, result: { ciphertext: 'km1:orders:2:AAAA', key: 'orders', version: 2 } },
  { type: 'kms.response', id: 2, ok: true, result: { plaintext: new Uint8Array(0) } },
  { type: 'kms.response', id: 3, ok: false, error: { code: 'CP_ERR_FORBIDDEN', message: 'no decrypt grant' } },
  { type: 'error', code: 'AGENT_ERR_X', message: '' },
  { type: 'kms.request', id: 5, op: 'dropopen', header: new Uint8Array(90).fill(9) },
  {
    type: 'kms.batch',
    id: 6,
    items: [
      { id: 7, op: 'encrypt', key: 'orders', plaintext: new Uint8Array([1, 2, 3]), context: { tenant: 't1' } },
      { id: 8, op: 'decrypt', ciphertext: 'km1:orders:2:AAAA' },
      { id: 9, op: 'dropseal', header: new Uint8Array(90).fill(9) },
      { id: 10, op: 'datakey', key: 'orders', wrappedOnly: false, bytes: 64 },
      { id: 11, op: 'rewrap', ciphertext: 'km1:orders:1:AAAA', key: 'orders', context: {} },
    ],
  },
  {
    type: 'kms.batch.response',
    id: 6,
    last: true,
    items: [
      { id: 7, ok: true, result: { ciphertext: 'km1:orders:2:AAAA', key: 'orders', version: 2 } },
      { id: 8, ok: false, error: { code: 'CP_ERR_DECRYPT', message: 'ciphertext does not open' } },
      { id: 9, ok: true, result: { plaintext: new Uint8Array(32).fill(7), key: 'partner', version: 1 } },
    ],
  },
  { type: 'features', features: ['keyset.request', 'peer.up', 'a-later-one'] },
  { type: 'keyset.request', pairId: 'api:web' },
  { type: 'peer.up', pairId: 'api:web', agentId: PEER_AGENT },
  { type: 'pair.peers', pairId: 'api:web', add: [{ agentId: PEER_AGENT, staticKey: STATIC, endpoint: 'wss://api-2.internal:7443/tunnel' }], remove: [AGENT] },
]

const wire = (m: Message): Record<string, unknown> => JSON.parse(Buffer.from(encodeMessage(m)).toString('utf8'))
const bytesOf = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v))

t.test('types messages as a discriminated union', async (t) => {
  const m = decodeMessage(encodeMessage(SAMPLES[3] as Message))
  if (m.type === 'keyset.pair') {
    const key: Uint8Array | undefined = m.pair.versions[0]?.key
    const state: 'current' | 'previous' | undefined = m.pair.versions[0]?.state
    t.ok(key && state)
  }
  // @ts-expect-error a hello needs its service
  const bad: Message = { type: 'hello', protocol: 'keymesh/1', agentVersion: '1' }
  // @ts-expect-error usage.ack has no events
  const bad2: Message = { type: 'usage.ack', seq: 1, events: [] }
  t.ok(bad && bad2)
})

t.test('round-trips one message of every type', async (t) => {
  const seen = new Set(SAMPLES.map((m) => m.type))
  t.same([...seen].sort(), [...MESSAGE_TYPES].sort(), 'every type has a sample')
  for (const m of SAMPLES) {
    const back = decodeMessage(encodeMessage(m))
    t.same(back, m, m.type)
  }
})

t.test('decodes binary fields to Uint8Array and encodes them as canonical base64', async (t) => {
  const w = wire(SAMPLES[3] as Message) as { pair: { versions: { key: string }[] } }
  t.equal(w.pair.versions[0]?.key, Buffer.from(KEY).toString('base64'))
  const back = decodeMessage(bytesOf(w))
  t.ok(back.type === 'keyset.pair' && back.pair.versions[0]?.key instanceof Uint8Array)
})

/** Sets `value` at a dotted path (with [i] indexes) in a JSON object; undefined deletes. */
function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.replace(/\[(\d+)\]/g, '.$1').split('.')
  let o: Record<string, unknown> = obj
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>
  const last = parts[parts.length - 1] as string
  if (value === undefined) delete o[last]
  else o[last] = value
}

/** `n` small valid batch items with distinct ids, as JSON. */
function batchOf(n: number): { id: number; op: string; key: string }[] {
  return Array.from({ length: n }, (_, i) => ({ id: i + 1, op: 'datakey', key: 'k' }))
}

// [sample index, field path, bad values]. Every field of every message, in its bad forms.
const str64 = 'x'.repeat(65)
const BAD: [number, string, unknown[]][] = [
  [0, 'service', [undefined, '', 'Web', '-web', 7, null, str64]],
  [0, 'joinToken', ['short', 'has space in it here', 'x'.repeat(257), 1, null]],
  [0, 'agentVersion', [undefined, '', '1 0', 'v'.repeat(65), 1]],
  [0, 'endpoint', ['http://x', 'wss://u:p@h', `wss://${'h'.repeat(160)}`, null, 3]],
  [1, 'agentId', [undefined, 'agt_x', 'tok_aaaaaaaaaaaaaaaaaaaaaaaaaa', 1]],
  [1, 'service', ['', 'a_b']],
  [1, 'serverTime', [undefined, -1, 1.5, '1', 8.64e15 + 1, null]],
  [2, 'generation', [-1, 0.5, '7', 2 ** 53]],
  [2, 'pairCount', [-1, 100_001, true]],
  [3, 'pair', [undefined, null, [], 'x']],
  [3, 'pair.pairId', ['web:api', 'api:api', 'api', '', 1]],
  [3, 'pair.peerService', ['db', '', 'API']],
  [3, 'pair.mayInitiate', [undefined, 1, 'true', null]],
  [3, 'pair.mayAccept', [0]],
  [3, 'pair.versions', [[], null, 'x']],
  [3, 'pair.versions[0].version', [0, -1, 2 ** 32, '2']],
  [3, 'pair.versions[0].key', [undefined, '', 'AAAA', Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64'), Buffer.alloc(32).toString('base64url'), `${Buffer.alloc(32, 0xab).toString('base64').slice(0, -2)}t=`, 'q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=\n', 5]],
  [3, 'pair.versions[0].state', ['next', '', null]],
  [3, 'pair.versions[0].notAfter', [undefined, -5, 'never']],
  [3, 'pair.peers', [undefined, {}, null]],
  [3, 'pair.peers[0].agentId', ['agt_AAAAAAAAAAAAAAAAAAAAAAAAAA', null]],
  [3, 'pair.peers[0].staticKey', ['x25519:abc', STATIC.slice(7), null]],
  [3, 'pair.peers[0].endpoint', [undefined, 'tcp://x:1', '']],
  [4, 'generation', [undefined]],
  [6, 'pairId', ['b:a', undefined]],
  [7, 'seq', [0, -1, undefined]],
  [7, 'events', [[], undefined, {}]],
  [7, 'events[0].kind', ['conn.reset', undefined]],
  [7, 'events[0].at', [undefined, -1]],
  [7, 'events[0].pairId', ['x']],
  [7, 'events[0].peerService', ['X']],
  [7, 'events[0].peerAgent', ['agt_']],
  [7, 'events[0].keyVersion', [0]],
  [7, 'events[1].bytesIn', [-1, 1.5]],
  [7, 'events[1].bytesOut', ['1']],
  [7, 'events[1].durationMs', [null]],
  [7, 'events[2].reason', ['oops', 'PROTO_ERR_', 'proto_err_x', `PROTO_ERR_${'X'.repeat(51)}`]],
  [8, 'seq', [0]],
  [9, 'id', [0, undefined, 'a']],
  [9, 'op', ['sign', undefined]],
  [9, 'key', [undefined, 'Orders', 'a:b']],
  [9, 'plaintext', [undefined, 'not base64!', 1, Buffer.alloc(MAX_KMS_PLAINTEXT + 1).toString('base64'), Buffer.alloc(MAX_KMS_PLAINTEXT + 3).toString('base64')]],
  [9, 'context', [[], 'x', { 'bad key': 'v' }, { k: 1 }, { k: 'v'.repeat(129) }, { ['k'.repeat(65)]: 'v' }, Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']))]],
  [9, 'ciphertext', ['km1:x']],
  [9, 'wrappedOnly', [true]],
  [10, 'ciphertext', [undefined, 'has space', '']],
  [10, 'plaintext', ['AAAA']],
  [11, 'key', ['K']],
  [12, 'key', [undefined]],
  [12, 'wrappedOnly', ['yes']],
  [12, 'bytes', [15, 65, 32.5]],
  [12, 'plaintext', ['AAAA']],
  [13, 'id', [0]],
  [13, 'ok', [undefined, 'true']],
  [13, 'result', [undefined, null]],
  [13, 'error', [{ code: 'CP_ERR_X', message: '' }]],
  [13, 'result.version', [0]],
  [13, 'result.key', ['K']],
  [13, 'result.ciphertext', ['']],
  [14, 'result.plaintext', ['=']],
  [15, 'error', [undefined, { code: 'X' }, { code: 'CP_ERR_X', message: 'm', extra: 1 }]],
  [15, 'result', [{}]],
  [15, 'error.message', ['m'.repeat(513), 1]],
  [16, 'code', ['ERR', undefined, 'CP_ERR_lower']],
  [16, 'message', [undefined, null]],
  [17, 'key', ['partner']],
  [17, 'header', [undefined, '', Buffer.alloc(MAX_DROP_HEADER_BYTES + 1).toString('base64'), 'x']],
  [17, 'context', [{ 'keymesh:to': 'web' }]],
  [17, 'ciphertext', ['km1:partner:1:AAAA']],
  [17, 'plaintext', ['AAAA']],
  [17, 'bytes', [32]],
  [18, 'id', [0, undefined, 'a']],
  [18, 'items', [undefined, [], {}, 'x', batchOf(MAX_KMS_BATCH_ITEMS + 1), [{ id: 1, op: 'datakey', key: 'k' }, { id: 1, op: 'datakey', key: 'j' }]]],
  [18, 'items[0]', [null, 'x']],
  [18, 'items[0].id', [undefined, 0]],
  [18, 'items[0].op', ['sign']],
  [18, 'items[0].type', ['kms.request']],
  [18, 'items[0].plaintext', [undefined, 'not base64!']],
  [18, 'items[1].plaintext', ['AAAA']],
  [18, 'items[2].header', [undefined]],
  [18, 'items[3].bytes', [65]],
  [18, 'items[4].context', [{ k: 1 }]],
  [19, 'id', [0]],
  [19, 'last', [undefined, 'true', 1]],
  [19, 'items', [undefined, [], batchOf(2).map((i) => ({ id: i.id, ok: false, error: { code: 'CP_ERR_X', message: '' } })).map((r) => ({ ...r, id: 1 }))]],
  [19, 'items[0].ok', [undefined]],
  [19, 'items[0].result.key', ['K']],
  [19, 'items[1].error', [undefined]],
  [19, 'items[2].result.plaintext', ['=']],
  [SAMPLES.findIndex((m) => m.type === 'features'), 'features[0]', ['Peer.Up', '', 'x'.repeat(33), 7]],
  [SAMPLES.findIndex((m) => m.type === 'features'), 'features', ['peer.up', Array.from({ length: 17 }, () => 'a')]],
  [0, 'features', [[''], 'peer.up']],
  [SAMPLES.findIndex((m) => m.type === 'keyset.request'), 'pairId', ['web', 'a:a', 1]],
  [SAMPLES.findIndex((m) => m.type === 'peer.up'), 'agentId', ['agt_x', 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbb']],
  [SAMPLES.findIndex((m) => m.type === 'pair.peers'), 'add[0].staticKey', ['x25519:abc', null]],
  [SAMPLES.findIndex((m) => m.type === 'pair.peers'), 'remove[0]', ['agt_x', 7]],
  [SAMPLES.findIndex((m) => m.type === 'pair.peers'), 'remove', [undefined, Array.from({ length: 201 }, () => AGENT)]],
  // An agent both added and removed (or twice in one list) says two things at once.
  [SAMPLES.findIndex((m) => m.type === 'pair.peers'), 'add', [[{ agentId: AGENT, staticKey: STATIC, endpoint: null }]]],
]

t.test('rejects every field in its bad forms with PROTO_ERR_MESSAGE_FIELD naming the field', async (t) => {
  for (const [i, path, values] of BAD) {
    const sample = SAMPLES[i] as Message
    for (const v of values) {
      const w = wire(sample)
      setPath(w, path, v)
      const e = err(() => decodeMessage(bytesOf(w)))
      const shown = JSON.stringify(v)?.slice(0, 40)
      t.equal(e?.code, 'PROTO_ERR_MESSAGE_FIELD', `${sample.type} ${path} = ${shown}`)
      // The message names a field (this one or, for cross-field rules, a sibling) and never the value.
      t.match(e?.message ?? '', /: [a-zA-Z.[\]0-9{}()]+: /, 'names a field')
      if (typeof v === 'string' && v.length > 3) t.notOk(e?.message.includes(v), 'does not echo the value')
    }
  }
})

t.test('names the path of a nested bad field', async (t) => {
  const w = wire(SAMPLES[3] as Message)
  setPath(w, 'pair.peers[1].staticKey', 'x25519:nope')
  t.match(err(() => decodeMessage(bytesOf(w)))?.message, /pair\.peers\[1\]\.staticKey: /)
})

t.test('rejects unknown fields at every level', async (t) => {
  for (const path of ['extra', 'pair.extra', 'pair.versions[0].extra', 'pair.peers[0].extra', '__proto__', 'toString', 'pair.constructor']) {
    const w = wire(SAMPLES[3] as Message)
    if (path !== '__proto__') setPath(w, path, 1)
    const text = path === '__proto__' ? JSON.stringify(w).replace(/^\{/, '{"__proto__":1,') : JSON.stringify(w)
    const e = err(() => decodeMessage(Buffer.from(text)))
    t.equal(e?.code, 'PROTO_ERR_MESSAGE_FIELD', path)
    t.match(e?.message, /unknown field/)
  }
  const w = wire(SAMPLES[0] as Message)
  w['x'.repeat(100)] = 1
  t.match(err(() => decodeMessage(bytesOf(w)))?.message, /\?: unknown field/, 'a long unknown name is not echoed')
})

t.test('applies cross-field rules', async (t) => {
  const base = wire(SAMPLES[3] as Message) as { pair: { versions: { state: string; version: number }[] } }
  const twoCurrent = structuredClone(base)
  ;(twoCurrent.pair.versions[1] as { state: string }).state = 'current'
  t.match(err(() => decodeMessage(bytesOf(twoCurrent)))?.message, /pair\.versions: /)
  const noCurrent = structuredClone(base)
  ;(noCurrent.pair.versions[0] as { state: string }).state = 'previous'
  t.equal(err(() => decodeMessage(bytesOf(noCurrent)))?.code, 'PROTO_ERR_MESSAGE_FIELD')
  const dup = structuredClone(base)
  ;(dup.pair.versions[1] as { version: number }).version = 2
  t.equal(err(() => decodeMessage(bytesOf(dup)))?.code, 'PROTO_ERR_MESSAGE_FIELD')
  const many = structuredClone(base)
  many.pair.versions = Array.from({ length: MAX_PAIR_VERSIONS + 1 }, (_, i) => ({ ...(base.pair.versions[1] as object), version: i + 1, state: i === 0 ? 'current' : 'previous' }))
  t.equal(err(() => decodeMessage(bytesOf(many)))?.code, 'PROTO_ERR_MESSAGE_FIELD')
})

t.test('answers a hello of another protocol version with PROTO_ERR_VERSION', async (t) => {
  const w = wire(SAMPLES[0] as Message)
  for (const v of ['keymesh/2', '', 1]) {
    setPath(w, 'protocol', v)
    t.equal(err(() => decodeMessage(bytesOf(w)))?.code, 'PROTO_ERR_VERSION', String(v))
  }
  setPath(w, 'protocol', undefined)
  t.equal(err(() => decodeMessage(bytesOf(w)))?.code, 'PROTO_ERR_MESSAGE_FIELD', 'a missing protocol is a missing field')
})

t.test('rejects bad JSON, non-objects and unknown types', async (t) => {
  const malformed = ['', 'nul', '{', '[]', '"hello"', '1', 'null', '{"type":"hello"', '\u00ff']
  for (const s of malformed) t.equal(err(() => decodeMessage(Buffer.from(s)))?.code, 'PROTO_ERR_MESSAGE_MALFORMED', s)
  t.equal(err(() => decodeMessage(new Uint8Array([0x7b, 0xff, 0x7d])))?.code, 'PROTO_ERR_MESSAGE_MALFORMED', 'bad UTF-8')
  t.equal(err(() => decodeMessage('{}' as unknown as Uint8Array))?.code, 'PROTO_ERR_MESSAGE_MALFORMED')
  for (const type of [undefined, 'nope', 'toString', '__proto__', 5]) {
    t.equal(err(() => decodeMessage(bytesOf({ type })))?.code, 'PROTO_ERR_MESSAGE_TYPE', String(type))
  }
  t.equal(err(() => encodeMessage(null as unknown as Message))?.code, 'PROTO_ERR_MESSAGE_MALFORMED')
  t.equal(err(() => encodeMessage({ type: 'nope' } as unknown as Message))?.code, 'PROTO_ERR_MESSAGE_TYPE')
})

t.test('rejects deeply nested input without recursing into it', async (t) => {
  const depth = 30_000
  t.equal(err(() => decodeMessage(Buffer.from('['.repeat(depth) + ']'.repeat(depth))))?.code, 'PROTO_ERR_MESSAGE_MALFORMED')
  const nested = `{"type":"pair.update","pair":${'{"pair":'.repeat(7000)}1${'}'.repeat(7000)}}`
  t.equal(err(() => decodeMessage(Buffer.from(nested)))?.code, 'PROTO_ERR_MESSAGE_FIELD')
})

t.test('refuses to encode an invalid message', async (t) => {
  const m = { ...(SAMPLES[3] as object), pair: { ...pair, versions: [{ version: 1, key: new Uint8Array(31), state: 'current', notAfter: null }] } }
  t.equal(err(() => encodeMessage(m as Message))?.code, 'PROTO_ERR_MESSAGE_FIELD')
  const s = { ...(SAMPLES[9] as object), plaintext: 'not bytes' }
  t.equal(err(() => encodeMessage(s as unknown as Message))?.code, 'PROTO_ERR_MESSAGE_FIELD')
  t.equal(err(() => encodeMessage({ type: 'usage.ack', seq: 1, extra: 1 } as Message))?.code, 'PROTO_ERR_MESSAGE_FIELD')
})

t.test('rejects input over the size limit before parsing it', async (t) => {
  t.equal(err(() => decodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1)))?.code, 'PROTO_ERR_MESSAGE_TOO_LARGE')
  const small = encodeMessage(SAMPLES[8] as Message)
  t.equal(err(() => decodeMessage(small, { maxBytes: small.length - 1 }))?.code, 'PROTO_ERR_MESSAGE_TOO_LARGE')
  t.ok(decodeMessage(small, { maxBytes: small.length }))
  for (const maxBytes of [NaN, -1, 1.5]) {
    t.equal(err(() => decodeMessage(small, { maxBytes }))?.code, 'PROTO_ERR_INVALID_ARGUMENT', String(maxBytes))
  }
  t.equal(err(() => decodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1), { maxBytes: 10 ** 9 }))?.code, 'PROTO_ERR_MESSAGE_TOO_LARGE', 'maxBytes cannot raise the ceiling')
})

t.test('refuses to encode a message over 65,510 bytes', async (t) => {
  const long = (n: number): Message => ({ type: 'error', code: 'CP_ERR_X', message: '\u0001'.repeat(n) })
  t.equal(err(() => encodeMessage({ type: 'kms.request', id: 1, op: 'encrypt', key: 'k', plaintext: new Uint8Array(MAX_KMS_PLAINTEXT + 1) }))?.code, 'PROTO_ERR_MESSAGE_FIELD')
  t.ok(encodeMessage(long(512)).length < MAX_MESSAGE_BYTES)
  // Each field is within its bounds, but a plaintext and a ciphertext together are not.
  const both: Message = { type: 'kms.response', id: 1, ok: true, result: { plaintext: new Uint8Array(MAX_KMS_PLAINTEXT), ciphertext: 'c'.repeat(44_000) } }
  t.equal(err(() => encodeMessage(both))?.code, 'PROTO_ERR_MESSAGE_TOO_LARGE')
  // A message can only exceed the limit through many fields; build one from a huge usage batch's cousin.
  const batch = { type: 'usage.batch', seq: 1, events: [] as unknown[] }
  const huge = { ...batch, events: Array.from({ length: MAX_USAGE_EVENTS }, () => ({ kind: 'conn.open', at: 1, pairId: `${'a'.repeat(63)}:${'b'.repeat(63)}` })) }
  t.ok(encodeMessage(huge as Message).length <= MAX_MESSAGE_BYTES)
})

t.test('fits the largest legal pair entry in one record', async (t) => {
  const endpoint = `wss://${'h'.repeat(160 - 'wss://'.length)}`
  const largest: PairEntry = {
    pairId: `${'a'.repeat(63)}:${'b'.repeat(63)}`,
    peerService: 'b'.repeat(63),
    mayInitiate: true,
    mayAccept: true,
    versions: Array.from({ length: MAX_PAIR_VERSIONS }, (_, i) => ({ version: 4_294_967_295 - i, key: KEY, state: i === 0 ? 'current' as const : 'previous' as const, notAfter: 8_640_000_000_000_000 })),
    peers: Array.from({ length: MAX_PAIR_PEERS }, () => ({ agentId: AGENT, staticKey: STATIC, endpoint })),
  }
  const bytes = encodeMessage({ type: 'pair.update', pair: largest })
  t.ok(bytes.length <= MAX_MESSAGE_BYTES, `${bytes.length} bytes`)
  t.same(decodeMessage(bytes), { type: 'pair.update', pair: largest })
  const over = { ...largest, peers: [...largest.peers, largest.peers[0]] }
  t.equal(err(() => encodeMessage({ type: 'pair.update', pair: over as PairEntry }))?.code, 'PROTO_ERR_MESSAGE_FIELD')
})

t.test('fits the largest legal usage batch in one record', async (t) => {
  const event: UsageEvent = {
    kind: 'handshake.fail',
    at: 8_640_000_000_000_000,
    pairId: `${'a'.repeat(63)}:${'b'.repeat(63)}`,
    peerService: 'b'.repeat(63),
    peerAgent: AGENT,
    keyVersion: 4_294_967_295,
    bytesIn: Number.MAX_SAFE_INTEGER,
    bytesOut: Number.MAX_SAFE_INTEGER,
    durationMs: Number.MAX_SAFE_INTEGER,
    reason: `AGENT_ERR_${'X'.repeat(50)}`,
  }
  const loss: UsageLoss = {
    at: 8_640_000_000_000_000,
    lines: Number.MAX_SAFE_INTEGER,
    bytes: Number.MAX_SAFE_INTEGER,
    batches: Number.MAX_SAFE_INTEGER,
    seqs: Array(MAX_LOST_SEQS).fill(Number.MAX_SAFE_INTEGER),
  }
  const bytes = encodeMessage({ type: 'usage.batch', seq: Number.MAX_SAFE_INTEGER, events: Array(MAX_USAGE_EVENTS).fill(event), loss })
  t.ok(bytes.length <= MAX_MESSAGE_BYTES, `${bytes.length} bytes`)
})

t.test('a usage batch carries events, a loss report, or both, never neither', async (t) => {
  const loss: UsageLoss = { at: 1, lines: 2, bytes: 300, batches: 1, seqs: [7] }
  t.same(decodeMessage(encodeMessage({ type: 'usage.batch', seq: 9, events: [], loss })), { type: 'usage.batch', seq: 9, events: [], loss })
  t.equal(err(() => encodeMessage({ type: 'usage.batch', seq: 9, events: [] }))?.code, 'PROTO_ERR_MESSAGE_FIELD')
  t.equal(err(() => encodeMessage({ type: 'usage.batch', seq: 9, events: [], loss: { ...loss, seqs: Array(MAX_LOST_SEQS + 1).fill(1) } }))?.code, 'PROTO_ERR_MESSAGE_FIELD')
})

t.test('fits the largest legal KMS request in one record', async (t) => {
  const context = Object.fromEntries(Array.from({ length: MAX_CONTEXT_ENTRIES }, (_, i) => [`${i}`.padEnd(64, 'k'), '\u0001'.repeat(128)]))
  const m: Message = { type: 'kms.request', id: Number.MAX_SAFE_INTEGER, op: 'encrypt', key: 'k'.repeat(63), plaintext: new Uint8Array(MAX_KMS_PLAINTEXT), context }
  const bytes = encodeMessage(m)
  t.ok(bytes.length <= MAX_MESSAGE_BYTES, `${bytes.length} bytes`)
  t.same(decodeMessage(bytes), m)
  const dec: Message = { type: 'kms.request', id: 1, op: 'decrypt', ciphertext: 'c'.repeat(44_000), context }
  t.ok(encodeMessage(dec).length <= MAX_MESSAGE_BYTES)
})

t.test('lists the secret fields for log redaction', async (t) => {
  t.same([...SECRET_FIELD_PATHS].sort(), [
    'context',
    'items[*].context',
    'items[*].plaintext',
    'items[*].result.plaintext',
    'joinToken',
    'pair.versions[*].key',
    'plaintext',
    'result.plaintext',
  ])
  t.ok(Object.isFrozen(SECRET_FIELD_PATHS))
})

t.test('never echoes a secret in a field error', async (t) => {
  const token = 'super secret token with spaces'
  const e = err(() => decodeMessage(bytesOf({ type: 'hello', protocol: 'keymesh/1', service: 'web', agentVersion: '1', joinToken: token })))
  t.equal(e?.code, 'PROTO_ERR_MESSAGE_FIELD')
  t.notOk(e?.message.includes('secret'))
  const badKey = wire(SAMPLES[3] as Message)
  setPath(badKey, 'pair.versions[0].key', Buffer.alloc(31, 0xab).toString('base64'))
  t.notMatch(err(() => decodeMessage(bytesOf(badKey)))?.message, /q6ur/)
})

t.test('schema helpers cover nullable, optional and secret paths directly', async (t) => {
  t.equal(decodeValue(nullable(str(3)), null), null)
  t.equal(decodeValue(optional(str(3)), undefined), undefined)
  t.equal(decodeValue(optional(str(3)), 'abc'), 'abc')
  t.equal(encodeValue(str(3), 'abc'), 'abc')
  t.equal(err(() => decodeValue(str(3), 'abcd'))?.message.includes('(message)'), true)
  t.same(secretPaths(nullable(str(3, { secret: true })), 'x'), ['x'])
  t.equal(err(() => decodeValue(literal('a'), 'b'))?.code, 'PROTO_ERR_MESSAGE_FIELD')
})
