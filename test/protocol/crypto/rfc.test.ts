// The worked examples from the RFCs the suite implements, typed in from the
// RFC text (not from the Wycheproof files) so the two sources check each other.
import t from 'tap'

import { nodeSuite, stablelibSuite, type CryptoSuite } from '../../../protocol/src/crypto/index.js'
import { hex, toHex } from '../../kit/vectors.js'

const PROVIDERS: readonly CryptoSuite[] = [nodeSuite, stablelibSuite]

// RFC 8439 §2.8.2, "Example and Test Vector for AEAD_CHACHA20_POLY1305".
const AEAD = {
  key: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
  nonce: '070000004041424344454647', // 32-bit constant 07000000 || IV 4041424344454647
  ad: '50515253c0c1c2c3c4c5c6c7',
  plaintext:
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  ciphertext:
    'd31a8d34648e60db7b86afbc53ef7ec2' +
    'a4aded51296e08fea9e2b5a736ee62d6' +
    '3dbea45e8ca9671282fafb69da92728b' +
    '1a71de0a9e060b2905d6a5b67ecd3b36' +
    '92ddbd7f2d778b8c9803aee328091b58' +
    'fab324e4fad675945585808b4831d7bc' +
    '3ff4def08e4b7a9de576d26586cec64b' +
    '6116',
  tag: '1ae10b594f09e26a7e902ecbd0600691',
}

// RFC 7748 §5.2, the two single-step X25519 test vectors. The second
// u-coordinate has its top bit set (last byte 0x93), which X25519 must ignore.
const SCALAR_MULT = [
  {
    scalar: 'a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4',
    u: 'e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c',
    out: 'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
  },
  {
    scalar: '4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d',
    u: 'e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493',
    out: '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957',
  },
]

// RFC 7748 §6.1, the Curve25519 Diffie-Hellman example.
const ALICE = {
  secret: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  public: '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
}
const BOB = {
  secret: '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb',
  public: 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
}
const SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'

for (const suite of PROVIDERS) {
  t.test(`the ${suite.name} provider`, async (t) => {
    t.test('seals the RFC 8439 §2.8.2 AEAD example to its ciphertext and tag', async (t) => {
      const sealed = suite.aeadSeal(hex(AEAD.key), hex(AEAD.nonce), Buffer.from(AEAD.plaintext), hex(AEAD.ad))
      t.equal(toHex(sealed), AEAD.ciphertext + AEAD.tag)
    })

    t.test('opens the RFC 8439 §2.8.2 AEAD example to its plaintext', async (t) => {
      const opened = suite.aeadOpen(hex(AEAD.key), hex(AEAD.nonce), hex(AEAD.ciphertext + AEAD.tag), hex(AEAD.ad))
      t.equal(Buffer.from(opened).toString('utf8'), AEAD.plaintext)
    })

    t.test('computes both RFC 7748 §5.2 scalar multiplications', async (t) => {
      for (const [i, v] of SCALAR_MULT.entries()) {
        t.equal(toHex(suite.x25519(hex(v.scalar), hex(v.u))), v.out, `vector ${i + 1}`)
      }
    })

    t.test('derives the RFC 7748 §6.1 public keys of Alice and Bob', async (t) => {
      t.equal(toHex(suite.x25519FromSecret(hex(ALICE.secret)).publicKey), ALICE.public)
      t.equal(toHex(suite.x25519FromSecret(hex(BOB.secret)).publicKey), BOB.public)
    })

    t.test('agrees on the RFC 7748 §6.1 shared secret from either side', async (t) => {
      t.equal(toHex(suite.x25519(hex(ALICE.secret), hex(BOB.public))), SHARED, 'Alice computes K')
      t.equal(toHex(suite.x25519(hex(BOB.secret), hex(ALICE.public))), SHARED, 'Bob computes K')
    })
  })
}
