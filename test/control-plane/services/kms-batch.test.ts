// KMS batches over the agent session (kms.batch → kms.batch.response;
// services/kms.ts handleBatch, kms-scope.ts, kms-session.ts): mixed operations
// with bad items failing alone and with the codes of single requests, grants per
// item, one audit line per item, one policy read and one unseal per version per
// batch, replies in parts, the size limits, the in-flight limit counting items,
// and audit failure.
import t from 'tap'

import { contextHash, parseKm1 } from '../../../protocol/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { PROTO_ERRORS } from '../../../protocol/src/index.js'
import { MAX_KMS_BATCH_ITEMS, type KmsBatchItem, type KmsItemReply } from '../../../protocol/src/index.js'
import { dropChunkKey, parsePublicKey } from '../../../protocol/src/index.js'
import { KmsService } from '../../../control-plane/src/services/kms.js'
import type { Store, StoreTx } from '../../../control-plane/src/store/store.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { x25519DropHeader } from '../../kit/drops.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { bytes, createKey, kmsAgent, text } from '../../kit/kms.js'

type Item = Omit<KmsBatchItem, 'id'> & { id?: number }
const suite = nodeSuite
const codeOf = (r: KmsItemReply): string => (r.ok ? 'ok' : (r.error?.code ?? 'no code'))


/** Every KMS line in the audit log, entry fields and line fields together. */
async function kmsLines(h: TestControlPlane): Promise<Record<string, any>[]> {
  const out: Record<string, any>[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) {
    if (!e.action.startsWith('kms.')) continue
    const d = e.details as { columns: string[]; calls: unknown[][] }
    for (const call of d.calls) out.push({ actor: e.actor, action: e.action, target: e.target, outcome: e.outcome, ...Object.fromEntries(d.columns.map((c, i) => [c, call[i]])) })
  }
  return out
}

/** Replaces a store method for the rest of the test (restored at teardown). */
function patch<K extends 'read' | 'transaction'>(t: { teardown(fn: () => unknown): void }, store: Store, name: K, make: (original: Store[K]) => Store[K]): () => void {
  const original = (store[name] as Store[K] & { bind(s: Store): Store[K] }).bind(store)
  ;(store as Record<K, Store[K]>)[name] = make(original)
  const restore = (): void => void ((store as Record<K, Store[K]>)[name] = original)
  t.teardown(restore)
  return restore
}

t.test('a batch of mixed operations answers every item in order; a bad item fails alone, with the code a single request gets', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt', 'generate-data-key'] })
  await createKey(h, 'partner', 'x25519', { app: ['decrypt'] })
  await createKey(h, 'locked', 'aead', { someone: ['encrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const context = { tenant: 't1' }
  const ciphertext = (await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('sealed before'), context })).result?.ciphertext as string
  const tampered = ciphertext.slice(0, -2) + (ciphertext.endsWith('AA') ? 'AB' : 'AA')
  const pub = parsePublicKey((await h.api('GET', '/v1/keys/partner/public')).body.publicKey)
  const drop = x25519DropHeader(suite, { recipient: 'app', key: 'partner', keyVersion: 1, recipientPublic: pub })
  const lowOrder = x25519DropHeader(suite, { recipient: 'app', key: 'partner', keyVersion: 1, recipientPublic: pub, ephemeralPublic: new Uint8Array(32) })

  const items: [string, Item][] = [
    ['ok', { op: 'encrypt', key: 'k', plaintext: bytes('first'), context }],
    ['ok', { op: 'decrypt', ciphertext, context }],
    ['PROTO_ERR_CIPHERTEXT_FORMAT', { op: 'decrypt', ciphertext: 'not-a-ciphertext' }],
    ['CP_ERR_DECRYPT', { op: 'decrypt', ciphertext, context: { tenant: 't2' } }],
    ['CP_ERR_DECRYPT', { op: 'decrypt', ciphertext: tampered, context }],
    ['CP_ERR_KEY_NOT_FOUND', { op: 'encrypt', key: 'nope', plaintext: bytes('x') }],
    ['CP_ERR_KEY_TYPE', { op: 'encrypt', key: 'partner', plaintext: bytes('x') }],
    ['ok', { op: 'datakey', key: 'k', context }],
    ['ok', { op: 'dropopen', header: drop.headerBytes }],
    ['CP_ERR_PUBLIC_KEY', { op: 'dropopen', header: lowOrder.headerBytes }],
    ['CP_ERR_KEY_VERSION_NOT_FOUND', { op: 'decrypt', ciphertext: ciphertext.replace('km1:k:1:', 'km1:k:9:'), context }],
    ['CP_ERR_FORBIDDEN', { op: 'encrypt', key: 'locked', plaintext: bytes('x') }],
    ['ok', { op: 'rewrap', ciphertext, context }],
    ['CP_ERR_NOT_RECIPIENT', { op: 'decrypt', ciphertext, context: { 'keymesh:to': 'someone-else' } }],
    ['ok', { op: 'encrypt', key: 'k', plaintext: bytes('last') }],
  ]
  const batch = await app.requestBatch(items.map(([, item]) => item))
  t.equal(batch.parts, 1)
  t.same(batch.items.map(codeOf), items.map(([code]) => code), 'each item its own outcome')
  t.same(batch.items.map((r) => r.id), batch.items.map((_, i) => batch.items[0]!.id + i), 'in the order of the items')
  for (const r of batch.items) if (!r.ok) t.equal(r.result, undefined, 'a failed item carries no result')

  const [first, opened, , , , , , dk, agreed] = batch.items
  t.equal(text((await app.request({ op: 'decrypt', ciphertext: first?.result?.ciphertext as string, context })).result?.plaintext), 'first', 'a batched encrypt opens')
  t.equal(text(opened?.result?.plaintext), 'sealed before')
  t.equal(dk?.result?.plaintext?.length, 32)
  t.same(Buffer.from(agreed?.result?.plaintext ?? []), Buffer.from(dropChunkKey(suite, drop.headerBytes, drop.ee).key), 'dropopen derives the chunk key of that header')

  const singles = await Promise.all(items.map(([, item]) => app.request(item)))
  t.same(singles.map((r) => (r.ok ? 'ok' : r.error?.code)), items.map(([code]) => code), 'single requests end with the same codes')
  t.equal(app.ws.readyState, app.ws.OPEN, 'the session is still open')
  t.equal(codeOf((await app.requestBatch([{ op: 'encrypt', key: 'k', plaintext: bytes('again') }])).items[0] as KmsItemReply), 'ok', 'and still serves')
})

t.test('grants and the drop rules are checked per item', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { writer: ['encrypt'], reader: ['decrypt'] })
  await createKey(h, 'j', 'aead', { writer: ['encrypt', 'decrypt'] })
  const writer = await kmsAgent(h, t, 'writer')
  const reader = await kmsAgent(h, t, 'reader')
  const sealed = await writer.requestBatch([
    { op: 'encrypt', key: 'k', plaintext: bytes('for the reader') },
    { op: 'encrypt', key: 'j', plaintext: bytes('for the writer') },
    { op: 'encrypt', key: 'k', plaintext: bytes('x'), context: { 'keymesh:from': 'reader' } },
  ])
  t.same(sealed.items.map(codeOf), ['ok', 'ok', 'CP_ERR_NOT_SENDER'])
  const [onK, onJ] = sealed.items.map((r) => r.result?.ciphertext as string)

  const mixed = await writer.requestBatch([
    { op: 'decrypt', ciphertext: onK as string },
    { op: 'decrypt', ciphertext: onJ as string },
    { op: 'datakey', key: 'k' },
    { op: 'rewrap', ciphertext: onK as string },
    { op: 'rewrap', ciphertext: onJ as string },
  ])
  t.same(mixed.items.map(codeOf), ['CP_ERR_FORBIDDEN', 'ok', 'CP_ERR_FORBIDDEN', 'CP_ERR_FORBIDDEN', 'ok'])
  t.match(mixed.items[0]?.error?.message, /writer lacks decrypt on key k \(holds encrypt\)/, 'with the policy reason')
  t.match(mixed.items[2]?.error?.message, /lacks generate-data-key/)
  t.equal(text(mixed.items[1]?.result?.plaintext), 'for the writer')

  const read = await reader.requestBatch([{ op: 'decrypt', ciphertext: onK as string }, { op: 'decrypt', ciphertext: onJ as string }, { op: 'encrypt', key: 'k', plaintext: bytes('x') }])
  t.same(read.items.map(codeOf), ['ok', 'CP_ERR_FORBIDDEN', 'CP_ERR_FORBIDDEN'])
  t.equal(text(read.items[0]?.result?.plaintext), 'for the reader')
})

t.test('each item is audited on its own line with the batch id; one policy read and one unseal per version, wiped after', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  await createKey(h, 'other', 'aead', {})
  const app = await kmsAgent(h, t, 'app')
  const context = { tenant: 'CONTEXT-VALUE-acme' }
  const secret = 'PLAINTEXT-4111-1111'
  const v1 = await app.requestBatch(Array.from({ length: 3 }, () => ({ op: 'encrypt' as const, key: 'k', plaintext: bytes(secret), context })))
  const single = await app.request({ op: 'encrypt', key: 'k', plaintext: bytes(secret), context })
  t.equal((await h.api('POST', '/v1/keys/k/rotate')).status, 200)

  const store = h.cp.ctx.store
  let reads = 0
  let transactions = 0
  patch(t, store, 'read', (read) => (fn) => (reads++, read(fn)))
  patch(t, store, 'transaction', (tx) => (fn) => (transactions++, tx(fn)))
  const sealer = h.cp.ctx.sealer
  const unseal = sealer.unseal.bind(sealer)
  const opened: Uint8Array[] = []
  ;(sealer as { unseal: typeof unseal }).unseal = (identity, sealed) => {
    const m = unseal(identity, sealed)
    opened.push(m)
    return m
  }
  t.teardown(() => void ((sealer as { unseal: typeof unseal }).unseal = unseal))
  const suiteUsed = h.cp.ctx.suite
  const randomBytes = suiteUsed.randomBytes
  let draws = 0
  ;(suiteUsed as { randomBytes: typeof randomBytes }).randomBytes = (n) => (draws++, randomBytes(n))
  t.teardown(() => void ((suiteUsed as { randomBytes: typeof randomBytes }).randomBytes = randomBytes))

  const items: Item[] = [
    ...Array.from({ length: 50 }, () => ({ op: 'encrypt' as const, key: 'k', plaintext: bytes(secret), context })),
    ...v1.items.map((r) => ({ op: 'decrypt' as const, ciphertext: r.result?.ciphertext as string, context })),
    { op: 'encrypt', key: 'other', plaintext: bytes(secret), context },
    { op: 'decrypt', ciphertext: 'km1:k:1:AAAA' },
  ]
  const batch = await app.requestBatch(items, { id: 777 })
  t.same(batch.items.map(codeOf), [...Array(53).fill('ok'), 'CP_ERR_FORBIDDEN', 'PROTO_ERR_CIPHERTEXT_FORMAT'])
  t.equal(reads, 1, 'one policy read for the whole batch')
  t.equal(opened.length, 2, 'each version (v1 to decrypt, v2 to encrypt) unsealed once')
  t.ok(opened.every((m) => m.every((b) => b === 0)), 'and wiped')
  t.equal(transactions, 1, 'one audit transaction for 55 items')
  t.equal(draws, 1, 'one draw of the random source for the 50 nonces')
  const nonces = batch.items.slice(0, 50).map((r) => Buffer.from(parseKm1(r.result?.ciphertext).nonce).toString('hex'))
  t.equal(new Set(nonces).size, 50, 'each nonce used once')

  const lines = (await kmsLines(h)).filter((l) => l.batchId === 777)
  t.equal(lines.length, items.length, 'one line per item')
  t.same(lines.map((l) => l.requestId).sort((a, b) => a - b), batch.items.map((r) => r.id), 'each item listed once, by its id')
  const hash = contextHash(suite, context)
  t.equal(lines.filter((l) => l.action === 'kms.encrypt' && l.outcome === 'ok' && l.keyVersion === 2 && l.contextHash === hash).length, 50)
  t.equal(lines.filter((l) => l.action === 'kms.decrypt' && l.outcome === 'ok' && l.keyVersion === 1 && l.contextHash === hash).length, 3)
  t.match(lines.filter((l) => l.outcome !== 'ok'), [
    { action: 'kms.encrypt', target: 'key:other', outcome: 'deny', code: 'CP_ERR_FORBIDDEN' },
    { action: 'kms.decrypt', target: 'key:(unknown)', outcome: 'error', code: 'PROTO_ERR_CIPHERTEXT_FORMAT' },
  ])
  const all = await kmsLines(h)
  t.same(all.filter((l) => l.batchId === undefined).map((l) => l.requestId), [single.id], 'a single call has no batch id, in an entry of its own')
  t.equal(all.filter((l) => l.batchId === v1.id).length, 3)
  t.match(await h.cp.ctx.audit.verify(store), { ok: true }, 'the chain verifies')

  const audit: string[] = []
  for await (const e of h.cp.ctx.audit.export(store)) audit.push(JSON.stringify(e))
  for (const s of [secret, Buffer.from(secret).toString('base64'), 'CONTEXT-VALUE-acme']) {
    t.notOk(audit.join('\n').includes(s), 'absent from the audit log')
    t.notOk(h.logs.join('\n').includes(s), 'absent from the logs')
  }
})

t.test('batch messages that arrive together share audit commits', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt'] })
  const app = await kmsAgent(h, t, 'app')
  let transactions = 0
  patch(t, h.cp.ctx.store, 'transaction', (tx) => (fn) => (transactions++, tx(fn)))
  const plaintext = new Uint8Array(1024)
  // Twelve messages of ~55 KB: each reaches the control plane in socket reads of its own.
  const batches = await Promise.all(Array.from({ length: 12 }, () => app.requestBatch(Array.from({ length: 40 }, () => ({ op: 'encrypt' as const, key: 'k', plaintext })))))
  t.ok(batches.every((b) => b.items.every((r) => r.ok)), '480 items answered')
  t.ok(transactions <= 6, `${transactions} audit transactions for 12 messages (nearly one each without the yield to I/O)`)
})

t.test('size limits: replies that do not fit one record come in parts; an oversized or ambiguous batch is a malformed message', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['generate-data-key'] })
  const app = await kmsAgent(h, t, 'app')
  // 256 data keys of 64 bytes: a small request, replies of ~300 bytes each.
  const full = await app.requestBatch(Array.from({ length: MAX_KMS_BATCH_ITEMS }, () => ({ op: 'datakey' as const, key: 'k', bytes: 64 })))
  t.ok(full.parts >= 2, `${full.parts} parts`)
  t.equal(full.items.length, MAX_KMS_BATCH_ITEMS)
  t.ok(full.items.every((r) => r.ok && r.result?.plaintext?.length === 64), 'every item answered')
  t.same(full.items.map((r) => r.id), full.items.map((_, i) => (full.items[0] as KmsItemReply).id + i), 'in order')

  const over = Array.from({ length: MAX_KMS_BATCH_ITEMS + 1 }, (_, i) => ({ op: 'datakey' as const, key: 'k', id: 10_000 + i }))
  t.throws(() => app.channel.send({ type: 'kms.batch', id: 1, items: over }), { code: 'PROTO_ERR_MESSAGE_FIELD' }, 'the encoder refuses more than 256 items')
  t.throws(() => app.channel.send({ type: 'kms.batch', id: 1, items: [{ id: 5, op: 'datakey', key: 'k' }, { id: 5, op: 'datakey', key: 'k' }] }), { code: 'PROTO_ERR_MESSAGE_FIELD' }, 'and items sharing an id')
  t.throws(() => app.channel.send({ type: 'kms.batch', id: 1, items: [] }), { code: 'PROTO_ERR_MESSAGE_FIELD' }, 'and an empty batch')

  // An agent that sends one anyway breaks the protocol, as with any malformed message.
  const raw = JSON.stringify({ type: 'kms.batch', id: 2, items: over })
  app.channel.sendEncoded(new Uint8Array(Buffer.from(raw)))
  const closed = await app.closed
  t.equal(closed.code, PROTO_ERRORS.PROTO_ERR_MESSAGE_FIELD.closeCode)
})

t.test('the in-flight limit counts items: a batch takes what fits and answers the rest busy', async (t) => {
  const h = await startTestControlPlane(t, { kms: (ctx) => new KmsService(ctx, { maxInFlightPerAgent: 5 }) })
  await createKey(h, 'k', 'aead', { app: ['encrypt'] })
  const app = await kmsAgent(h, t, 'app')
  let open!: () => void
  const gate = new Promise<void>((resolve) => (open = resolve))
  patch(t, h.cp.ctx.store, 'transaction', (tx) => async (fn) => {
    await gate // audit commits wait until the test opens the gate
    return tx(fn)
  })
  const enc = (): Item => ({ op: 'encrypt', key: 'k', plaintext: bytes('x') })

  const a = app.requestBatch([enc(), enc(), enc()])
  const b = app.requestBatch([enc(), enc(), enc(), enc()])
  const single = await app.request(enc())
  t.equal(single.error?.code, 'CP_ERR_KMS_BUSY', 'a single request beyond the limit is refused at once')
  const c = await app.requestBatch([enc(), enc()])
  t.same(c.items.map(codeOf), ['CP_ERR_KMS_BUSY', 'CP_ERR_KMS_BUSY'], 'a batch with no room is answered at once')
  open()
  t.same((await a).items.map(codeOf), ['ok', 'ok', 'ok'])
  t.same((await b).items.map(codeOf), ['ok', 'ok', 'CP_ERR_KMS_BUSY', 'CP_ERR_KMS_BUSY'], 'the items beyond the room, in the same reply')
  t.same((await app.requestBatch([enc(), enc(), enc(), enc(), enc()])).items.map(codeOf), ['ok', 'ok', 'ok', 'ok', 'ok'], 'room again once answered')
  t.equal((await kmsLines(h)).filter((l) => l.code === 'CP_ERR_KMS_BUSY').length, 0, 'load shedding is not audited')
})

t.test('when the audit commit fails, every item answers CP_ERR_AUDIT and returns nothing', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt', 'generate-data-key'] })
  const app = await kmsAgent(h, t, 'app')
  const ciphertext = (await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('kept') })).result?.ciphertext as string
  const restore = patch(t, h.cp.ctx.store, 'transaction', (tx) => (fn) =>
    tx((inner) => fn(new Proxy(inner, {
      get: (target, prop) => {
        if (prop === 'appendAuditRow') return () => Promise.reject(new Error('disk full'))
        const value: unknown = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      },
    }) as StoreTx)))
  const failed = await app.requestBatch([{ op: 'decrypt', ciphertext }, { op: 'datakey', key: 'k' }, { op: 'encrypt', key: 'nope', plaintext: bytes('x') }])
  t.same(failed.items.map(codeOf), ['CP_ERR_AUDIT', 'CP_ERR_AUDIT', 'CP_ERR_AUDIT'])
  t.ok(failed.items.every((r) => r.result === undefined), 'no result without an audit line')
  t.ok(h.logs.some((l) => l.includes('CP_ERR_AUDIT')), 'the failure is logged')
  restore()
  const again = await app.requestBatch([{ op: 'decrypt', ciphertext }])
  t.equal(text(again.items[0]?.result?.plaintext), 'kept', 'batches succeed once the store recovers')
  const ids = (await kmsLines(h)).map((l) => l.requestId)
  t.notOk(failed.items.some((r) => ids.includes(r.id)), 'the failed items left no line')
})
