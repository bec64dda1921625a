// Bring your own key through the admin API: import-params hands out a one-time
// wrapping key, import unwraps, stores a version marked imported and deletes the
// wrapping key. The imported key works through the KMS; replays, expired params,
// wrong lengths, other names and edited blobs are refused; the material never
// reaches the audit log or the logs.
import t from 'tap'

import { openMaterial } from '../../../control-plane/src/services/material.js'
import { nodeSuite, parsePublicKey, wrapKeyImport } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { DAY } from '../../kit/fake-clock.js'
import { bytes, kmsAgent, text } from '../../kit/kms.js'

const MATERIAL = new Uint8Array(32).map((_, i) => 0xa0 + i)

async function params(h: TestControlPlane, name: string): Promise<{ importId: string; publicKey: string; expiresAt: number }> {
  const r = await h.api('POST', `/v1/keys/${name}/import-params`, { type: 'aead' })
  if (r.status !== 201) throw new Error(`import-params: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

const wrap = (p: { importId: string; publicKey: string }, material = MATERIAL): string =>
  Buffer.from(wrapKeyImport(nodeSuite, { importId: p.importId, publicKey: new Uint8Array(parsePublicKey(p.publicKey)), material })).toString('base64')

const send = (h: TestControlPlane, name: string, importId: string, wrapped: string) =>
  h.api('POST', `/v1/keys/${name}/import`, { type: 'aead', importId, wrapped })

t.test('an imported key encrypts and decrypts through the KMS and is marked imported', async (t) => {
  const h = await startTestControlPlane(t)
  const p = await params(h, 'byok')
  t.match(p, { importId: /^import-[0-9a-f]{32}$/, name: 'byok', type: 'aead', publicKey: /^x25519:/, expiresAt: h.clock.now() + DAY })
  const wrapped = wrap(p)
  const imported = await send(h, 'byok', p.importId, wrapped)
  t.equal(imported.status, 200, JSON.stringify(imported.body))
  t.match(imported.body, { name: 'byok', type: 'aead', primaryVersion: 1, rotationPeriodMs: null, versions: [{ version: 1, state: 'enabled', origin: 'imported' }] })
  const v1 = await h.cp.ctx.store.read((r) => r.getKeyVersion('byok', 1))
  t.equal(Buffer.from(openMaterial(h.cp.ctx, v1!)).toString('hex'), Buffer.from(MATERIAL).toString('hex'), 'the material is what was wrapped')

  t.equal((await h.api('POST', '/v1/keys/byok/grants', { service: 'app', rights: ['encrypt', 'decrypt'] })).status, 200)
  const app = await kmsAgent(h, t, 'app')
  const sealed = await app.request({ op: 'encrypt', key: 'byok', plaintext: bytes('imported row') })
  t.match(sealed.result?.ciphertext, /^km1:byok:1:/)
  t.equal(text((await app.request({ op: 'decrypt', ciphertext: sealed.result?.ciphertext as string })).result?.plaintext as Uint8Array), 'imported row')

  const replay = await send(h, 'byok', p.importId, wrapped)
  t.equal(replay.status, 400)
  t.equal(replay.body.error.code, 'CP_ERR_KEY_IMPORT')
  t.match(replay.body.error.message, /unknown or already used import id/, 'a blob is accepted once')

  // A second import into the same key is its next version, made primary; rotation stays off.
  const p2 = await params(h, 'byok')
  const second = await send(h, 'byok', p2.importId, wrap(p2, new Uint8Array(32).fill(1)))
  t.match(second.body, { primaryVersion: 2, versions: [{ version: 1, origin: 'imported' }, { version: 2, origin: 'imported' }] })
  t.match((await h.api('GET', '/v1/keys/byok')).body.versions[1], { origin: 'imported' }, 'key show says so')

  const hex = Buffer.from(MATERIAL).toString('hex')
  const b64 = Buffer.from(MATERIAL).toString('base64')
  let audit = ''
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) audit += JSON.stringify(e)
  t.match(audit, /"action":"key.import"/)
  t.notOk(audit.includes(hex) || audit.includes(b64), 'no material in the audit log')
  const logs = h.logs.join('')
  t.notOk(logs.includes(hex) || logs.includes(b64), 'nor in the logs')
})

t.test('refused: expired params, wrong length, another key name, an edited blob, a generated key of another type', async (t) => {
  const h = await startTestControlPlane(t)
  const expired = await params(h, 'k')
  h.clock.advance(DAY)
  const late = await send(h, 'k', expired.importId, wrap(expired))
  t.equal(late.body.error.code, 'CP_ERR_KEY_IMPORT')
  t.match(late.body.error.message, /expired/)

  const p = await params(h, 'k')
  const short = await send(h, 'k', p.importId, wrap(p, new Uint8Array(31).fill(2)))
  t.equal(short.body.error.code, 'CP_ERR_KEY_IMPORT')
  t.match(short.body.error.message, /must be 32 bytes, not 31/)
  t.equal((await send(h, 'other', p.importId, wrap(p))).body.error.code, 'CP_ERR_KEY_IMPORT', 'params are bound to their key name')
  const edited = Buffer.from(wrap(p), 'base64')
  edited.writeUInt8(edited.readUInt8(edited.length - 1) ^ 1, edited.length - 1)
  t.match((await send(h, 'k', p.importId, edited.toString('base64'))).body.error, { code: 'CP_ERR_KEY_IMPORT', message: /does not open/ })
  t.equal((await send(h, 'k', 'import-x', wrap(p))).body.error.code, 'CP_ERR_KEY_IMPORT', 'a malformed import id')
  t.equal((await send(h, 'k', p.importId, wrap(p))).status, 200, 'refusals left the params usable')
  const refusals = await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'key.import', outcome: 'error' })
  t.equal(refusals.length, 5, 'each refusal is audited')

  t.equal((await h.api('POST', '/v1/keys', { name: 'agree', type: 'x25519' })).status, 201)
  t.equal((await h.api('POST', '/v1/keys/agree/import-params', { type: 'aead' })).body.error.code, 'CP_ERR_KEY_TYPE')
  t.equal((await h.api('POST', '/v1/keys/new/import-params', { type: 'x25519' })).body.error.code, 'CP_ERR_KEY_TYPE', 'only aead keys are imported')
  t.equal((await h.api('POST', '/v1/keys/BAD!/import-params', { type: 'aead' })).body.error.code, 'CP_ERR_KEY_NAME')
})
