import t from 'tap'
import { startTestControlPlane } from '../kit/cp.js'

import {
  auditSignerFromSeed,
  checkpointJson,
  checkpointSignedBy,
  formatAuditPublicKey,
  parseAuditPublicKey,
  parseCheckpoint,
  signCheckpoint,
} from '../../control-plane/src/audit-checkpoint.js'

const signer = auditSignerFromSeed(new Uint8Array(32).fill(3))
const head = { seq: 42, hash: new Uint8Array(32).fill(0xab) }
const AT = Date.UTC(2026, 0, 1)

t.test('a checkpoint exported as JSON reads back and verifies with the public key alone', async (t) => {
  const c = signCheckpoint(signer, head, AT)
  t.equal(c.signature.length, 64)
  const json = checkpointJson(c, signer.publicKey)
  t.match(json, { format: 'keymesh-audit-checkpoint-v1', seq: 42, hash: 'ab'.repeat(32), at: AT, time: '2026-01-01T00:00:00.000Z', signer: /^ed25519:/ })
  t.same(parseCheckpoint(JSON.stringify(json), parseAuditPublicKey(`${String(json['signer'])}\n`)), c)
  t.equal(formatAuditPublicKey(parseAuditPublicKey(formatAuditPublicKey(signer.publicKey))), formatAuditPublicKey(signer.publicKey))
})

t.test('the signature covers seq, time and hash, and only the trusted key verifies it', async (t) => {
  const c = signCheckpoint(signer, head, AT)
  t.equal(checkpointSignedBy(signer.publicKey, c), true)
  for (const forged of [{ ...c, seq: 43 }, { ...c, at: AT + 1 }, { ...c, hash: new Uint8Array(32) }]) t.equal(checkpointSignedBy(signer.publicKey, forged), false)
  t.equal(checkpointSignedBy(auditSignerFromSeed(new Uint8Array(32).fill(4)).publicKey, c), false, 'another key')
  t.equal(checkpointSignedBy(new Uint8Array(31), c), false)
  t.equal(checkpointSignedBy(signer.publicKey, { ...c, signature: c.signature.subarray(1) }), false)
  t.equal(checkpointSignedBy(signer.publicKey, { ...c, seq: 0 }), false)
  t.equal(checkpointSignedBy(new Uint8Array(32).fill(0xff), c), false, 'not a point: no throw')
})

t.test('malformed checkpoints, public keys and seeds are refused with their codes', async (t) => {
  const good = checkpointJson(signCheckpoint(signer, head, AT), signer.publicKey)
  const bad: [string, RegExp][] = [
    ['{', /not JSON/],
    ['null', /format/],
    [JSON.stringify({ ...good, format: 'other' }), /format/],
    [JSON.stringify({ ...good, seq: 0 }), /seq/],
    [JSON.stringify({ ...good, at: 1.5 }), /at must/],
    [JSON.stringify({ ...good, hash: 'AB'.repeat(32) }), /hash/],
    [JSON.stringify({ ...good, signature: 'x' }), /signature must/],
    [JSON.stringify({ ...good, seq: 41 }), /does not verify/],
  ]
  for (const [text, message] of bad) t.throws(() => parseCheckpoint(text, signer.publicKey), { code: 'CP_ERR_AUDIT_CHECKPOINT', message }, text.slice(0, 40))
  for (const text of ['', 'x25519:' + 'A'.repeat(43), 'ed25519:' + 'A'.repeat(42) + 'B', 'ed25519:' + 'A'.repeat(44)]) {
    t.throws(() => parseAuditPublicKey(text), { code: 'CP_ERR_AUDIT_KEY' }, text)
  }
  t.throws(() => auditSignerFromSeed(new Uint8Array(31)), { code: 'CP_ERR_AUDIT_KEY' })
})

t.test('a forged checkpoint row is neither exported nor allowed to stop new checkpoints', async (t) => {
  const h = await startTestControlPlane(t)
  const { ctx } = h.cp
  const genuine = await ctx.audit.latestCheckpoint(ctx.store)
  t.ok(genuine, 'the first start signed one')
  const forger = auditSignerFromSeed(new Uint8Array(32).fill(9))
  await ctx.store.transaction((tx) => tx.insertAuditCheckpoint(signCheckpoint(forger, { seq: 1_000_000, hash: new Uint8Array(32) }, h.clock.now() + 365 * 24 * 3600_000)))
  t.same(await ctx.audit.latestCheckpoint(ctx.store), genuine, 'the newest row whose signature holds')
  t.equal((await h.api('POST', '/v1/keys', { name: 'after', type: 'aead' })).status, 201)
  h.clock.advance(2 * 3600_000)
  const next = await ctx.audit.checkpointIfDue(ctx.store, 3600_000)
  t.ok(next && next.seq > (genuine?.seq ?? 0), 'a new checkpoint is still signed when due')
})
