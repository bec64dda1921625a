// KMS operations over the agent session (services/kms.ts): separate grants,
// context binding, the version from the header through the key's lifecycle,
// rewrap, data keys, x25519 drop keys, the drop sender/recipient rules, audit of
// every call without its data, group commit, audit failure and the in-flight cap.
import t from 'tap'
import { createHash } from 'node:crypto'

import { contextHash, parseKm1 } from '../../../protocol/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import type { MessageOf } from '../../../protocol/src/index.js'
import { dropChunkKey, parsePublicKey, withSenderTerm } from '../../../protocol/src/index.js'
import { x25519DropHeader } from '../../kit/drops.js'
import { KmsService } from '../../../control-plane/src/services/kms.js'
import { entriesOf, KMS_CALL_COLUMNS, type KmsCallRecord } from '../../../control-plane/src/services/kms-audit.js'
import type { StoreTx } from '../../../control-plane/src/store/store.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { bytes, createKey, kmsAgent, text } from '../../kit/kms.js'
import { SECOND } from '../../kit/fake-clock.js'

type Reply = MessageOf<'kms.response'>
const suite = nodeSuite
const codeOf = (r: Reply): string => (r.ok ? 'ok' : (r.error?.code ?? 'no code'))


const setState = (h: TestControlPlane, name: string, version: number, state: string, windowMs?: number) =>
  h.api('POST', `/v1/keys/${name}/versions/${version}/state`, { state, ...(windowMs !== undefined ? { windowMs } : {}) })

/** Every KMS line in the audit log as { entry fields, line fields }. */
async function kmsLines(h: TestControlPlane): Promise<Record<string, any>[]> {
  const out: Record<string, any>[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) {
    if (!e.action.startsWith('kms.')) continue
    const d = e.details as { columns: string[]; calls: unknown[][] }
    for (const call of d.calls) {
      out.push({ actor: e.actor, action: e.action, target: e.target, outcome: e.outcome, reason: e.reason, ...Object.fromEntries(d.columns.map((c, i) => [c, call[i]])) })
    }
  }
  return out
}

async function auditText(h: TestControlPlane): Promise<string> {
  const lines: string[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) lines.push(JSON.stringify(e))
  return lines.join('\n')
}

t.test('grants are separate: encrypt, decrypt, generate-data-key and rewrap each need their own', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'orders-data', 'aead', { writer: ['encrypt'], reader: ['decrypt'], wrapper: ['generate-data-key'], mover: ['decrypt', 'encrypt'] })
  const [writer, reader, wrapper, mover] = await Promise.all(['writer', 'reader', 'wrapper', 'mover'].map((s) => kmsAgent(h, t, s)))
  if (!writer || !reader || !wrapper || !mover) throw new Error('agents')

  const sealed = await writer.request({ op: 'encrypt', key: 'orders-data', plaintext: bytes('card 4111') })
  t.match(sealed, { ok: true, result: { key: 'orders-data', version: 1, ciphertext: /^km1:orders-data:1:/ } })
  const ciphertext = sealed.result?.ciphertext as string

  const denied = await writer.request({ op: 'decrypt', ciphertext })
  t.equal(codeOf(denied), 'CP_ERR_FORBIDDEN')
  t.match(denied.error?.message, /writer lacks decrypt on key orders-data \(holds encrypt\)/)
  t.equal(denied.result, undefined, 'a refusal carries no result')

  const opened = await reader.request({ op: 'decrypt', ciphertext })
  t.match(opened, { ok: true, result: { key: 'orders-data', version: 1 } })
  t.equal(text(opened.result?.plaintext), 'card 4111')
  t.equal(codeOf(await reader.request({ op: 'encrypt', key: 'orders-data', plaintext: bytes('x') })), 'CP_ERR_FORBIDDEN')
  t.equal(codeOf(await writer.request({ op: 'datakey', key: 'orders-data' })), 'CP_ERR_FORBIDDEN', 'encrypt does not imply generate-data-key')

  const dk = await wrapper.request({ op: 'datakey', key: 'orders-data' })
  t.equal(dk.result?.plaintext?.length, 32, 'a 32-byte data key by default')
  const unwrapped = await reader.request({ op: 'decrypt', ciphertext: dk.result?.ciphertext as string })
  t.same(Buffer.from(unwrapped.result?.plaintext ?? []), Buffer.from(dk.result?.plaintext ?? []), 'the wrapped key opens to the data key')
  const wrappedOnly = await wrapper.request({ op: 'datakey', key: 'orders-data', wrappedOnly: true, bytes: 16 })
  t.equal(wrappedOnly.result?.plaintext, undefined, 'wrappedOnly returns no plaintext')
  t.equal((await reader.request({ op: 'decrypt', ciphertext: wrappedOnly.result?.ciphertext as string })).result?.plaintext?.length, 16)
  t.equal(codeOf(await wrapper.request({ op: 'decrypt', ciphertext })), 'CP_ERR_FORBIDDEN', 'generate-data-key does not imply decrypt')

  t.equal(codeOf(await reader.request({ op: 'rewrap', ciphertext })), 'CP_ERR_FORBIDDEN', 'rewrap needs encrypt too')
  t.equal(codeOf(await writer.request({ op: 'rewrap', ciphertext })), 'CP_ERR_FORBIDDEN', 'rewrap needs decrypt too')
  const moved = await mover.request({ op: 'rewrap', ciphertext })
  t.match(moved, { ok: true, result: { key: 'orders-data', version: 1, ciphertext: /^km1:orders-data:1:/ } })
  t.equal(moved.result?.plaintext, undefined, 'rewrap never returns the plaintext')
  t.not(moved.result?.ciphertext, ciphertext, 'a fresh nonce')
  t.equal(text((await reader.request({ op: 'decrypt', ciphertext: moved.result?.ciphertext as string })).result?.plaintext), 'card 4111')
})

t.test('the context is bound; bad input is an error reply that leaves the session and the store as they were', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  await createKey(h, 'partner', 'x25519', { app: ['encrypt', 'decrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const context = { tenant: 't1', table: 'orders' }
  const ciphertext = (await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('secret row'), context })).result?.ciphertext as string

  const reordered = await app.request({ op: 'decrypt', ciphertext, context: { table: 'orders', tenant: 't1' } })
  t.equal(text(reordered.result?.plaintext), 'secret row', 'the order of context entries does not matter')
  const other = await app.request({ op: 'decrypt', ciphertext, context: { tenant: 't2', table: 'orders' } })
  t.equal(codeOf(other), 'CP_ERR_DECRYPT')
  t.match(other.error?.message, /does not open with this key version and context/)
  t.equal(codeOf(await app.request({ op: 'decrypt', ciphertext })), 'CP_ERR_DECRYPT', 'a missing context is another context')

  const c = parseKm1(ciphertext)
  const flipped = new Uint8Array(c.sealed)
  flipped[0] = (flipped[0] as number) ^ 1
  const tampered = `km1:k:1:${Buffer.concat([c.nonce, flipped]).toString('base64url')}`
  const before = await h.cp.ctx.store.read(async (r) => JSON.stringify([await r.listKeys(), await r.listKeyVersions(), await r.listGrants()]))

  const cases: [string, Parameters<FakeAgent['request']>[0]][] = [
    ['CP_ERR_DECRYPT', { op: 'decrypt', ciphertext: tampered, context }],
    ['PROTO_ERR_CIPHERTEXT_VERSION', { op: 'decrypt', ciphertext: ciphertext.replace(/^km1/, 'km2') }],
    ['PROTO_ERR_CIPHERTEXT_FORMAT', { op: 'decrypt', ciphertext: 'not-a-ciphertext' }],
    ['PROTO_ERR_CIPHERTEXT_FORMAT', { op: 'decrypt', ciphertext: ciphertext + '=' }],
    ['CP_ERR_CIPHERTEXT_KEY', { op: 'decrypt', ciphertext, key: 'other', context }],
    ['CP_ERR_KEY_NOT_FOUND', { op: 'encrypt', key: 'nope', plaintext: bytes('x') }],
    ['CP_ERR_KEY_NOT_FOUND', { op: 'decrypt', ciphertext: ciphertext.replace('km1:k:', 'km1:nope:') }],
    ['CP_ERR_KEY_VERSION_NOT_FOUND', { op: 'decrypt', ciphertext: ciphertext.replace('km1:k:1:', 'km1:k:7:') }],
    ['CP_ERR_KEY_TYPE', { op: 'encrypt', key: 'partner', plaintext: bytes('x') }],
    ['CP_ERR_KEY_TYPE', { op: 'dropopen', header: x25519DropHeader(suite, { recipient: 'app', key: 'k', keyVersion: 1, recipientPublic: suite.x25519Generate().publicKey }).headerBytes }],
    ['CP_ERR_KMS_TOO_LARGE', { op: 'decrypt', ciphertext: `km1:k:1:${Buffer.alloc(12 + 32_768 + 16 + 1).toString('base64url')}` }],
  ]
  for (const [code, req] of cases) {
    const r = await app.request(req)
    t.equal(codeOf(r), code, `${code} for ${req.op}`)
    t.equal(r.result, undefined)
  }
  const after = await h.cp.ctx.store.read(async (r) => JSON.stringify([await r.listKeys(), await r.listKeyVersions(), await r.listGrants()]))
  t.equal(after, before, 'keys, versions and grants are unchanged')
  t.equal(app.ws.readyState, app.ws.OPEN, 'the session is still open')
  t.equal((await app.request({ op: 'decrypt', ciphertext, context })).ok, true, 'and still serves')
  const lines = await kmsLines(h)
  t.same(lines.filter((l) => l.code === 'CP_ERR_DECRYPT').map((l) => l.outcome), ['error', 'error', 'error'], 'failures are audited as errors')
  t.ok(lines.some((l) => l.code === 'CP_ERR_KEY_NOT_FOUND' && l.target === 'key:nope'))
})

t.test('the version comes from the header through rotation, decrypt-only, disable, minimum and destruction', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const seal = async (s: string) => (await app.request({ op: 'encrypt', key: 'k', plaintext: bytes(s) })).result?.ciphertext as string
  const open = (ciphertext: string) => app.request({ op: 'decrypt', ciphertext })
  const v1 = await seal('one')
  t.equal((await h.api('POST', '/v1/keys/k/rotate')).status, 200)
  const v2 = await seal('two')
  t.match(v2, /^km1:k:2:/, 'the primary encrypts')
  t.match(await open(v1), { ok: true, result: { version: 1 } }, 'an old ciphertext still opens after rotation')
  t.equal(text((await open(v1)).result?.plaintext), 'one')

  const moved = await app.request({ op: 'rewrap', ciphertext: v1 })
  t.match(moved.result, { key: 'k', version: 2, ciphertext: /^km1:k:2:/ }, 'rewrap moves to the primary')
  t.equal(text((await open(moved.result?.ciphertext as string)).result?.plaintext), 'one')

  t.equal((await setState(h, 'k', 1, 'decrypt-only')).status, 200)
  t.equal(text((await open(v1)).result?.plaintext), 'one', 'a decrypt-only version still opens')
  t.equal((await setState(h, 'k', 1, 'disabled')).status, 200)
  t.equal(codeOf(await open(v1)), 'CP_ERR_VERSION_DISABLED')
  t.equal(codeOf(await app.request({ op: 'rewrap', ciphertext: v1 })), 'CP_ERR_VERSION_DISABLED')
  t.equal((await setState(h, 'k', 1, 'enabled')).status, 200)
  t.equal((await h.api('PATCH', '/v1/keys/k', { minDecryptVersion: 2 })).status, 200)
  t.equal(codeOf(await open(v1)), 'CP_ERR_VERSION_BELOW_MIN')
  t.equal((await h.api('PATCH', '/v1/keys/k', { minDecryptVersion: 1 })).status, 200)
  // v1 was used moments ago: its destruction is scheduled with --force and a reason.
  const forced = await h.api('POST', '/v1/keys/k/versions/1/state', { state: 'scheduled-destruction', windowMs: SECOND, force: true, reason: 'test' })
  t.equal(forced.status, 200)
  t.equal(codeOf(await open(v1)), 'CP_ERR_VERSION_DISABLED', 'scheduled for destruction: refused, not yet destroyed')
  h.clock.advance(SECOND)
  await h.cp.scheduler.tick()
  t.equal((await h.cp.ctx.store.read((r) => r.getKeyVersion('k', 1)))?.state, 'scheduled-destruction', 'the refused call shows v1 still needed: postponed')
  h.clock.advance(SECOND)
  await h.cp.scheduler.tick()
  t.equal(codeOf(await open(v1)), 'CP_ERR_VERSION_DESTROYED')
  t.equal(text((await open(v2)).result?.plaintext), 'two', 'the primary is untouched')

  t.equal((await setState(h, 'k', 2, 'disabled')).status, 200)
  t.equal(codeOf(await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('x') })), 'CP_ERR_VERSION_DISABLED', 'a disabled primary stops encryption')
})

t.test('dropopen derives the chunk key of the header it is given, with the version the header names', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'partner', 'x25519', { opener: ['decrypt'], sealer: ['encrypt'] })
  const opener = await kmsAgent(h, t, 'opener')
  const sealer = await kmsAgent(h, t, 'sealer')
  const pub1 = parsePublicKey((await h.api('GET', '/v1/keys/partner/public')).body.publicKey)
  const drop1 = x25519DropHeader(suite, { recipient: 'opener', key: 'partner', keyVersion: 1, recipientPublic: pub1 })
  const expected1 = Buffer.from(dropChunkKey(suite, drop1.headerBytes, drop1.ee).key)

  const r = await opener.request({ op: 'dropopen', header: drop1.headerBytes })
  t.match(r, { ok: true, result: { key: 'partner', version: 1 } })
  t.same(Buffer.from(r.result?.plaintext ?? []), expected1, 'the chunk key of that drop, not a raw X25519 value')
  t.notSame(Buffer.from(r.result?.plaintext ?? []), Buffer.from(drop1.ee), 'the shared secret itself never leaves')
  const forSealer = x25519DropHeader(suite, { recipient: 'sealer', key: 'partner', keyVersion: 1, recipientPublic: pub1 })
  t.equal(codeOf(await sealer.request({ op: 'dropopen', header: forSealer.headerBytes })), 'CP_ERR_FORBIDDEN', 'opening needs decrypt')

  t.equal((await h.api('POST', '/v1/keys/partner/rotate')).status, 200)
  const pub2 = parsePublicKey((await h.api('GET', '/v1/keys/partner/public')).body.publicKey)
  const old = await opener.request({ op: 'dropopen', header: drop1.headerBytes })
  t.same(Buffer.from(old.result?.plaintext ?? []), expected1, 'a drop to version 1 still opens after rotation')
  const drop2 = x25519DropHeader(suite, { recipient: 'opener', key: 'partner', keyVersion: 2, recipientPublic: pub2 })
  const cur = await opener.request({ op: 'dropopen', header: drop2.headerBytes })
  t.match(cur.result, { version: 2 })
  t.same(Buffer.from(cur.result?.plaintext ?? []), Buffer.from(dropChunkKey(suite, drop2.headerBytes, drop2.ee).key))
  const drop9 = x25519DropHeader(suite, { recipient: 'opener', key: 'partner', keyVersion: 9, recipientPublic: pub2 })
  t.equal(codeOf(await opener.request({ op: 'dropopen', header: drop9.headerBytes })), 'CP_ERR_KEY_VERSION_NOT_FOUND')
  const low = x25519DropHeader(suite, { recipient: 'opener', key: 'partner', keyVersion: 2, recipientPublic: pub2, ephemeralPublic: new Uint8Array(32) })
  t.equal(codeOf(await opener.request({ op: 'dropopen', header: low.headerBytes })), 'CP_ERR_PUBLIC_KEY', 'a low-order point is refused')
  t.equal(codeOf(await opener.request({ op: 'dropopen', header: drop2.headerBytes.subarray(0, 40) })), 'CP_ERR_BAD_REQUEST', 'a cut header is refused')
  t.equal(codeOf(await opener.request({ op: 'dropopen', header: new Uint8Array([...drop2.headerBytes, 0]) })), 'CP_ERR_BAD_REQUEST', 'so is one with bytes after it')
  t.equal(opener.ws.readyState, opener.ws.OPEN)
})

t.test('dropseal gives the sender term to the header\'s sender only, and it opens', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'inbox', 'x25519', { bob: ['decrypt'] })
  await createKey(h, 'alice-id', 'x25519', { alice: ['encrypt'], eve: ['decrypt'] })
  const [alice, bob, eve] = await Promise.all(['alice', 'bob', 'eve'].map((s) => kmsAgent(h, t, s)))
  if (!alice || !bob || !eve) throw new Error('agents')
  const inbox = parsePublicKey((await h.api('GET', '/v1/keys/inbox/public')).body.publicKey)
  const drop = x25519DropHeader(suite, { sender: 'alice', senderKey: 'alice-id', senderKeyVersion: 1, recipient: 'bob', key: 'inbox', keyVersion: 1, recipientPublic: inbox })
  const term = await alice.request({ op: 'dropseal', header: drop.headerBytes })
  t.match(term, { ok: true, result: { key: 'alice-id', version: 1 } })
  const sealKey = dropChunkKey(suite, drop.headerBytes, withSenderTerm(drop.ee, term.result?.plaintext as Uint8Array)).key
  const openKey = await bob.request({ op: 'dropopen', header: drop.headerBytes })
  t.same(Buffer.from(openKey.result?.plaintext ?? []), Buffer.from(sealKey), 'sealer and recipient reach the same chunk key')
  t.notSame(Buffer.from(sealKey), Buffer.from(dropChunkKey(suite, drop.headerBytes, drop.ee).key), 'the sender term changes the key')
  const lines = (await kmsLines(h)).filter((l) => l.action === 'kms.dropseal' || l.action === 'kms.dropopen')
  const headerHash = createHash('sha256').update(drop.headerBytes).digest('hex')
  t.same(lines.map((l) => [l.action, l.target, l.contextHash]), [['kms.dropseal', 'key:alice-id', headerHash], ['kms.dropopen', 'key:inbox', headerHash]], 'both audit lines carry the header\'s hash, linking the seal to the open')
  t.match(lines[1]?.reason, /sender alice with key alice-id v1/)

  const asAlice = x25519DropHeader(suite, { sender: 'alice', senderKey: 'alice-id', senderKeyVersion: 1, recipient: 'bob', key: 'inbox', keyVersion: 1, recipientPublic: inbox })
  t.equal(codeOf(await eve.request({ op: 'dropseal', header: asAlice.headerBytes })), 'CP_ERR_FORBIDDEN', 'eve holds no encrypt on alice\'s key')
  const eveAsAlice = x25519DropHeader(suite, { sender: 'eve', senderKey: 'alice-id', senderKeyVersion: 1, recipient: 'bob', key: 'inbox', keyVersion: 1, recipientPublic: inbox })
  t.equal(codeOf(await eve.request({ op: 'dropseal', header: eveAsAlice.headerBytes })), 'CP_ERR_FORBIDDEN', 'nor under her own name')
  t.equal(codeOf(await bob.request({ op: 'dropseal', header: asAlice.headerBytes })), 'CP_ERR_FORBIDDEN')
  await h.api('POST', '/v1/keys/alice-id/grants', { service: 'carol', rights: ['encrypt'] })
  const carol = await kmsAgent(h, t, 'carol')
  t.equal(codeOf(await carol.request({ op: 'dropseal', header: asAlice.headerBytes })), 'CP_ERR_NOT_SENDER', 'a holder of the key cannot seal in another service\'s name')
  const anonymous = x25519DropHeader(suite, { recipient: 'bob', key: 'inbox', keyVersion: 1, recipientPublic: inbox })
  t.equal(codeOf(await alice.request({ op: 'dropseal', header: anonymous.headerBytes })), 'CP_ERR_BAD_REQUEST', 'a header without a sender key has no term')
})

t.test('drop rules: only the named sender seals, only the named recipient opens', async (t) => {
  const h = await startTestControlPlane(t)
  const all = ['encrypt', 'decrypt', 'generate-data-key']
  await createKey(h, 'drops', 'aead', { alice: all, bob: all, eve: all })
  await createKey(h, 'inbox', 'x25519', { bob: ['decrypt'], eve: ['decrypt'] })
  const [alice, bob, eve] = await Promise.all(['alice', 'bob', 'eve'].map((s) => kmsAgent(h, t, s)))
  if (!alice || !bob || !eve) throw new Error('agents')
  const context = { 'keymesh:drop': 'v1', 'keymesh:from': 'alice', 'keymesh:to': 'bob' }

  t.equal(codeOf(await eve.request({ op: 'datakey', key: 'drops', context })), 'CP_ERR_NOT_SENDER', 'eve cannot seal as alice')
  t.equal(codeOf(await eve.request({ op: 'encrypt', key: 'drops', plaintext: bytes('x'), context })), 'CP_ERR_NOT_SENDER')
  const dk = await alice.request({ op: 'datakey', key: 'drops', context })
  t.equal(dk.ok, true, 'the named sender seals')
  const wrapped = dk.result?.ciphertext as string

  const refused = await eve.request({ op: 'decrypt', ciphertext: wrapped, context })
  t.equal(codeOf(refused), 'CP_ERR_NOT_RECIPIENT', 'eve holds decrypt but is not the recipient')
  t.notMatch(refused.error?.message, /bob/, 'the refusal does not repeat the context')
  t.equal(codeOf(await alice.request({ op: 'decrypt', ciphertext: wrapped, context })), 'CP_ERR_NOT_RECIPIENT', 'not even the sender')
  t.equal(codeOf(await eve.request({ op: 'rewrap', ciphertext: wrapped, context })), 'CP_ERR_NOT_RECIPIENT')
  const opened = await bob.request({ op: 'decrypt', ciphertext: wrapped, context })
  t.same(Buffer.from(opened.result?.plaintext ?? []), Buffer.from(dk.result?.plaintext ?? []), 'the recipient opens')
  t.equal((await bob.request({ op: 'rewrap', ciphertext: wrapped, context })).ok, true, 'the recipient may rewrap')

  const inbox = parsePublicKey((await h.api('GET', '/v1/keys/inbox/public')).body.publicKey)
  const toBob = x25519DropHeader(suite, { recipient: 'bob', key: 'inbox', keyVersion: 1, recipientPublic: inbox })
  t.equal(codeOf(await eve.request({ op: 'dropopen', header: toBob.headerBytes })), 'CP_ERR_NOT_RECIPIENT', 'eve holds decrypt on the inbox but the header names bob')
  t.equal((await bob.request({ op: 'dropopen', header: toBob.headerBytes })).ok, true)

  const denials = (await kmsLines(h)).filter((l) => l.outcome === 'deny')
  t.equal(denials.length, 6, 'each refusal is audited as a denial')
  t.ok(denials.every((l) => /^CP_ERR_NOT_(SENDER|RECIPIENT)$/.test(l.code)))
})

t.test('every call is audited with its context hash, never with its data', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt', 'generate-data-key'], other: ['encrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const other = await kmsAgent(h, t, 'other')
  const plaintext = 'PLAINTEXT-4111-1111-1111-1111'
  const context = { tenant: 'CONTEXT-VALUE-acme' }
  const enc = await app.request({ op: 'encrypt', key: 'k', plaintext: bytes(plaintext), context })
  const ciphertext = enc.result?.ciphertext as string
  const dec = await app.request({ op: 'decrypt', ciphertext, context })
  const dk = await app.request({ op: 'datakey', key: 'k', context })
  const denied = await other.request({ op: 'decrypt', ciphertext, context })
  t.equal(codeOf(denied), 'CP_ERR_FORBIDDEN')

  const lines = await kmsLines(h)
  const hash = contextHash(suite, context)
  const byId = (a: FakeAgent, id: number) => lines.filter((l) => l.actor === `agent:${a.agentId}` && l.requestId === id)
  t.match(byId(app, enc.id), [{ action: 'kms.encrypt', target: 'key:k', outcome: 'ok', keyVersion: 1, contextHash: hash, code: null, reason: /app holds encrypt on key k/ }])
  t.match(byId(app, dec.id), [{ action: 'kms.decrypt', target: 'key:k', outcome: 'ok', keyVersion: 1, contextHash: hash }])
  t.match(byId(app, dk.id), [{ action: 'kms.datakey', target: 'key:k', outcome: 'ok', keyVersion: 1, contextHash: hash }])
  t.match(byId(other, denied.id), [{ action: 'kms.decrypt', outcome: 'deny', keyVersion: 1, contextHash: hash, code: 'CP_ERR_FORBIDDEN', reason: /other lacks decrypt/ }])
  t.equal(lines.length, 4, 'one line per call')
  t.same(Object.keys(lines[0] ?? {}).filter((k) => (KMS_CALL_COLUMNS as readonly string[]).includes(k)), [...KMS_CALL_COLUMNS])
  t.match(await h.cp.ctx.audit.verify(h.cp.ctx.store), { ok: true }, 'the chain verifies')

  const dataKey = Buffer.from(dk.result?.plaintext ?? [])
  t.equal(dataKey.length, 32)
  const secrets = [
    plaintext, Buffer.from(plaintext).toString('base64'), Buffer.from(plaintext).toString('hex'),
    dataKey.toString('base64'), dataKey.toString('base64url'), dataKey.toString('hex'),
    ciphertext.split(':')[3] as string, 'CONTEXT-VALUE-acme',
  ]
  const audit = await auditText(h)
  const logs = h.logs.join('\n')
  t.ok(audit.includes(hash) && logs.length > 0)
  for (const s of secrets) {
    t.notOk(audit.includes(s), 'absent from the audit log')
    t.notOk(logs.includes(s), 'absent from the logs')
  }
  t.equal(text(dec.result?.plaintext), plaintext)
})

t.test('a burst of 500 concurrent encrypts is committed in far fewer transactions', async (t) => {
  let kms!: KmsService
  const h = await startTestControlPlane(t, { kms: (ctx) => (kms = new KmsService(ctx)) })
  await createKey(h, 'k', 'aead', { app: ['encrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const store = h.cp.ctx.store
  const original = store.transaction.bind(store)
  let transactions = 0
  ;(store as { transaction: typeof store.transaction }).transaction = (fn) => {
    transactions++
    return original(fn)
  }
  t.teardown(() => void ((store as { transaction: typeof store.transaction }).transaction = original))
  const before = kms.audit.stats

  const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => app.request({ op: 'encrypt', key: 'k', plaintext: bytes(`item ${i}`) })))
  t.equal(replies.filter((r) => r.ok).length, 500, 'every call answers')
  const stats = kms.audit.stats
  t.equal(stats.calls - before.calls, 500)
  t.ok(transactions < 50, `${transactions} transactions for 500 calls`)
  t.ok(stats.largestGroup > 10, `groups of up to ${stats.largestGroup}`)
  const ids = (await kmsLines(h)).map((l) => l.requestId).sort((a, b) => a - b)
  t.same(ids, replies.map((r) => r.id).sort((a, b) => a - b), 'each call is listed exactly once')
  t.match(await h.cp.ctx.audit.verify(store), { ok: true })
})

t.test('when the audit commit fails, the call answers CP_ERR_AUDIT and returns nothing', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const ciphertext = (await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('kept') })).result?.ciphertext as string
  const store = h.cp.ctx.store
  const original = store.transaction.bind(store)
  // The disk fails under the audit append: the transaction rolls back.
  ;(store as { transaction: typeof store.transaction }).transaction = (fn) =>
    original((tx) => fn(new Proxy(tx, {
      get: (target, prop) => {
        if (prop === 'appendAuditRow') return () => Promise.reject(new Error('disk full'))
        const value: unknown = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      },
    }) as StoreTx))
  t.teardown(() => void ((store as { transaction: typeof store.transaction }).transaction = original))

  const [dec, enc] = await Promise.all([
    app.request({ op: 'decrypt', ciphertext }),
    app.request({ op: 'encrypt', key: 'k', plaintext: bytes('lost') }),
  ])
  for (const r of [dec, enc]) {
    t.equal(codeOf(r), 'CP_ERR_AUDIT')
    t.equal(r.result, undefined, 'no result without an audit entry')
  }
  t.ok(h.logs.some((l) => l.includes('CP_ERR_AUDIT')), 'the failure is logged')
  ;(store as { transaction: typeof store.transaction }).transaction = original
  const again = await app.request({ op: 'decrypt', ciphertext })
  t.equal(text(again.result?.plaintext), 'kept', 'calls succeed once the store recovers')
  const ids = (await kmsLines(h)).map((l) => l.requestId)
  t.notOk(ids.includes(dec.id) || ids.includes(enc.id), 'the failed calls left no line')
  t.ok(ids.includes(again.id))
  t.match(await h.cp.ctx.audit.verify(store), { ok: true })
})

t.test('requests beyond the in-flight limit are answered CP_ERR_KMS_BUSY at once', async (t) => {
  const h = await startTestControlPlane(t, { kms: (ctx) => new KmsService(ctx, { maxInFlightPerAgent: 2 }) })
  await createKey(h, 'k', 'aead', { app: ['encrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const store = h.cp.ctx.store
  const original = store.transaction.bind(store)
  let open!: () => void
  const gate = new Promise<void>((resolve) => (open = resolve))
  ;(store as { transaction: typeof store.transaction }).transaction = async (fn) => {
    await gate // audit commits wait until the test opens the gate
    return original(fn)
  }
  t.teardown(() => void ((store as { transaction: typeof store.transaction }).transaction = original))

  const pending = [1, 2, 3, 4, 5].map((id) => app.request({ id, op: 'encrypt', key: 'k', plaintext: bytes('x') }))
  const busy = await Promise.all(pending.slice(2))
  t.same(busy.map(codeOf), ['CP_ERR_KMS_BUSY', 'CP_ERR_KMS_BUSY', 'CP_ERR_KMS_BUSY'], 'answered while the first two wait for their audit')
  open()
  t.same((await Promise.all(pending.slice(0, 2))).map(codeOf), ['ok', 'ok'])
  t.equal(codeOf(await app.request({ op: 'encrypt', key: 'k', plaintext: bytes('x') })), 'ok', 'room again once they answered')
})

t.test('a group becomes one entry per actor, op, key and outcome, each call on its own line', async (t) => {
  const call = (requestId: number, o: Partial<KmsCallRecord> = {}): KmsCallRecord => ({
    actor: 'agent:a', service: 'app', op: 'encrypt', target: 'key:k', outcome: 'ok', reason: 'service app holds encrypt on key k',
    requestId, keyVersion: 1, contextHash: 'h', code: null, ...o,
  })
  const denied = { outcome: 'deny', code: 'CP_ERR_FORBIDDEN', reason: 'CP_ERR_FORBIDDEN: not allowed' } as const
  const entries = entriesOf([call(1), call(2, denied), call(3), call(4, { actor: 'agent:b' }), call(5, { op: 'decrypt' }), call(6), call(7, { target: 'key:j' })], 2)
  t.same(entries.map((e) => [e.actor, e.action, e.target, e.outcome, (e.details?.['calls'] as unknown[][]).map((l) => l[0])]), [
    ['agent:a', 'kms.encrypt', 'key:k', 'ok', [1, 3]],
    ['agent:a', 'kms.encrypt', 'key:k', 'deny', [2]],
    ['agent:b', 'kms.encrypt', 'key:k', 'ok', [4]],
    ['agent:a', 'kms.decrypt', 'key:k', 'ok', [5]],
    ['agent:a', 'kms.encrypt', 'key:k', 'ok', [6]],
    ['agent:a', 'kms.encrypt', 'key:j', 'ok', [7]],
  ], 'a full entry (two calls here) closes and the next call starts another')
  t.same(entries[1]?.details?.['calls'], [[2, 1, 'h', 'CP_ERR_FORBIDDEN']])
  t.equal(entries[0]?.reason, '2 calls: service app holds encrypt on key k')
  const rewrap = entriesOf([call(8, { op: 'rewrap', toVersion: 3 })])
  t.same(rewrap[0]?.details?.['columns'], [...KMS_CALL_COLUMNS, 'toVersion'])
  t.same(rewrap[0]?.details?.['calls'], [[8, 1, 'h', null, 3]])
})
