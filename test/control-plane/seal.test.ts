import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import { createNodeSuite, nodeSuite } from '../../protocol/src/index.js'
import { SEAL_OVERHEAD, SEAL_VERSION, createSealer, seal, sealIdentity, unseal } from '../../control-plane/src/seal.js'
import { openSqliteStore } from '../../control-plane/src/store/index.js'
import { aeadKey, keyVersion } from './store/fixtures.js'

const master = new Uint8Array(32).fill(7)
const otherMaster = new Uint8Array(32).fill(8)
const material = new Uint8Array(32).map((_, i) => 0xa0 + i)
const id = sealIdentity.keyVersion('orders', 3)

t.test('record identities are spelt one way', async (t) => {
  t.equal(sealIdentity.keyVersion('orders', 3), 'key-version:orders:3')
  t.equal(sealIdentity.meta('cp-identity'), 'meta:cp-identity')
})

t.test('sealed material opens with the same master key and identity', async (t) => {
  const sealed = seal(master, id, material)
  t.equal(sealed.length, material.length + SEAL_OVERHEAD)
  t.equal(sealed[0], SEAL_VERSION, 'starts with the format version')
  t.same(unseal(master, id, sealed), material)
  const s = createSealer(master)
  t.same(s.unseal(id, s.seal(id, material)), material, 'a long-lived sealer agrees with the one-shot functions')
  t.same(s.unseal(id, sealed), material)
})

t.test('sealing uses a fresh nonce from the injected random source', async (t) => {
  let calls = 0
  const suite = createNodeSuite({ random: (n) => new Uint8Array(n).fill(++calls) })
  const a = seal(master, id, material, suite)
  const b = seal(master, id, material, suite)
  t.same(a.subarray(1, 13), new Uint8Array(12).fill(1))
  t.same(b.subarray(1, 13), new Uint8Array(12).fill(2))
  t.not(Buffer.from(a).toString('hex'), Buffer.from(b).toString('hex'), 'the same plaintext seals differently each time')
  t.same(unseal(master, id, a, nodeSuite), material)
})

t.test('a wrong master key fails with CP_ERR_UNSEAL', async (t) => {
  t.throws(() => unseal(otherMaster, id, seal(master, id, material)), { code: 'CP_ERR_UNSEAL', cause: { code: 'PROTO_ERR_DECRYPT' } })
})

t.test('a record moved to another identity fails with CP_ERR_UNSEAL', async (t) => {
  const sealed = seal(master, id, material)
  t.throws(() => unseal(master, sealIdentity.keyVersion('orders', 4), sealed), { code: 'CP_ERR_UNSEAL', message: /key-version:orders:4/ })
  t.throws(() => unseal(master, sealIdentity.keyVersion('payments', 3), sealed), { code: 'CP_ERR_UNSEAL' })
  t.throws(() => unseal(master, sealIdentity.meta('cp-identity'), sealed), { code: 'CP_ERR_UNSEAL' })
})

t.test('every single flipped byte fails with CP_ERR_UNSEAL, and no error shows the bytes', async (t) => {
  const sealed = seal(master, id, material)
  const materialHex = Buffer.from(material).toString('hex')
  let failures = 0
  for (let i = 0; i < sealed.length; i++) {
    const bad = new Uint8Array(sealed)
    bad[i] = (bad[i] as number) ^ 0x01
    try {
      unseal(master, id, bad)
    } catch (e) {
      const err = e as Error & { code: string }
      if (err.code === 'CP_ERR_UNSEAL' && !JSON.stringify({ m: err.message, d: String(err.cause) }).includes(materialHex)) failures++
    }
  }
  t.equal(failures, sealed.length)
})

t.test('truncated input and an unknown format version fail with CP_ERR_UNSEAL', async (t) => {
  const sealed = seal(master, id, material)
  t.throws(() => unseal(master, id, sealed.subarray(0, SEAL_OVERHEAD - 1)), { code: 'CP_ERR_UNSEAL', message: /too short/ })
  const v2 = new Uint8Array(sealed)
  v2[0] = 2
  t.throws(() => unseal(master, id, v2), { code: 'CP_ERR_UNSEAL', message: /version/ })
})

t.test('a master key of the wrong length is refused before any sealing', async (t) => {
  t.throws(() => createSealer(new Uint8Array(31)), { code: 'CP_ERR_MASTER_KEY' })
  t.throws(() => createSealer('x'.repeat(32) as unknown as Uint8Array), { code: 'CP_ERR_MASTER_KEY' })
})

t.test('a wiped sealer is unusable', async (t) => {
  const s = createSealer(master)
  const sealed = s.seal(id, material)
  s.wipe()
  t.throws(() => s.seal(id, material), { code: 'CP_ERR_MASTER_KEY', message: /wiped/ })
  t.throws(() => s.unseal(id, sealed), { code: 'CP_ERR_MASTER_KEY' })
})

t.test('a copied database holds no plaintext key bytes', async (t) => {
  const dir = t.testdir()
  const store = await openSqliteStore({ dir })
  const sealer = createSealer(master)
  const secrets = [1, 2, 3].map((v) => new Uint8Array(32).map((_, i) => (v * 37 + i * 11) & 0xff))
  await store.transaction(async (tx) => {
    await tx.insertKey(aeadKey('orders', { primaryVersion: 3 }))
    for (const [i, secret] of secrets.entries()) {
      const version = i + 1
      await tx.insertKeyVersion(keyVersion('orders', version, { sealedMaterial: sealer.seal(sealIdentity.keyVersion('orders', version), secret) }))
    }
  })
  await store.close()
  const file = Buffer.concat([readFileSync(join(dir, 'keymesh.db'))])
  for (const secret of secrets) {
    t.equal(file.indexOf(Buffer.from(secret)), -1, 'the key bytes are not in the file')
    t.equal(file.indexOf(Buffer.from(secret.subarray(0, 8))), -1, 'nor any 8-byte run of them')
  }
  const copy = await openSqliteStore({ dir, readOnly: true })
  const v1 = await copy.read((tx) => tx.getKeyVersion('orders', 1))
  t.throws(() => unseal(otherMaster, sealIdentity.keyVersion('orders', 1), v1!.sealedMaterial!), { code: 'CP_ERR_UNSEAL' },
    'without the master key the copy opens nothing')
  t.same(unseal(master, sealIdentity.keyVersion('orders', 1), v1!.sealedMaterial!), secrets[0], 'with it, everything')
  await copy.close()
})
