// Key-import wrapping: the x25519 drop construction with the material in one chunk,
// bound to its import id. Both providers write the same bytes and open each other's.
import t from 'tap'

import { createNodeSuite, createStablelibSuite, nodeSuite, stablelibSuite } from '../../protocol/src/crypto/index.js'
import { decodeDropHeader, MAX_KEY_IMPORT_WRAPPED, unwrapKeyImport, wrapKeyImport } from '../../protocol/src/index.js'
import { codeOf } from '../kit/errors.js'
import { seededRandom } from '../kit/seeded-random.js'
import { toHex } from '../kit/vectors.js'

const ID = 'import-0123456789abcdef0123456789abcdef'
const MATERIAL = new Uint8Array(32).map((_, i) => i + 1)
const recipient = nodeSuite.x25519FromSecret(new Uint8Array(32).fill(3))

t.test('a wrapped key opens with the wrapping secret and names its import', async (t) => {
  const wrapped = wrapKeyImport(nodeSuite, { importId: ID, publicKey: recipient.publicKey, material: MATERIAL })
  t.ok(wrapped.length < MAX_KEY_IMPORT_WRAPPED)
  t.match(decodeDropHeader(wrapped)?.header, { mode: 'x25519', recipient: 'control-plane', key: ID, keyVersion: 1, sender: '' })
  t.notOk(Buffer.from(wrapped).includes(Buffer.from(MATERIAL)), 'the material is not in the blob')
  t.equal(toHex(unwrapKeyImport(stablelibSuite, { importId: ID, secretKey: recipient.secretKey, wrapped })), toHex(MATERIAL))
})

t.test('both providers write identical blobs', async (t) => {
  const a = wrapKeyImport(createNodeSuite({ random: seededRandom('import') }), { importId: ID, publicKey: recipient.publicKey, material: MATERIAL })
  const b = wrapKeyImport(createStablelibSuite({ random: seededRandom('import') }), { importId: ID, publicKey: recipient.publicKey, material: MATERIAL })
  t.equal(toHex(b), toHex(a))
})

t.test('refuses another import id, another secret, an edited blob, and sizes out of bounds', async (t) => {
  const wrapped = wrapKeyImport(nodeSuite, { importId: ID, publicKey: recipient.publicKey, material: MATERIAL })
  const open = (over: Partial<Parameters<typeof unwrapKeyImport>[1]>) => () =>
    unwrapKeyImport(nodeSuite, { importId: ID, secretKey: recipient.secretKey, wrapped, ...over })
  t.equal(codeOf(open({ importId: 'import-ffffffffffffffffffffffffffffffff' })), 'PROTO_ERR_DROP_FORMAT')
  t.equal(codeOf(open({ secretKey: new Uint8Array(32).fill(4) })), 'PROTO_ERR_DECRYPT')
  const edited = new Uint8Array(wrapped)
  edited[edited.length - 1] = (edited[edited.length - 1] as number) ^ 1
  t.equal(codeOf(open({ wrapped: edited })), 'PROTO_ERR_DECRYPT')
  t.equal(codeOf(open({ wrapped: wrapped.subarray(0, 10) })), 'PROTO_ERR_DROP_FORMAT', 'a cut header')
  t.equal(codeOf(open({ wrapped: new Uint8Array(MAX_KEY_IMPORT_WRAPPED + 1) })), 'PROTO_ERR_DROP_FORMAT')
  t.equal(codeOf(() => wrapKeyImport(nodeSuite, { importId: ID, publicKey: recipient.publicKey, material: new Uint8Array(65) })), 'PROTO_ERR_INVALID_KEY')
  t.equal(codeOf(() => wrapKeyImport(nodeSuite, { importId: ID, publicKey: recipient.publicKey, material: new Uint8Array(0) })), 'PROTO_ERR_INVALID_KEY')
})
