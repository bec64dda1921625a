// The two providers are interchangeable: identical bytes for identical inputs,
// the same typed errors for bad ones, and getSuite picks between them.
import t from 'tap'

import {
  createNodeSuite,
  createStablelibSuite,
  getSuite,
  nodeSuite,
  stablelibSuite,
  type CryptoSuite,
  type SuiteName,
} from '../../../protocol/src/crypto/index.js'
import { isKeymeshError } from '../../../protocol/src/errors.js'
import { toHex } from '../../kit/vectors.js'
import { codeOf } from '../../kit/errors.js'
import { seededRandom } from '../../kit/seeded-random.js'

const PROVIDERS: readonly CryptoSuite[] = [nodeSuite, stablelibSuite]
const LENGTHS = [0, 1, 63, 64, 65, 1024, 64 * 1024]


const flipped = (bytes: Uint8Array, i: number): Uint8Array => {
  const copy = new Uint8Array(bytes)
  copy[i] = (copy[i] as number) ^ 0x01
  return copy
}

const [node, stablelib] = [nodeSuite, stablelibSuite]
const rnd = seededRandom('providers.test')

t.test('both providers seal to identical bytes and open each other\'s output, at every length', async (t) => {
  for (const n of LENGTHS) {
    const key = rnd(32)
    const nonce = rnd(12)
    const plaintext = rnd(n)
    const ad = rnd(n % 100)
    const sealed = node.aeadSeal(key, nonce, plaintext, ad)
    t.equal(sealed.length, n + 16, `${n}-byte plaintext grows by the tag`)
    t.equal(toHex(stablelib.aeadSeal(key, nonce, plaintext, ad)), toHex(sealed), `${n}-byte seal matches`)
    t.equal(toHex(stablelib.aeadOpen(key, nonce, sealed, ad)), toHex(plaintext), `stablelib opens node's ${n} bytes`)
    t.equal(toHex(node.aeadOpen(key, nonce, sealed, ad)), toHex(plaintext), `node opens its own ${n} bytes`)
  }
})

t.test('a plaintext sealed in parts is sealed as their concatenation, by both providers', async (t) => {
  const key = rnd(32)
  const nonce = rnd(12)
  const ad = rnd(9)
  const whole = rnd(65_510)
  const expected = toHex(node.aeadSeal(key, nonce, whole, ad))
  for (const suite of PROVIDERS) {
    for (const cuts of [[26], [0, 65_484], [1, 2, 3, 65_000]]) {
      const parts: Uint8Array[] = []
      let at = 0
      for (const c of cuts) {
        parts.push(whole.subarray(at, at + c))
        at += c
      }
      parts.push(whole.subarray(at))
      const out = new Uint8Array(3 + whole.length + 16)
      suite.aeadSealInto(key, nonce, parts, ad, out, 3)
      t.equal(toHex(out.subarray(3)), expected, `${suite.name}, cut at ${cuts.join(', ')}`)
    }
    t.equal(codeOf(() => suite.aeadSealInto(key, nonce, [whole, rnd(1)], ad, new Uint8Array(whole.length + 16), 0)), 'PROTO_ERR_INVALID_ARGUMENT', `${suite.name}: the parts' total must fit`)
  }
})

t.test('an omitted AD is the same as an empty AD in both providers', async (t) => {
  const key = rnd(32)
  const nonce = rnd(12)
  const plaintext = rnd(65)
  const expected = toHex(node.aeadSeal(key, nonce, plaintext, new Uint8Array(0)))
  for (const suite of PROVIDERS) {
    const sealed = suite.aeadSeal(key, nonce, plaintext)
    t.equal(toHex(sealed), expected, `${suite.name} seals without AD`)
    t.equal(toHex(suite.aeadOpen(key, nonce, sealed)), toHex(plaintext), `${suite.name} opens without AD`)
  }
})

t.test('both providers derive identical X25519 public keys and shared secrets from random secrets', async (t) => {
  for (let i = 0; i < 16; i++) {
    const a = rnd(32)
    const b = rnd(32)
    const pubA = node.x25519FromSecret(a).publicKey
    const pubB = node.x25519FromSecret(b).publicKey
    t.equal(toHex(stablelib.x25519FromSecret(a).publicKey), toHex(pubA), `public key ${i}`)
    const shared = toHex(node.x25519(a, pubB))
    t.equal(toHex(stablelib.x25519(a, pubB)), shared, `shared secret ${i}`)
    t.equal(toHex(stablelib.x25519(b, pubA)), shared, `shared secret ${i} from the other side`)
  }
})

t.test('both providers hash, MAC and derive identically', async (t) => {
  for (const n of LENGTHS) {
    const data = rnd(n)
    const key = rnd(n % 97)
    const info = rnd(7)
    const length = 1 + (n % 8160)
    t.equal(toHex(stablelib.sha256(data, data)), toHex(node.sha256(data, data)), `sha256 of 2 x ${n} bytes`)
    t.equal(toHex(stablelib.hmacSha256(key, data)), toHex(node.hmacSha256(key, data)), `hmac of ${n} bytes`)
    t.equal(
      toHex(stablelib.hkdfSha256(data, key, info, length)),
      toHex(node.hkdfSha256(data, key, info, length)),
      `hkdf of ${n} bytes`,
    )
  }
})

t.test('an injected random source makes x25519Generate deterministic and equal across providers', async (t) => {
  const fromNode = createNodeSuite({ random: seededRandom('generate') }).x25519Generate()
  const fromStablelib = createStablelibSuite({ random: seededRandom('generate') }).x25519Generate()
  const expectedSecret = seededRandom('generate')(32)
  t.equal(toHex(fromNode.secretKey), toHex(expectedSecret), 'node takes the secret from the source')
  t.equal(toHex(fromStablelib.secretKey), toHex(expectedSecret), 'stablelib takes the secret from the source')
  t.equal(toHex(fromStablelib.publicKey), toHex(fromNode.publicKey), 'the public keys match')
  t.equal(toHex(fromNode.publicKey), toHex(nodeSuite.x25519FromSecret(expectedSecret).publicKey), 'and belong to the secret')
  const suite = createStablelibSuite({ random: seededRandom('bytes') })
  t.equal(toHex(suite.randomBytes(40)), toHex(seededRandom('bytes')(40)), 'randomBytes is the injected source')
})

t.test('the default random source gives fresh, consistent key pairs', async (t) => {
  for (const suite of PROVIDERS) {
    const one = suite.x25519Generate()
    const two = suite.x25519Generate()
    t.equal(one.secretKey.length, 32, `${suite.name} secret is 32 bytes`)
    t.not(toHex(one.secretKey), toHex(two.secretKey), `${suite.name} draws a new secret each time`)
    for (const other of PROVIDERS) {
      t.equal(toHex(other.x25519FromSecret(one.secretKey).publicKey), toHex(one.publicKey), `${other.name} agrees on ${suite.name}'s public key`)
    }
    t.equal(suite.randomBytes(33).length, 33, `${suite.name} randomBytes gives n bytes`)
    t.equal(suite.randomBytes(0).length, 0, `${suite.name} randomBytes gives 0 bytes`)
  }
})

t.test('x25519FromSecret copies the secret, so wiping the caller\'s buffer leaves the pair intact', async (t) => {
  for (const suite of PROVIDERS) {
    const secret = rnd(32)
    const expected = toHex(secret)
    const pair = suite.x25519FromSecret(secret)
    secret.fill(0)
    t.equal(toHex(pair.secretKey), expected, suite.name)
  }
})

t.test('x25519Generate copies from an injected source, so a fixed source that reuses one array survives a wipe', async (t) => {
  for (const create of [createNodeSuite, createStablelibSuite]) {
    const fixed = rnd(32)
    const expected = toHex(fixed)
    const suite = create({ random: () => fixed })
    suite.x25519Generate().secretKey.fill(0)
    t.equal(toHex(fixed), expected, suite.name)
    t.equal(toHex(suite.x25519Generate().secretKey), expected, `${suite.name} still generates from it`)
  }
})

for (const suite of PROVIDERS) {
  t.test(`the ${suite.name} provider`, async (t) => {
    const key = rnd(32)
    const nonce = rnd(12)
    const ad = rnd(20)
    const plaintext = rnd(40)
    const sealed = suite.aeadSeal(key, nonce, plaintext, ad)

    t.test('rejects keys and nonces of the wrong length with typed errors', async (t) => {
      for (const n of [0, 16, 31, 33, 64]) {
        const bad = rnd(n)
        t.equal(codeOf(() => suite.aeadSeal(bad, nonce, plaintext)), 'PROTO_ERR_INVALID_KEY', `seal with a ${n}-byte key`)
        t.equal(codeOf(() => suite.aeadOpen(bad, nonce, sealed)), 'PROTO_ERR_INVALID_KEY', `open with a ${n}-byte key`)
        t.equal(codeOf(() => suite.x25519FromSecret(bad)), 'PROTO_ERR_INVALID_KEY', `X25519 secret of ${n} bytes`)
        t.equal(codeOf(() => suite.x25519(bad, key)), 'PROTO_ERR_INVALID_KEY', `X25519 with a ${n}-byte secret`)
        t.equal(codeOf(() => suite.x25519(key, bad)), 'PROTO_ERR_INVALID_KEY', `X25519 with a ${n}-byte public key`)
      }
      for (const n of [0, 8, 11, 13, 16, 24]) {
        const bad = rnd(n)
        t.equal(codeOf(() => suite.aeadSeal(key, bad, plaintext)), 'PROTO_ERR_INVALID_NONCE', `seal with a ${n}-byte nonce`)
        t.equal(codeOf(() => suite.aeadOpen(key, bad, sealed)), 'PROTO_ERR_INVALID_NONCE', `open with a ${n}-byte nonce`)
      }
      const notBytes = Array.from(key) as unknown as Uint8Array
      t.equal(codeOf(() => suite.aeadSeal(notBytes, nonce, plaintext)), 'PROTO_ERR_INVALID_KEY', 'a key that is not a Uint8Array')
      const notNonce = Array.from(nonce) as unknown as Uint8Array
      t.equal(codeOf(() => suite.aeadSeal(key, notNonce, plaintext)), 'PROTO_ERR_INVALID_NONCE', 'a nonce that is not a Uint8Array')
    })

    t.test('keeps key bytes out of error messages', async (t) => {
      const bad = rnd(31)
      for (const fn of [() => suite.x25519FromSecret(bad), () => suite.aeadSeal(bad, nonce, plaintext)]) {
        try {
          fn()
          t.fail('should throw')
        } catch (e) {
          t.notMatch(String(e), toHex(bad).slice(0, 16))
        }
      }
    })

    t.test('rejects a tampered byte anywhere in ciphertext, tag or AD', async (t) => {
      let rejected = 0
      for (let i = 0; i < sealed.length; i++) {
        if (codeOf(() => suite.aeadOpen(key, nonce, flipped(sealed, i), ad)) === 'PROTO_ERR_DECRYPT') rejected++
      }
      t.equal(rejected, sealed.length, `all ${sealed.length} ciphertext and tag bytes`)
      rejected = 0
      for (let i = 0; i < ad.length; i++) {
        if (codeOf(() => suite.aeadOpen(key, nonce, sealed, flipped(ad, i))) === 'PROTO_ERR_DECRYPT') rejected++
      }
      t.equal(rejected, ad.length, `all ${ad.length} AD bytes`)
    })

    t.test('rejects the wrong key, nonce or AD, and a truncated or extended message', async (t) => {
      const cases: Array<[string, () => unknown]> = [
        ['another key', () => suite.aeadOpen(flipped(key, 0), nonce, sealed, ad)],
        ['another nonce', () => suite.aeadOpen(key, flipped(nonce, 11), sealed, ad)],
        ['missing AD', () => suite.aeadOpen(key, nonce, sealed)],
        ['one byte short', () => suite.aeadOpen(key, nonce, sealed.subarray(0, sealed.length - 1), ad)],
        ['one byte extra', () => suite.aeadOpen(key, nonce, Buffer.concat([sealed, new Uint8Array(1)]), ad)],
        ['shorter than a tag', () => suite.aeadOpen(key, nonce, sealed.subarray(0, 15), ad)],
        ['empty', () => suite.aeadOpen(key, nonce, new Uint8Array(0), ad)],
      ]
      for (const [what, fn] of cases) t.equal(codeOf(fn), 'PROTO_ERR_DECRYPT', what)
    })

    t.test('rejects low-order public keys by their all-zero shared secret', async (t) => {
      const p = (lowByte: number, highByte: number): Uint8Array => {
        const u = new Uint8Array(32).fill(0xff)
        u[0] = lowByte
        u[31] = highByte
        return u
      }
      const lowOrder: Array<[string, Uint8Array]> = [
        ['u = 0', new Uint8Array(32)],
        ['u = 1', Uint8Array.of(1, ...new Uint8Array(31))],
        ['u = p - 1', p(0xec, 0x7f)],
        ['u = p (non-canonical 0)', p(0xed, 0x7f)],
        ['u = p + 1 with the top bit set', p(0xee, 0xff)],
      ]
      for (const [what, u] of lowOrder) t.equal(codeOf(() => suite.x25519(key, u)), 'PROTO_ERR_LOW_ORDER_POINT', what)
    })

    t.test('rejects HKDF output lengths outside 1..8160', async (t) => {
      for (const n of [0, -1, 1.5, 8161, Number.NaN]) {
        t.equal(codeOf(() => suite.hkdfSha256(key, nonce, ad, n)), 'PROTO_ERR_INVALID_ARGUMENT', `length ${n}`)
      }
    })
  })
}

t.test('getSuite returns the shared instance of each provider', async (t) => {
  t.equal(getSuite('node'), nodeSuite)
  t.equal(getSuite('stablelib'), stablelibSuite)
  t.equal(getSuite('node').name, 'node')
  t.equal(getSuite('stablelib').name, 'stablelib')
})

t.test('getSuite rejects an unknown name without echoing it', async (t) => {
  for (const name of ['openssl', 'toString', '__proto__', '']) {
    try {
      getSuite(name as SuiteName)
      t.fail(`accepted ${JSON.stringify(name)}`)
    } catch (e) {
      t.ok(isKeymeshError(e, 'PROTO_ERR_INVALID_ARGUMENT'), `rejects ${JSON.stringify(name)}`)
      if (name) t.notMatch(String(e), name)
    }
  }
})

t.test('the node provider rejects an all-zero secret even from an OpenSSL that returns one', async (t) => {
  // OpenSSL 3 refuses to derive an all-zero X25519 secret (the catch path above);
  // the provider checks the output too, so a library that returned zeros
  // instead of failing would still be caught. An injected diffieHellman drives that path.
  const suite = createNodeSuite({ diffieHellman: () => Buffer.alloc(32) })
  const { publicKey } = suite.x25519FromSecret(rnd(32))
  t.equal(codeOf(() => suite.x25519(rnd(32), publicKey)), 'PROTO_ERR_LOW_ORDER_POINT')
})

t.test('the node provider never answers from a stale cached key after the secret array is rewritten', async (t) => {
  const peer = nodeSuite.x25519Generate()
  const mine = nodeSuite.x25519Generate()
  const other = nodeSuite.x25519Generate()
  const first = nodeSuite.x25519(mine.secretKey, peer.publicKey)
  t.same(nodeSuite.x25519(mine.secretKey, peer.publicKey), first, 'the cached key gives the same answer')
  // Rewrite the same array in place with another secret: the answer must follow the bytes.
  mine.secretKey.set(other.secretKey)
  t.same(nodeSuite.x25519(mine.secretKey, peer.publicKey), nodeSuite.x25519(other.secretKey, peer.publicKey))
  t.same(nodeSuite.x25519(mine.secretKey, peer.publicKey), stablelibSuite.x25519(other.secretKey, peer.publicKey))
  const pair = nodeSuite.x25519FromSecret(other.secretKey)
  t.same(pair.publicKey, other.publicKey, 'x25519FromSecret derives the public key from d, not the JWK placeholder')
  t.same(nodeSuite.x25519(pair.secretKey, peer.publicKey), nodeSuite.x25519(other.secretKey, peer.publicKey))
})
