// Every Wycheproof case for the four primitives of the suite, through both
// providers. Each file's numberOfTests is checked against the cases actually
// run, so a case can never be skipped silently.
//
// Outcomes we require, by Wycheproof result and flag:
//   ChaCha20-Poly1305: valid -> seal gives ct||tag and open gives msg;
//     invalid with a 12-byte nonce (ModifiedTag) -> open throws PROTO_ERR_DECRYPT;
//     a nonce other than 12 bytes (InvalidNonceSize) or a key other than 32
//     bytes -> seal and open throw PROTO_ERR_INVALID_NONCE / PROTO_ERR_INVALID_KEY,
//     since our API supports only the RFC 8439 sizes.
//   X25519: valid -> exact shared secret; acceptable -> exact shared secret
//     (Twist, NonCanonicalPublic, SpecialPublicKey, SmallPublicKey,
//     EdgeCaseShared, ...) unless the expected secret is all-zero, which in this
//     file is exactly the ZeroSharedSecret flag (always with LowOrderPublic):
//     those must throw PROTO_ERR_LOW_ORDER_POINT, per RFC 7748 §6.1's check.
//   HMAC-SHA256: the first tagSize bits of our MAC must equal the tag for
//     valid cases and differ for invalid (ModifiedTag) ones.
//   HKDF-SHA256: valid -> exact okm; invalid (SizeTooLarge) -> PROTO_ERR_INVALID_ARGUMENT.
import t, { type Test } from 'tap'

import { nodeSuite, stablelibSuite, type CryptoSuite } from '../../../protocol/src/crypto/index.js'
import { hex, loadVectors, toHex } from '../../kit/vectors.js'
import { codeOf } from '../../kit/errors.js'

const PROVIDERS: readonly CryptoSuite[] = [nodeSuite, stablelibSuite]

interface Case {
  tcId: number
  comment: string
  flags: string[]
  result: 'valid' | 'invalid' | 'acceptable'
}
interface Group<C> {
  tests: C[]
  tagSize?: number
}
interface VectorFile<C> {
  numberOfTests: number
  testGroups: Group<C>[]
}

interface AeadCase extends Case { key: string; iv: string; aad: string; msg: string; ct: string; tag: string }
interface XdhCase extends Case { public: string; private: string; shared: string }
interface MacCase extends Case { key: string; msg: string; tag: string }
interface HkdfCase extends Case { ikm: string; salt: string; info: string; size: number; okm: string }


const label = (c: Case): string => `tcId ${c.tcId} (${c.result}${c.comment ? `: ${c.comment}` : ''})`

/**
 * Runs `check` on every case of `file` for every provider, tallying the
 * outcome names it returns, then checks the case count and prints the tally.
 */
function suiteOf<C extends Case>(
  name: string,
  file: string,
  check: (t: Test, suite: CryptoSuite, c: C, group: Group<C>) => string,
): void {
  const vectors = loadVectors<VectorFile<C>>(file)
  if ('skip' in vectors) {
    t.test(name, { skip: vectors.skip }, () => {})
    return
  }
  const { numberOfTests, testGroups } = vectors.data
  t.test(name, async (t) => {
    const tally = new Map<string, number>()
    let cases = 0
    for (const suite of PROVIDERS) {
      await t.test(`${suite.name} provider`, async (t) => {
        for (const group of testGroups) {
          for (const c of group.tests) {
            cases++
            const outcome = check(t, suite, c, group)
            tally.set(outcome, (tally.get(outcome) ?? 0) + 1)
          }
        }
      })
    }
    t.equal(cases, numberOfTests * PROVIDERS.length, `runs all ${numberOfTests} cases of ${file} on each provider`)
    const parts = [...tally].map(([outcome, n]) => `${n / PROVIDERS.length} ${outcome}`)
    t.comment(`${name}: ${numberOfTests} cases x ${PROVIDERS.length} providers: ${parts.join(', ')}`)
  })
}

suiteOf<AeadCase>('chacha20-poly1305', 'wycheproof/chacha20_poly1305_test.json', (t, suite, c) => {
  const key = hex(c.key)
  const nonce = hex(c.iv)
  const ad = hex(c.aad)
  const sealed = hex(c.ct + c.tag)
  const lengthError = key.length !== 32 ? 'PROTO_ERR_INVALID_KEY' : nonce.length !== 12 ? 'PROTO_ERR_INVALID_NONCE' : undefined
  if (lengthError) {
    t.equal(codeOf(() => suite.aeadSeal(key, nonce, hex(c.msg), ad)), lengthError, `seal rejects ${label(c)}`)
    t.equal(codeOf(() => suite.aeadOpen(key, nonce, sealed, ad)), lengthError, `open rejects ${label(c)}`)
    return `invalid rejected (${lengthError.replace('PROTO_ERR_', '')})`
  }
  if (c.result === 'valid') {
    t.equal(toHex(suite.aeadSeal(key, nonce, hex(c.msg), ad)), c.ct + c.tag, `seals ${label(c)}`)
    t.equal(toHex(suite.aeadOpen(key, nonce, sealed, ad)), c.msg, `opens ${label(c)}`)
    return 'valid matched'
  }
  t.equal(codeOf(() => suite.aeadOpen(key, nonce, sealed, ad)), 'PROTO_ERR_DECRYPT', `open rejects ${label(c)}`)
  return 'invalid rejected (DECRYPT)'
})

suiteOf<XdhCase>('x25519', 'wycheproof/x25519_test.json', (t, suite, c) => {
  const run = (): Uint8Array => suite.x25519(hex(c.private), hex(c.public))
  const zero = /^(00)+$/.test(c.shared)
  // Documents the mapping the header states: all-zero output <=> ZeroSharedSecret.
  t.equal(zero, c.flags.includes('ZeroSharedSecret'), `all-zero output is flagged ZeroSharedSecret in ${label(c)}`)
  if (c.result === 'invalid') {
    t.not(codeOf(run), 'no error', `rejects ${label(c)}`)
    return 'invalid rejected'
  }
  if (zero) {
    t.equal(codeOf(run), 'PROTO_ERR_LOW_ORDER_POINT', `rejects the all-zero secret of ${label(c)}`)
    return `${c.result} rejected (LOW_ORDER_POINT)`
  }
  t.equal(toHex(run()), c.shared, `agrees on ${label(c)}`)
  return `${c.result} matched`
})

suiteOf<MacCase>('hmac-sha256', 'wycheproof/hmac_sha256_test.json', (t, suite, c, group) => {
  // Truncated tags (tagSize < 256) are compared as a prefix of the full MAC.
  const tagBytes = (group.tagSize ?? 256) / 8
  const mac = toHex(suite.hmacSha256(hex(c.key), hex(c.msg)).subarray(0, tagBytes))
  if (c.result === 'valid') {
    t.equal(mac, c.tag, `computes ${label(c)}`)
    return 'valid matched'
  }
  t.not(mac, c.tag, `does not verify ${label(c)}`)
  return 'invalid rejected'
})

suiteOf<HkdfCase>('hkdf-sha256', 'wycheproof/hkdf_sha256_test.json', (t, suite, c) => {
  const run = (): Uint8Array => suite.hkdfSha256(hex(c.ikm), hex(c.salt), hex(c.info), c.size)
  if (c.result === 'valid') {
    t.equal(toHex(run()), c.okm, `derives ${label(c)}`)
    return 'valid matched'
  }
  t.equal(codeOf(run), 'PROTO_ERR_INVALID_ARGUMENT', `rejects ${label(c)}`)
  return 'invalid rejected'
})
