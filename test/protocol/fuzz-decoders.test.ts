// Bounded fuzzing of every decoder in this part of protocol/: the record layer's
// open, the control-message decoder and the name parsers. Random and mutated inputs
// from a fixed-seed PRNG (printed; set KEYMESH_FUZZ_SEED to replay another run).
// The only outcomes allowed are a correct decode or a KeymeshError with a
// PROTO_ERR_ code: any other exception fails the test. Each target runs a fixed
// number of inputs, never a time budget, so a run covers the same inputs on a
// fast machine and a busy one (KEYMESH_FUZZ_ITERATIONS multiplies the counts for
// a longer run); a hang shows up as a tap timeout.
//
// None of these formats has a length field (records take their length from the
// WebSocket message, messages are JSON, names are text), so no input can make a
// decoder allocate more than a small multiple of its own size.
import t, { type Test } from 'tap'

import { nodeSuite } from '../../protocol/src/crypto/node-provider.js'
import { isKeymeshError } from '../../protocol/src/errors.js'
import { decodeMessage, encodeMessage, type Message } from '../../protocol/src/messages/index.js'
import {
  formatKeyRef,
  formatPublicKey,
  newAgentId,
  parseKeyRef,
  parsePairId,
  parsePublicKey,
  validateAgentId,
  validateEndpointUrl,
  validateKeyName,
  validateServiceName,
} from '../../protocol/src/names.js'
import { CipherState } from '../../protocol/src/noise/cipher-state.js'
import { RecordSession } from '../../protocol/src/record.js'

const SEED = Number(process.env.KEYMESH_FUZZ_SEED ?? 0x6b6d5a01) >>> 0
const SCALE = Number(process.env.KEYMESH_FUZZ_ITERATIONS ?? 1)
if (!(SCALE > 0)) throw new Error('KEYMESH_FUZZ_ITERATIONS must be a positive number (a multiple of the default input counts)')
/** Inputs per target: a target takes about a second on a busy 2-core machine. */
const INPUTS = Math.round(10_000 * SCALE)

/** mulberry32: small, fast, and good enough to drive a fuzzer reproducibly. */
function prng(seed: number) {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 0x1_0000_0000
  }
  const int = (n: number): number => Math.floor(next() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T
  const bytes = (n: number): Uint8Array => {
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = int(256)
    return b
  }
  return { next, int, pick, bytes }
}
type Rng = ReturnType<typeof prng>

/** Runs `one` on INPUTS inputs; reports how they ended. */
function fuzz(t: Test, name: string, seed: number, one: (rng: Rng) => 'ok' | 'rejected'): void {
  const rng = prng(seed)
  const outcomes: Record<string, number> = {}
  let n = 0
  for (; n < INPUTS; n++) {
    let outcome: string
    try {
      outcome = one(rng)
    } catch (e) {
      if (isKeymeshError(e) && e.code.startsWith('PROTO_ERR_')) {
        outcome = e.code
      } else {
        t.fail(`${name}: input ${n} threw something other than a PROTO_ERR_ (seed ${seed})`, { error: e })
        return
      }
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
  }
  t.comment(`${name}: ${n} inputs, ${JSON.stringify(outcomes)}`)
  t.pass(`${name}: only correct decodes and PROTO_ERR_ codes in ${n} inputs`)
}

function mutate(rng: Rng, input: Uint8Array): Uint8Array {
  const b = Buffer.from(input)
  switch (rng.int(6)) {
    case 0: {
      const i = rng.int(b.length || 1)
      if (b.length) b[i] = (b[i] as number) ^ (1 << rng.int(8))
      return b
    }
    case 1: {
      for (let k = rng.int(8) + 1; k > 0 && b.length; k--) b[rng.int(b.length)] = rng.int(256)
      return b
    }
    case 2:
      return b.subarray(0, rng.int(b.length + 1))
    case 3:
      return Buffer.concat([b, rng.bytes(rng.int(40) + 1)])
    case 4: {
      const i = rng.int(b.length + 1)
      return Buffer.concat([b.subarray(0, i), rng.bytes(rng.int(8) + 1), b.subarray(i + rng.int(8))])
    }
    default:
      return rng.bytes(rng.int(300))
  }
}

t.comment(`fuzz seed ${SEED} (KEYMESH_FUZZ_SEED=${SEED} replays it), ${INPUTS} inputs per target`)

t.test('record open accepts only genuine records and fails every other input with a PROTO_ERR_', async (t) => {
  const ab = new Uint8Array(32).fill(1)
  const ba = new Uint8Array(32).fill(2)
  const sender = new RecordSession({ send: new CipherState(nodeSuite, ab), recv: new CipherState(nodeSuite, ba) })
  const valid = [sender.seal(new TextEncoder().encode('the first record')), sender.seal(new Uint8Array(0))]
  const genuine = new Set(valid.map((v) => Buffer.from(v).toString('hex')))
  fuzz(t, 'RecordSession.open', SEED, (rng) => {
    const receiver = new RecordSession({ send: new CipherState(nodeSuite, ba), recv: new CipherState(nodeSuite, ab), maxRecordBytes: rng.pick([65_535, 200]) })
    if (rng.int(4) === 0) receiver.open(valid[0] as Uint8Array) // sometimes one record in
    const input = rng.int(50) === 0 ? rng.bytes(65_536 + rng.int(10)) : mutate(rng, rng.pick(valid))
    const r = receiver.open(input)
    if (!genuine.has(Buffer.from(input).toString('hex'))) throw new Error('a forged record was accepted')
    t.equal(r.type, 'data')
    return 'ok'
  })
})

const SAMPLES: Message[] = [
  { type: 'hello', protocol: 'keymesh/1', service: 'web', joinToken: 'jtk_0123456789abcdef', agentVersion: '0.1.0', endpoint: 'wss://web-1:7443' },
  { type: 'welcome', agentId: newAgentId(() => new Uint8Array(16).fill(4)), service: 'web', serverTime: 1 },
  {
    type: 'keyset.pair',
    pair: {
      pairId: 'api:web',
      peerService: 'api',
      mayInitiate: true,
      mayAccept: false,
      versions: [{ version: 1, key: new Uint8Array(32).fill(5), state: 'current', notAfter: null }],
      peers: [{ agentId: newAgentId(() => new Uint8Array(16).fill(6)), staticKey: formatPublicKey(new Uint8Array(32).fill(7)), endpoint: null }],
    },
  },
  { type: 'usage.batch', seq: 3, events: [{ kind: 'conn.close', at: 5, bytesIn: 1, reason: 'PROTO_ERR_DECRYPT' }] },
  { type: 'kms.request', id: 9, op: 'encrypt', key: 'k', plaintext: new Uint8Array([1]), context: { a: 'b' } },
  { type: 'kms.response', id: 9, ok: false, error: { code: 'CP_ERR_X', message: 'no' } },
  { type: 'error', code: 'PROTO_ERR_VERSION', message: 'old' },
]

function randomJson(rng: Rng, depth: number): unknown {
  switch (rng.int(depth > 3 ? 6 : 8)) {
    case 0:
      return null
    case 1:
      return rng.next() < 0.5
    case 2:
      return rng.pick([0, -1, 1, 1.5, 2 ** 53, 1e308, 65_535, 4_294_967_296])
    case 3:
      return rng.pick(['', 'a', 'api:web', 'keymesh/1', 'AAAA', '__proto__', 'x'.repeat(rng.int(300)), '\u0000', '\ud800'])
    case 4:
      return Buffer.from(rng.bytes(rng.int(40))).toString('base64')
    case 5:
      return rng.pick(['current', 'conn.open', 'encrypt', 'wss://h:1', 'CP_ERR_X'])
    case 6:
      return Array.from({ length: rng.int(4) }, () => randomJson(rng, depth + 1))
    default:
      return Object.fromEntries(Array.from({ length: rng.int(4) }, () => [rng.pick(['type', 'pair', 'key', 'id', 'x', 'seq']), randomJson(rng, depth + 1)]))
  }
}

/** Replaces, deletes or adds one node somewhere in a JSON value. */
function mutateJson(rng: Rng, v: unknown, depth = 0): unknown {
  if (Array.isArray(v)) {
    if (v.length === 0 || rng.int(4) === 0) return [...v, randomJson(rng, depth)]
    const i = rng.int(v.length)
    const out = [...v]
    out[i] = rng.int(3) === 0 ? randomJson(rng, depth) : mutateJson(rng, v[i], depth + 1)
    return out
  }
  if (typeof v === 'object' && v !== null) {
    const o = { ...(v as Record<string, unknown>) }
    const keys = Object.keys(o)
    const op = rng.int(5)
    if (op === 0 || keys.length === 0) o[rng.pick(['x', 'type', 'version', ...keys])] = randomJson(rng, depth)
    else if (op === 1) delete o[rng.pick(keys)]
    else {
      const k = rng.pick(keys)
      o[k] = rng.int(3) === 0 ? randomJson(rng, depth) : mutateJson(rng, o[k], depth + 1)
    }
    return o
  }
  return randomJson(rng, depth)
}

t.test('decodeMessage returns a valid message or a PROTO_ERR_ for every input', async (t) => {
  const encoded = SAMPLES.map((m) => encodeMessage(m))
  fuzz(t, 'decodeMessage', SEED + 1, (rng) => {
    let input: Uint8Array
    const mode = rng.int(10)
    if (mode < 5) {
      input = Buffer.from(JSON.stringify(mutateJson(rng, JSON.parse(Buffer.from(rng.pick(encoded)).toString()))))
    } else if (mode < 8) {
      input = mutate(rng, rng.pick(encoded))
    } else if (mode < 9) {
      input = Buffer.from(JSON.stringify(randomJson(rng, 0)) ?? '')
    } else {
      input = rng.bytes(rng.int(200))
    }
    const m = decodeMessage(input)
    // Anything accepted must be valid through and through: it re-encodes and decodes to itself.
    t.same(decodeMessage(encodeMessage(m)), m)
    return 'ok'
  })
})

t.test('name parsers accept only canonical names and fail everything else with a PROTO_ERR_', async (t) => {
  const key = formatPublicKey(new Uint8Array(32).fill(0x42))
  const seeds: [string, (s: string) => string][] = [
    ['billing-v2', (s) => validateServiceName(s)],
    ['orders.v1_a-b', (s) => validateKeyName(s)],
    ['orders:12', (s) => formatKeyRef(parseKeyRef(s))],
    ['api:web', (s) => {
      const { lo, hi } = parsePairId(s)
      return `${lo}:${hi}`
    }],
    [newAgentId(() => new Uint8Array(16).fill(9)), (s) => validateAgentId(s)],
    [key, (s) => formatPublicKey(parsePublicKey(s))],
    ['wss://agent-1.example.com:8443/tunnel', (s) => validateEndpointUrl(s)],
  ]
  const alphabet = 'abcxyz0129-_.:/@#%?AZ+= \u00e9\u0000x25519wss'
  fuzz(t, 'names', SEED + 2, (rng) => {
    const [seed, parse] = rng.pick(seeds)
    let s: string
    if (rng.int(3) === 0) {
      s = Array.from({ length: rng.int(80) }, () => rng.pick([...alphabet])).join('')
    } else {
      const chars = [...seed]
      for (let k = rng.int(3) + 1; k > 0; k--) {
        const i = rng.int(chars.length + 1)
        const op = rng.int(3)
        if (op === 0) chars.splice(i, 1)
        else if (op === 1) chars.splice(i, 0, rng.pick([...alphabet]))
        else chars[i] = rng.pick([...alphabet])
      }
      s = chars.join('')
    }
    // Accepted input must round-trip to exactly itself: one spelling per value.
    const back = parse(s)
    if (back !== s) throw new Error(`a name parser accepted a non-canonical spelling (seed ${SEED + 2})`)
    return 'ok'
  })
})
