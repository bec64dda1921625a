// Differential fuzz of the binary KMS frame against the JSON path, end to end:
// two agents of one service on one control plane, one speaking JSON (no
// features), one with 'kms.frame' agreed, send the same seeded random batches
// (good items, unknown and forbidden keys, tampered, malformed and foreign
// ciphertexts, empty and large plaintexts, now and then an item with a context
// that sends its whole batch as JSON). Both must get the same replies (the same
// plaintexts back, the same error codes and messages; encrypt results the same
// key and version, and each ciphertext opening to its plaintext), and leave the
// same audit lines, their agent aside.
import t from 'tap'

import { encodeKmsBatchFrame, planKmsBatches, type KmsBatchItem, type KmsItemReply } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { createKey } from '../../kit/kms.js'
import { prng } from '../../kit/seeded-random.js'

const BATCHES = 40
const SECRET = 'FUZZ-SECRET-PLAINTEXT'

async function agent(h: TestControlPlane, t: { teardown(fn: () => unknown): void }, features?: string[]): Promise<FakeAgent> {
  const token = (await h.api('POST', '/v1/join-tokens', { service: 'app' })).body.token
  const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service: 'app', joinToken: token, ...(features ? { features } : {}) })
  t.teardown(() => void a.close().catch(() => {}))
  await a.welcome()
  await a.keyset()
  return a
}

/** The KMS audit lines of one agent's batch items, in order, without the agent. */
async function auditOf(h: TestControlPlane, agentId: string): Promise<unknown[]> {
  const out: unknown[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) {
    if (!e.action.startsWith('kms.') || !String(e.actor).includes(agentId)) continue
    const d = e.details as { columns: string[]; calls: unknown[][] }
    if (!d.columns.includes('batchId')) continue
    for (const call of d.calls) out.push({ action: e.action, target: e.target, outcome: e.outcome, ...Object.fromEntries(d.columns.map((c, i) => [c, call[i]])) })
  }
  return out
}

const shape = (r: KmsItemReply): unknown => (r.ok
  ? { ok: true, key: r.result?.key, version: r.result?.version, valid: r.result?.valid, plaintext: r.result?.plaintext === undefined ? undefined : Buffer.from(r.result.plaintext).toString('hex'), hasCiphertext: r.result?.ciphertext !== undefined }
  : { ok: false, error: r.error })

t.test('binary frames and JSON give the same replies and the same audit lines (seeded, 40 random batches)', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  await createKey(h, 'j', 'aead', { app: ['encrypt', 'decrypt'] })
  await createKey(h, 'locked', 'aead', { someone: ['encrypt', 'decrypt'] })
  await createKey(h, 'signer', 'ed25519', { app: ['sign'] })
  const json = await agent(h, t)
  const bin = await agent(h, t, ['kms.frame'])
  t.same(json.agreed, [], 'an agent that names no features speaks JSON')
  t.same(bin.agreed, ['kms.frame'], 'the control plane offers kms.frame and agrees to it')

  const rnd = prng(18)
  const int = (n: number): number => Math.floor(rnd() * n)
  const plain = (): Uint8Array => {
    const n = [0, 1, 100, 1024, 4000, 32 * 1024][int(6)] as number
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = int(256)
    if (n >= SECRET.length) b.write(SECRET, 0)
    return new Uint8Array(b)
  }
  // Ciphertexts to decrypt, sealed beforehand (by the JSON agent: either may open them).
  const known: { ciphertext: string; plaintext: Uint8Array }[] = []
  for (let i = 0; i < 8; i++) {
    const p = plain()
    const r = await json.request({ op: 'encrypt', key: i % 2 === 0 ? 'k' : 'j', plaintext: p })
    known.push({ ciphertext: r.result?.ciphertext as string, plaintext: p })
  }
  // A ciphertext naming a key the service may not open (its header forged: refused before any opening).
  const lockedCt = known[0]?.ciphertext.replace('km1:k:', 'km1:locked:') as string

  let ids = 1000
  let framed = 0
  const seenCodes = new Set<string>()
  for (let b = 0; b < BATCHES; b++) {
    const n = 1 + int(b % 8 === 0 ? 120 : 25)
    const items: (Omit<KmsBatchItem, 'id'> & { id: number })[] = []
    for (let i = 0; i < n; i++) {
      const id = ids++
      const c = known[int(known.length)] as { ciphertext: string; plaintext: Uint8Array }
      switch (int(12)) {
        case 0: items.push({ id, op: 'encrypt', key: 'nope', plaintext: plain() }); break
        case 1: items.push({ id, op: 'encrypt', key: 'locked', plaintext: plain() }); break
        case 2: items.push({ id, op: 'decrypt', ciphertext: c.ciphertext.slice(0, -2) + (c.ciphertext.endsWith('AA') ? 'AB' : 'AA') }); break
        case 3: items.push({ id, op: 'decrypt', ciphertext: 'km1:k:1:!!' }); break
        case 4: items.push({ id, op: 'decrypt', ciphertext: lockedCt }); break
        case 5: items.push({ id, op: 'decrypt', ciphertext: c.ciphertext, key: 'j' }); break
        case 6: items.push({ id, op: 'sign', key: 'signer', plaintext: plain() }); break
        case 7: items.push({ id, op: 'encrypt', key: 'signer', plaintext: plain() }); break
        case 8: items.push({ id, op: 'decrypt', ciphertext: c.ciphertext }); break
        case 9:
          // A context: the whole batch keeps to JSON on the binary agent too.
          if (rnd() < 0.3) items.push({ id, op: 'encrypt', key: 'k', plaintext: plain(), context: { tenant: 't' } })
          else items.push({ id, op: 'encrypt', key: 'j', plaintext: plain() })
          break
        default: items.push({ id, op: 'encrypt', key: 'k', plaintext: plain() })
      }
    }
    // Split to records as the agent's multiplexer does; each group is one kms.batch on both paths.
    const viaJson = { items: [] as KmsItemReply[] }
    const viaFrame = { items: [] as KmsItemReply[] }
    for (const group of planKmsBatches(items)) {
      const batchId = ids++
      const copy = (): typeof items => group.map((i) => ({ ...i, ...(i.plaintext ? { plaintext: new Uint8Array(i.plaintext) } : {}) }))
      const sent = bin.framesSent
      viaJson.items.push(...(await json.requestBatch(copy(), { id: batchId })).items)
      viaFrame.items.push(...(await bin.requestBatch(copy(), { id: batchId })).items)
      if (bin.framesSent > sent) framed++
    }
    t.equal(viaFrame.items.length, items.length)
    const a = viaJson.items.map(shape)
    const f = viaFrame.items.map(shape)
    if (!t.same(f, a, `batch ${b}: the same replies`)) break
    for (const r of viaJson.items) seenCodes.add(r.ok ? 'ok' : (r.error?.code as string))
    // The encrypt results: each ciphertext opens to its own plaintext, through the other path.
    const opens: { id: number; ciphertext: string; plaintext: Uint8Array }[] = []
    items.forEach((item, i) => {
      if (item.op !== 'encrypt' || item.context !== undefined) return
      for (const reply of [viaJson.items[i], viaFrame.items[i]]) {
        if (reply?.ok && reply.result?.ciphertext !== undefined) opens.push({ id: ids++, ciphertext: reply.result.ciphertext, plaintext: item.plaintext as Uint8Array })
      }
    })
    const decrypts = opens.map((o) => ({ id: o.id, op: 'decrypt' as const, ciphertext: o.ciphertext }))
    let at = 0
    for (const group of planKmsBatches(decrypts)) {
      const batchId = ids++
      const opened = await bin.requestBatch(group, { id: batchId })
      const same = opened.items.every((r, i) => r.ok && Buffer.from(r.result?.plaintext ?? []).equals(Buffer.from((opens[at + i] as { plaintext: Uint8Array }).plaintext)))
      t.ok(same, `batch ${b}: every encrypt of either path opens to its plaintext`)
      at += group.length
      // The JSON agent opens the same, so the audit lines stay paired.
      await json.requestBatch(group, { id: batchId })
    }
  }
  t.ok(framed >= BATCHES / 2, `most batches went as frames (${framed} of ${BATCHES})`)
  for (const code of ['ok', 'CP_ERR_KEY_NOT_FOUND', 'CP_ERR_FORBIDDEN', 'CP_ERR_DECRYPT', 'PROTO_ERR_CIPHERTEXT_FORMAT', 'CP_ERR_KEY_TYPE']) {
    t.ok(seenCodes.has(code), `the fuzz met ${code}`)
  }

  const linesJson = await auditOf(h, json.agentId as string)
  const linesBin = await auditOf(h, bin.agentId as string)
  t.ok(linesJson.length > BATCHES * 5, `audit lines were written (${linesJson.length})`)
  t.same(linesBin, linesJson, 'the same audit lines, call for call')
  t.equal(json.ws.readyState, json.ws.OPEN)
  t.equal(bin.ws.readyState, bin.ws.OPEN, 'no session failed')
  t.notOk(h.logs.some((l) => l.includes(SECRET)), 'no plaintext in the logs')
})

t.test('an agent that sends a frame without the feature agreed is refused, as for any bytes that are not a message', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt'] })
  const json = await agent(h, t)
  const frame = encodeKmsBatchFrame({ type: 'kms.batch', id: 1, items: [{ id: 2, op: 'encrypt', key: 'k', plaintext: new Uint8Array(3) }] }) as Uint8Array
  json.channel.sendEncoded(frame, true)
  const closed = await json.closed
  t.equal(closed.reason, 'PROTO_ERR_MESSAGE_MALFORMED')
})

t.test('a malformed frame from an agent that agreed fails its session with PROTO_ERR_KMS_FRAME', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt'] })
  const bin = await agent(h, t, ['kms.frame'])
  const frame = encodeKmsBatchFrame({ type: 'kms.batch', id: 1, items: [{ id: 2, op: 'encrypt', key: 'k', plaintext: new Uint8Array(3) }] }) as Uint8Array
  bin.channel.sendEncoded(frame.subarray(0, frame.length - 1), false)
  const closed = await bin.closed
  t.equal(closed.code, 4870)
  t.equal(closed.reason, 'PROTO_ERR_KMS_FRAME')
})
