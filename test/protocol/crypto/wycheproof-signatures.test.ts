// Wycheproof's Ed25519 and ECDSA P-256 (SHA-256, IEEE P1363) verification cases,
// through both providers, from the copies under test/vectors/wycheproof (C2SP/wycheproof
// testvectors_v1 at dac1dd4729fd1f8dd9e1e9f3dce51d783da6c166, Apache-2.0: LICENSE
// beside them). The stablelib provider delegates both to node:crypto (signing.ts),
// so the two runs check that the delegation is wired, not a second implementation.
//
// Outcomes required: valid -> verify true; invalid -> verify false, never a throw
// (no case in either file is `acceptable`; one would fail the count below).
// Wycheproof's Ed25519 file has no secret keys, so signing is checked against
// RFC 8032 §7.1 and ECDSA signing by round trips and the RFC 6979 A.2.5 public key.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import { isP256Secret, nodeSuite, spkiDer, stablelibSuite, type CryptoSuite } from '../../../protocol/src/crypto/index.js'
import { codeOf } from '../../kit/errors.js'
import { repoRoot } from '../../kit/paths.js'
import { hex, toHex } from '../../kit/vectors.js'

const PROVIDERS: readonly CryptoSuite[] = [nodeSuite, stablelibSuite]

interface Case { tcId: number; comment: string; msg: string; sig: string; result: string }
interface Group { publicKey: { pk?: string; uncompressed?: string }; tests: Case[] }
interface VectorFile { numberOfTests: number; testGroups: Group[] }

const load = (file: string): VectorFile => JSON.parse(readFileSync(join(repoRoot(), 'test', 'vectors', 'wycheproof', file), 'utf8')) as VectorFile

function run(name: string, file: string, pub: (g: Group) => string, verify: (s: CryptoSuite) => CryptoSuite['ed25519Verify']): void {
  t.test(name, async (t) => {
    const { numberOfTests, testGroups } = load(file)
    for (const suite of PROVIDERS) {
      let cases = 0
      const wrong: number[] = []
      for (const g of testGroups) {
        for (const c of g.tests) {
          cases++
          const valid = verify(suite)(hex(pub(g)), hex(c.msg), hex(c.sig))
          if (valid !== (c.result === 'valid') || (c.result !== 'valid' && c.result !== 'invalid')) wrong.push(c.tcId)
        }
      }
      t.equal(cases, numberOfTests, `${suite.name}: runs all ${numberOfTests} cases of ${file}`)
      t.same(wrong, [], `${suite.name}: every case has its Wycheproof outcome`)
    }
  })
}

run('ed25519', 'ed25519_test.json', (g) => g.publicKey.pk as string, (s) => s.ed25519Verify)
run('ecdsa p-256 sha-256 p1363', 'ecdsa_secp256r1_sha256_p1363_test.json', (g) => g.publicKey.uncompressed as string, (s) => s.p256Verify)

t.test('ed25519 signs as RFC 8032 §7.1 says, on both providers', async (t) => {
  const vectors = [
    {
      seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
      pk: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
      msg: '',
      sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    },
    {
      seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
      pk: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
      msg: '72',
      sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    },
  ]
  for (const suite of PROVIDERS) {
    for (const v of vectors) {
      t.equal(toHex(suite.ed25519Public(hex(v.seed))), v.pk, `${suite.name}: public key`)
      t.equal(toHex(suite.ed25519Sign(hex(v.seed), hex(v.msg))), v.sig, `${suite.name}: signature`)
    }
    const first = vectors[0] as (typeof vectors)[number]
    suite.signingForget(hex(first.seed))
    suite.signingForget(new Uint8Array(3))
    t.equal(toHex(suite.ed25519Sign(hex(first.seed), hex(first.msg))), first.sig, `${suite.name}: the same signature once its key is forgotten and imported again`)
    t.equal(codeOf(() => suite.ed25519Sign(new Uint8Array(31), new Uint8Array(0))), 'PROTO_ERR_INVALID_KEY', `${suite.name}: a seed of 31 bytes`)
    t.equal(suite.ed25519Verify(new Uint8Array(31), new Uint8Array(0), new Uint8Array(64)), false, `${suite.name}: a short public key verifies nothing`)
  }
})

t.test('ecdsa p-256: RFC 6979 A.2.5 public key, signatures r || s that verify, bad secrets refused', async (t) => {
  const d = hex('c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721')
  const point = '04' + '60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6' + '7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299'
  const n = 'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551'
  const message = new TextEncoder().encode('sample')
  for (const suite of PROVIDERS) {
    t.equal(toHex(suite.p256Public(d)), point, `${suite.name}: public point`)
    const sig = suite.p256Sign(d, message)
    t.equal(sig.length, 64, `${suite.name}: 64-byte P1363 signature`)
    t.ok(suite.p256Verify(hex(point), message, sig), `${suite.name}: it verifies`)
    const flipped = new Uint8Array(sig)
    flipped[63] = (flipped[63] as number) ^ 1
    t.notOk(suite.p256Verify(hex(point), message, flipped), `${suite.name}: a flipped bit does not`)
    t.notOk(suite.p256Verify(hex(point), new TextEncoder().encode('samplf'), sig), `${suite.name}: nor another message`)
    t.notOk(suite.p256Verify(hex('05' + point.slice(2)), message, sig), `${suite.name}: a malformed point verifies nothing`)
    for (const bad of ['00'.repeat(32), n, 'ff'.repeat(32)]) {
      t.equal(codeOf(() => suite.p256Sign(hex(bad), message)), 'PROTO_ERR_INVALID_KEY', `${suite.name}: secret ${bad.slice(0, 8)}… refused`)
    }
  }
  t.ok(isP256Secret(hex(n.slice(0, -2) + '50')), 'n - 1 is a secret')
  t.notOk(isP256Secret(new Uint8Array(31)), '31 bytes are not')
  t.equal(toHex(spkiDer('p256', hex(point))), `3059301306072a8648ce3d020106082a8648ce3d030107034200${point}`, 'SPKI of P-256 (RFC 5480)')
  t.equal(toHex(spkiDer('ed25519', new Uint8Array(32))), `302a300506032b6570032100${'00'.repeat(32)}`, 'SPKI of Ed25519 (RFC 8410)')
})
