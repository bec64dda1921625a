// The agent's data API (agent/src/kms/*.ts) against a real control plane and real
// agents: separate grants with the control plane's codes in the HTTP answer, the
// context binding, batches with a bad item, rewrap after rotation, data keys,
// X25519 agreement, the size limits, a control plane that is gone or silent, and
// logs free of every plaintext, data key, secret and context. Then the request
// multiplexer on its own (window, deadline, bound, session end) with a fake clock.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'

import { KmsMultiplexer, type KmsResult } from '../../../agent/src/kms/multiplexer.js'
import { CP_KMS_STATUS, remoteError } from '../../../agent/src/kms/remote-error.js'
import { CP_ERRORS } from '../../../control-plane/src/index.js'
import type { KmsService } from '../../../control-plane/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { decodeMessage, encodeMessage, MAX_KMS_PLAINTEXT, type KmsBatchMessage, type KmsRequestMessage } from '../../../protocol/src/index.js'
import { dropChunkKey, parsePublicKey } from '../../../protocol/src/index.js'
import { x25519DropHeader } from '../../kit/drops.js'
import { startTestAgent, type TestAgent } from '../../kit/agent.js'
import { until } from '../../kit/wait.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { createKey } from '../../kit/kms.js'
import { FakeClock, SECOND } from '../../kit/fake-clock.js'

const b64 = (s: string | Uint8Array): string => Buffer.from(s).toString('base64')
const unb64 = (s: unknown): string => Buffer.from(String(s), 'base64').toString()

interface Answer {
  status: number
  body: any
}

async function call(a: TestAgent, path: string, body: unknown): Promise<Answer> {
  const res = await fetch(`${a.agent.apiUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...a.apiHeaders },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  return { status: res.status, body: await res.json() }
}

async function connectedAgent(t: Parameters<typeof startTestAgent>[0], h: TestControlPlane, service: string): Promise<TestAgent> {
  const a = await startTestAgent(t, h, { service, api: true })
  await until(() => a.agent.status().controlPlane.state === 'connected', `${service} to connect`)
  return a
}

// One control plane and two services shared by the tests that do not break them:
// 'sealer' may encrypt (and make data keys), 'opener' may decrypt.
const h = await startTestControlPlane(t)
await createKey(h, 'records', 'aead', { sealer: ['encrypt', 'generate-data-key'], opener: ['decrypt'] })
await createKey(h, 'archive', 'aead', { sealer: ['encrypt', 'decrypt'] })
await createKey(h, 'partner', 'x25519', { opener: ['decrypt'] })
const sealer = await connectedAgent(t, h, 'sealer')
const opener = await connectedAgent(t, h, 'opener')
/** Every secret the tests handle (plaintexts, data keys, shared secrets, context values), in the forms a log could show. */
const secrets = new Set<string>()
function secret(text: string): string {
  secrets.add(text)
  secrets.add(b64(text))
  return text
}
function secretBytes(base64: string): void {
  const buf = Buffer.from(base64, 'base64')
  for (const enc of ['base64', 'hex', 'base64url'] as const) secrets.add(buf.toString(enc))
}

t.test('separate grants: one service encrypts, another decrypts, and neither can do the other half', async (t) => {
  const plaintext = secret(`card 4111-1111-1111-1111 ${randomBytes(6).toString('hex')}`)
  const sealed = await call(sealer, '/v1/encrypt', { key: 'records', plaintext: b64(plaintext) })
  t.equal(sealed.status, 200)
  t.match(sealed.body, { ciphertext: /^km1:records:1:/, key: 'records', version: 1 })

  const opened = await call(opener, '/v1/decrypt', { ciphertext: sealed.body.ciphertext })
  t.equal(opened.status, 200)
  t.match(opened.body, { key: 'records', version: 1 })
  t.equal(unb64(opened.body.plaintext), plaintext, 'the other service reads the plaintext back')

  const sealerOpens = await call(sealer, '/v1/decrypt', { ciphertext: sealed.body.ciphertext })
  t.equal(sealerOpens.status, 403, 'the sealer may not decrypt')
  t.equal(sealerOpens.body.error.code, 'CP_ERR_FORBIDDEN', "the control plane's code reaches the caller")
  t.match(sealerOpens.body.error.message, /sealer/, "with the control plane's reason")
  const openerSeals = await call(opener, '/v1/encrypt', { key: 'records', plaintext: b64('x') })
  t.equal(openerSeals.status, 403, 'the opener may not encrypt')
  t.equal(openerSeals.body.error.code, 'CP_ERR_FORBIDDEN')
  const unknown = await call(sealer, '/v1/encrypt', { key: 'no-such-key', plaintext: b64('x') })
  t.equal(unknown.status, 404)
  t.equal(unknown.body.error.code, 'CP_ERR_KEY_NOT_FOUND')
  const garbage = await call(opener, '/v1/decrypt', { ciphertext: 'km1:records:1:not-a-body' })
  t.equal(garbage.status, 400)
  t.equal(garbage.body.error.code, 'PROTO_ERR_CIPHERTEXT_FORMAT')
})

t.test('a ciphertext opens only with the context it was sealed with', async (t) => {
  const plaintext = secret(`salary ${randomBytes(6).toString('hex')}`)
  const context = { tenant: secret(`acme-${randomBytes(4).toString('hex')}`), table: 'payroll' }
  const sealed = await call(sealer, '/v1/encrypt', { key: 'records', plaintext: b64(plaintext), context })
  t.equal(sealed.status, 200)
  for (const [what, other] of [
    ['another context', { ...context, tenant: 'globex' }],
    ['no context', undefined],
    ['an extra entry', { ...context, extra: '1' }],
  ] as const) {
    const r = await call(opener, '/v1/decrypt', { ciphertext: sealed.body.ciphertext, ...(other ? { context: other } : {}) })
    t.equal(r.status, 400, what)
    t.equal(r.body.error.code, 'CP_ERR_DECRYPT', what)
    t.notOk('plaintext' in r.body, `${what}: no plaintext`)
  }
  const ok = await call(opener, '/v1/decrypt', { ciphertext: sealed.body.ciphertext, context: { table: 'payroll', tenant: context.tenant } })
  t.equal(unb64(ok.body.plaintext), plaintext, 'the same context (in any order) opens it')
})

t.test('a batch of 100 with a bad item in the middle answers every item, in order', async (t) => {
  const texts = Array.from({ length: 100 }, (_, i) => secret(`item ${i} ${randomBytes(4).toString('hex')}`))
  const items: unknown[] = texts.map((p, i) => ({ key: 'records', plaintext: b64(p), context: { row: String(i) } }))
  items[50] = { key: 'records', plaintext: 'not base64!' }
  const sealed = await call(sealer, '/v1/encrypt', { items })
  t.equal(sealed.status, 200)
  t.equal(sealed.body.items.length, 100)
  t.match(sealed.body.items[50], { ok: false, error: { code: 'AGENT_ERR_BAD_REQUEST', message: /items\[50\]\.plaintext/ } })
  const good = sealed.body.items.filter((r: any, i: number) => i !== 50 && r.ok === true && /^km1:records:1:/.test(r.ciphertext))
  t.equal(good.length, 99, 'every other item is sealed')

  // Open them all, one with the wrong context and one naming an unknown key.
  const open: unknown[] = sealed.body.items.map((r: any, i: number) => (r.ok ? { ciphertext: r.ciphertext, context: { row: String(i) } } : { ciphertext: 'km1:nope:1:AAAA' }))
  open[30] = { ciphertext: sealed.body.items[30].ciphertext, context: { row: '31' } }
  const opened = await call(opener, '/v1/decrypt', { items: open })
  t.equal(opened.status, 200)
  t.match(opened.body.items[30], { ok: false, error: { code: 'CP_ERR_DECRYPT' } })
  t.match(opened.body.items[50], { ok: false, error: { code: /^(?:PROTO|CP)_ERR_/ } })
  let same = 0
  opened.body.items.forEach((r: any, i: number) => {
    if (r.ok && unb64(r.plaintext) === texts[i]) same++
  })
  t.equal(same, 98, 'every other item opens to its own plaintext, in order')

  const refused = await call(sealer, '/v1/decrypt', { items: [{ ciphertext: sealed.body.items[0].ciphertext, context: { row: '0' } }] })
  t.match(refused.body.items, [{ ok: false, error: { code: 'CP_ERR_FORBIDDEN' } }], "an item keeps the control plane's code")
})

t.test('rewrap moves a ciphertext to the new primary after rotation, never showing the plaintext', async (t) => {
  const plaintext = secret(`ledger ${randomBytes(6).toString('hex')}`)
  const v1 = await call(sealer, '/v1/encrypt', { key: 'archive', plaintext: b64(plaintext), context: { kind: 'ledger' } })
  t.match(v1.body, { version: 1 })
  t.equal((await h.api('POST', '/v1/keys/archive/rotate')).status, 200)

  const moved = await call(sealer, '/v1/rewrap', { ciphertext: v1.body.ciphertext, context: { kind: 'ledger' } })
  t.equal(moved.status, 200)
  t.match(moved.body, { ciphertext: /^km1:archive:2:/, key: 'archive', version: 2 })
  t.same(Object.keys(moved.body).sort(), ['ciphertext', 'key', 'version'], 'no plaintext in the answer')
  for (const c of [v1.body.ciphertext, moved.body.ciphertext]) {
    const r = await call(sealer, '/v1/decrypt', { ciphertext: c, context: { kind: 'ledger' } })
    t.equal(unb64(r.body.plaintext), plaintext, 'old and rewrapped ciphertexts both open')
  }
  const denied = await call(opener, '/v1/rewrap', { ciphertext: v1.body.ciphertext, context: { kind: 'ledger' } })
  t.equal(denied.body.error?.code, 'CP_ERR_FORBIDDEN', 'rewrap needs the grants')
})

t.test('datakey returns a fresh data key with its wrapped form, or the wrapped form only', async (t) => {
  const context = { file: secret(`f-${randomBytes(4).toString('hex')}`) }
  const full = await call(sealer, '/v1/datakey', { key: 'records', context })
  t.equal(full.status, 200)
  t.match(full.body, { ciphertext: /^km1:records:1:/, plaintext: String, key: 'records', version: 1 })
  secretBytes(full.body.plaintext)
  t.equal(Buffer.from(full.body.plaintext, 'base64').length, 32, 'a 32-byte key by default')
  const unwrapped = await call(opener, '/v1/decrypt', { ciphertext: full.body.ciphertext, context })
  t.equal(unwrapped.body.plaintext, full.body.plaintext, 'a decrypt grant unwraps the same key')

  const wrapped = await call(sealer, '/v1/datakey', { key: 'records', context, wrappedOnly: true, bytes: 16 })
  t.equal(wrapped.status, 200)
  t.notOk('plaintext' in wrapped.body, 'wrappedOnly returns no plaintext')
  const inner = await call(opener, '/v1/decrypt', { ciphertext: wrapped.body.ciphertext, context })
  secretBytes(inner.body.plaintext)
  t.equal(Buffer.from(inner.body.plaintext, 'base64').length, 16, 'bytes sets the length')

  const batch = await call(sealer, '/v1/datakey', { items: [{ key: 'records', wrappedOnly: true }, { key: 'records', bytes: 8 }] })
  t.match(batch.body.items, [{ ok: true, ciphertext: /^km1:/ }, { ok: false, error: { code: 'AGENT_ERR_BAD_REQUEST', message: /items\[1\]\.bytes/ } }])
  t.equal((await call(opener, '/v1/datakey', { key: 'records' })).body.error?.code, 'CP_ERR_FORBIDDEN', 'data keys need generate-data-key')
})

t.test('dropopen answers the chunk key of an x25519 drop addressed to this service, and nothing raw', async (t) => {
  const pub = parsePublicKey((await h.api('GET', '/v1/keys/partner/public')).body.publicKey)
  const drop = x25519DropHeader(nodeSuite, { recipient: 'opener', key: 'partner', keyVersion: 1, recipientPublic: pub })
  const expected = Buffer.from(dropChunkKey(nodeSuite, drop.headerBytes, drop.ee).key).toString('base64')
  secretBytes(expected)
  const r = await call(opener, '/v1/dropopen', { header: b64(drop.headerBytes) })
  t.equal(r.status, 200)
  t.match(r.body, { key: 'partner', version: 1 })
  t.equal(r.body.chunkKey, expected, 'the chunk key of that header')
  t.notOk('secret' in r.body, 'no shared secret')
  t.equal((await call(sealer, '/v1/dropopen', { header: b64(drop.headerBytes) })).body.error?.code, 'CP_ERR_FORBIDDEN')
  const noHeader = await call(opener, '/v1/dropopen', { key: 'partner' })
  t.equal(noHeader.status, 400)
  t.match(noHeader.body.error, { code: 'AGENT_ERR_BAD_REQUEST', message: /key: unknown field/ })
  t.equal((await call(opener, '/v1/agree', { key: 'partner', publicKey: b64(drop.header.ephemeralPublic as Uint8Array) })).status, 404, 'the raw agreement route is gone')
  const low = x25519DropHeader(nodeSuite, { recipient: 'opener', key: 'partner', keyVersion: 1, recipientPublic: pub, ephemeralPublic: new Uint8Array(32) })
  t.equal((await call(opener, '/v1/dropopen', { header: b64(low.headerBytes) })).body.error?.code, 'CP_ERR_PUBLIC_KEY')
})

t.test('limits and malformed bodies are refused with a code naming the field', async (t) => {
  const max = randomBytes(MAX_KMS_PLAINTEXT)
  const atLimit = await call(sealer, '/v1/encrypt', { key: 'archive', plaintext: max.toString('base64') })
  t.equal(atLimit.status, 200, `exactly ${MAX_KMS_PLAINTEXT} bytes is accepted`)
  const back = await call(sealer, '/v1/decrypt', { ciphertext: atLimit.body.ciphertext })
  t.ok(Buffer.from(back.body.plaintext, 'base64').equals(max), 'and opens again')

  const over = await call(sealer, '/v1/encrypt', { key: 'archive', plaintext: randomBytes(MAX_KMS_PLAINTEXT + 1).toString('base64') })
  t.equal(over.status, 413)
  t.match(over.body.error, { code: 'AGENT_ERR_TOO_LARGE', message: new RegExp(`plaintext: at most ${MAX_KMS_PLAINTEXT} bytes`) })
  const longText = await call(opener, '/v1/decrypt', { ciphertext: 'k'.repeat(50_000) })
  t.equal(longText.status, 413)
  const tooMany = await call(sealer, '/v1/encrypt', { items: Array.from({ length: 1001 }, () => ({ key: 'archive', plaintext: '' })) })
  t.equal(tooMany.status, 413)
  t.match(tooMany.body.error, { code: 'AGENT_ERR_TOO_LARGE', message: /at most 1000 items/ })

  const cases: [string, unknown, RegExp][] = [
    ['non-canonical base64', { key: 'archive', plaintext: 'aGk' }, /plaintext: expected canonical base64/],
    ['a missing key', { plaintext: b64('x') }, /key: missing/],
    ['an unknown field', { key: 'archive', plaintext: b64('x'), colour: 'red' }, /colour: unknown field/],
    ['a bad key name', { key: 'Bad Name!', plaintext: b64('x') }, /key:/],
    ['a context that is not an object', { key: 'archive', plaintext: b64('x'), context: 'tenant=1' }, /context: expected an object/],
    ['a context value that is not a string', { key: 'archive', plaintext: b64('x'), context: { n: 1 } }, /context\{value\}/],
    ['an array body', [1, 2], /body: expected a JSON object/],
    ['items with other fields', { items: [], key: 'archive' }, /only items/],
    ['items that are not an array', { items: {} }, /items: expected an array/],
  ]
  for (const [what, body, message] of cases) {
    const r = await call(sealer, '/v1/encrypt', body)
    t.equal(r.status, 400, what)
    t.match(r.body.error, { code: 'AGENT_ERR_BAD_REQUEST', message }, what)
  }
  t.same((await call(sealer, '/v1/encrypt', { items: [] })).body, { items: [] }, 'an empty batch answers an empty list')
})

t.test('no log line of either agent or the control plane holds a plaintext, data key, secret or context', async (t) => {
  const logs = [...sealer.logs, ...opener.logs, ...h.logs].join('\n')
  t.ok(secrets.size > 100, 'the tests above handled secrets')
  t.ok(logs.includes('KMS call answered') && logs.includes('KMS batch answered'), 'the data API logs its calls')
  const found = [...secrets].filter((s) => s.length >= 8 && logs.includes(s))
  t.same(found, [], 'no secret in any log line')
  t.ok(sealer.logs.some((l) => l.includes('"key":"[Redacted]"')), 'the agent redacts its own lines, though the kit hands it a plain pino logger')
})

t.test('a control plane that is gone answers 503 at once; a silent one times out with 504', async (t) => {
  // A KMS service that never answers, so requests stay in flight.
  const held: unknown[] = []
  let batches = 0
  const never = () => new Promise(() => {})
  const silent = {
    maxInFlightPerAgent: 100,
    handle: (_c: unknown, r: unknown) => (held.push(r), never()),
    handleBatch: (_c: unknown, b: { items: unknown[] }) => (batches++, held.push(...b.items), never()),
    busy: () => ({}),
  }
  const h2 = await startTestControlPlane(t, { kms: () => silent as unknown as KmsService })
  await createKey(h2, 'k', 'aead', { svc: ['encrypt'] })
  const a = await connectedAgent(t, h2, 'svc')

  const timedOut = call(a, '/v1/encrypt', { key: 'k', plaintext: b64('wait') })
  await until(() => held.length === 1, 'the request to reach the control plane')
  h2.clock.advance(10 * SECOND)
  const late = await timedOut
  t.equal(late.status, 504)
  t.equal(late.body.error.code, 'AGENT_ERR_KMS_TIMEOUT')

  const inFlight = call(a, '/v1/encrypt', { items: [{ key: 'k', plaintext: b64('a') }, { key: 'k', plaintext: b64('b') }] })
  await until(() => held.length === 3, 'both items to reach the control plane')
  t.equal(batches, 1, 'the items of one batch call travel as one kms.batch')
  // The agent runs on h2's fake clock, which stays where it is from here on: the
  // answers below cannot come from a timeout, only from the session's end.
  const at = h2.clock.now()
  await h2.cp.close()
  const dropped = await inFlight
  t.match(dropped.body.items, [{ ok: false, error: { code: 'AGENT_ERR_CP_UNREACHABLE' } }, { ok: false, error: { code: 'AGENT_ERR_CP_UNREACHABLE' } }], 'requests in flight fail when the session drops')

  await until(() => a.agent.status().controlPlane.state !== 'connected', 'the agent to notice')
  const single = await call(a, '/v1/encrypt', { key: 'k', plaintext: b64('x') })
  t.equal(single.status, 503)
  t.equal(single.body.error.code, 'AGENT_ERR_CP_UNREACHABLE')
  const batch = await call(a, '/v1/decrypt', { items: [{ ciphertext: 'km1:k:1:AAAA' }] })
  t.equal(batch.status, 503, 'a batch is refused whole')
  t.equal(h2.clock.now(), at, 'without waiting for a timeout: no time passed')
})

// ---- the multiplexer on its own -------------------------------------------------

function mux(o: { maxInFlight?: number; maxPending?: number; defer?: (send: () => void) => void } = {}) {
  const clock = new FakeClock()
  const sent: Array<KmsRequestMessage | KmsBatchMessage> = []
  // Sent at once unless a test gathers the turn itself.
  const m = new KmsMultiplexer({ clock, logger: pino({ level: 'silent' }), timeoutMs: 10 * SECOND, defer: (send) => send(), ...o })
  // A copy through the codec, as the wire would carry it (and before the multiplexer wipes the plaintext).
  m.attach((msg) => void sent.push(decodeMessage(encodeMessage(msg)) as KmsRequestMessage | KmsBatchMessage))
  return { clock, sent, m }
}
const single = (sent: unknown[], i: number): KmsRequestMessage => sent[i] as KmsRequestMessage

const settle = <T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; code: string; error: KeymeshError }> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (e: unknown) => ({ ok: false as const, code: isKeymeshError(e) ? e.code : 'untyped', error: e as KeymeshError }),
  )

t.test('multiplexer: answers match requests by id, in any order, and the window holds the rest', async (t) => {
  const { sent, m } = mux({ maxInFlight: 2 })
  const plaintext = new Uint8Array(Buffer.from('wipe me'))
  const p1 = settle(m.request({ op: 'encrypt', key: 'k', plaintext }))
  const p2 = settle(m.request({ op: 'decrypt', ciphertext: 'km1:k:1:x' }))
  const p3 = settle(m.request({ op: 'datakey', key: 'k' }))
  t.equal(sent.length, 2, 'two on the wire, the third waits')
  t.same([...plaintext], new Array(7).fill(0), 'the plaintext is wiped once sent')
  t.equal(Buffer.from(single(sent, 0).plaintext ?? []).toString(), 'wipe me', 'after it was encoded')
  t.same(sent.map((x) => x.type), ['kms.request', 'kms.request'])
  const [a, b] = sent as [KmsRequestMessage, KmsRequestMessage]
  t.ok(b.id > a.id, 'ids grow')
  m.onResponse({ type: 'kms.response', id: b.id, ok: false, error: { code: 'CP_ERR_DECRYPT', message: 'ciphertext does not open' } })
  t.equal(sent.length, 3, 'an answer frees a slot for the waiting request')
  const result: KmsResult = { ciphertext: 'km1:k:1:y', key: 'k', version: 1 }
  m.onResponse({ type: 'kms.response', id: a.id, ok: true, result })
  m.onResponse({ type: 'kms.response', id: single(sent, 2).id, ok: false, error: { code: 'CP_ERR_SOMETHING_NEW', message: 'new' } })
  t.match(await p1, { ok: true, value: result })
  const r2 = await p2
  t.match(r2, { ok: false, code: 'CP_ERR_DECRYPT' })
  if (!r2.ok) t.match(r2.error, { status: 400, message: 'ciphertext does not open' }, "the control plane's code, status and message")
  const r3 = await p3
  if (!r3.ok) t.equal(r3.error.status, 502, 'a code this agent does not know answers 502')
  t.equal(m.pending, 0)
})

t.test('multiplexer: deadline, bound, cancellation, session end and close', async (t) => {
  const { clock, sent, m } = mux({ maxInFlight: 1, maxPending: 3 })
  const first = settle(m.request({ op: 'datakey', key: 'k' }))
  clock.advance(5 * SECOND)
  const second = settle(m.request({ op: 'datakey', key: 'k' }))
  const ac = new AbortController()
  const third = settle(m.request({ op: 'datakey', key: 'k' }, ac.signal))
  t.match(await settle(m.request({ op: 'datakey', key: 'k' })), { ok: false, code: 'AGENT_ERR_BUSY' }, 'beyond maxPending: AGENT_ERR_BUSY')
  clock.advance(5 * SECOND)
  t.match(await first, { ok: false, code: 'AGENT_ERR_KMS_TIMEOUT' }, 'no answer within the timeout')
  t.equal(sent.length, 1, 'the timed-out request still holds its slot')
  t.equal(m.inFlight, 1)
  ac.abort()
  m.onResponse({ type: 'kms.response', id: single(sent, 0).id, ok: true, result: { ciphertext: 'km1:k:1:z' } })
  t.equal(sent.length, 2, 'its late answer is dropped and frees the slot for the next')
  m.onResponse({ type: 'kms.response', id: single(sent, 1).id, ok: true, result: { ciphertext: 'km1:k:1:w' } })
  t.match(await second, { ok: true, value: { ciphertext: 'km1:k:1:w' } })
  t.match(await third, { ok: false, code: 'AGENT_ERR_CANCELLED' }, 'an aborted request still waiting is never sent')
  t.equal(sent.length, 2)
  t.equal(m.pending, 0)

  const fifth = settle(m.request({ op: 'datakey', key: 'k' }))
  t.equal(sent.length, 3)
  m.detach()
  t.match(await fifth, { ok: false, code: 'AGENT_ERR_CP_UNREACHABLE' }, 'the session end fails what is in flight')
  t.match(await settle(m.request({ op: 'datakey', key: 'k' })), { ok: false, code: 'AGENT_ERR_CP_UNREACHABLE' }, 'and new requests fail fast')
  t.equal(clock.pendingTimers, 0, 'no timer left behind')
  m.attach(() => {})
  const last = settle(m.request({ op: 'datakey', key: 'k' }))
  m.close()
  t.match(await last, { ok: false, code: 'AGENT_ERR_CLOSED' })
  t.match(await settle(m.request({ op: 'datakey', key: 'k' })), { ok: false, code: 'AGENT_ERR_CLOSED' })
})

t.test('multiplexer: requests released together travel as kms.batch messages, answered in parts', async (t) => {
  const { sent, m } = mux({ maxInFlight: 3 })
  const texts = ['one', 'two', 'three', 'four', 'five', 'six']
  const ps = m.requestBatch(texts.map((x) => ({ op: 'encrypt' as const, key: 'k', plaintext: new Uint8Array(Buffer.from(x)) }))).map(settle)
  t.equal(sent.length, 1, 'the window lets three go, in one message')
  const first = sent[0] as KmsBatchMessage
  t.equal(first.type, 'kms.batch')
  t.same(first.items.map((i) => Buffer.from(i.plaintext ?? []).toString()), ['one', 'two', 'three'], 'in order')
  t.equal(new Set([first.id, ...first.items.map((i) => i.id)]).size, 4, 'the batch and each item have their own id')
  const [i1, i2, i3] = first.items as [KmsRequestMessage, KmsRequestMessage, KmsRequestMessage]

  // The first part answers two items (out of order): two slots free, the last two go together.
  m.onBatchResponse({ type: 'kms.batch.response', id: first.id, last: false, items: [
    { id: i2.id, ok: false, error: { code: 'CP_ERR_FORBIDDEN', message: 'no encrypt grant' } },
    { id: i1.id, ok: true, result: { ciphertext: 'km1:k:1:a' } },
  ] })
  t.equal(sent.length, 2)
  const second = sent[1] as KmsBatchMessage
  t.same(second.items.map((i) => Buffer.from(i.plaintext ?? []).toString()), ['four', 'five'], 'the sixth waits for room')
  m.onBatchResponse({ type: 'kms.batch.response', id: first.id, last: true, items: [{ id: i3.id, ok: true, result: { ciphertext: 'km1:k:1:c' } }] })
  t.equal(sent.length, 3, 'a single freed slot sends the next request alone')
  t.equal(sent[2]?.type, 'kms.request')
  t.equal(Buffer.from(single(sent, 2).plaintext ?? []).toString(), 'six')
  m.onResponse({ type: 'kms.response', id: single(sent, 2).id, ok: true, result: { ciphertext: 'km1:k:1:e' } })
  m.onBatchResponse({ type: 'kms.batch.response', id: second.id, last: true, items: [
    { id: (second.items[0] as KmsRequestMessage).id, ok: true, result: { ciphertext: 'km1:k:1:d' } },
    { id: (second.items[1] as KmsRequestMessage).id, ok: true, result: { ciphertext: 'km1:k:1:x' } },
  ] })
  const results = await Promise.all(ps)
  t.match(results, [
    { ok: true, value: { ciphertext: 'km1:k:1:a' } },
    { ok: false, code: 'CP_ERR_FORBIDDEN' },
    { ok: true, value: { ciphertext: 'km1:k:1:c' } },
    { ok: true, value: { ciphertext: 'km1:k:1:d' } },
    { ok: true, value: { ciphertext: 'km1:k:1:x' } },
    { ok: true, value: { ciphertext: 'km1:k:1:e' } },
  ])
  t.equal(m.pending, 0)
  t.equal(m.inFlight, 0)
})

t.test('multiplexer: single requests made in one turn travel together in one kms.batch', async (t) => {
  const turns: Array<() => void> = []
  const { sent, m } = mux({ defer: (send) => void turns.push(send) })
  const ps = ['a', 'b', 'c'].map((x) => settle(m.request({ op: 'encrypt', key: 'k', plaintext: new Uint8Array(Buffer.from(x)) })))
  t.equal(sent.length, 0, 'nothing goes before the turn ends')
  t.equal(turns.length, 1, 'one deferred send for the whole turn')
  turns[0]?.()
  t.equal(sent.length, 1)
  const batch = sent[0] as KmsBatchMessage
  t.equal(batch.type, 'kms.batch')
  t.same(batch.items.map((i) => Buffer.from(i.plaintext ?? []).toString()), ['a', 'b', 'c'], 'in the order made')
  m.onBatchResponse({ type: 'kms.batch.response', id: batch.id, last: true, items: batch.items.map((i) => ({ id: i.id, ok: true, result: { ciphertext: `km1:k:1:${i.id}` } })) })
  t.same((await Promise.all(ps)).map((r) => r.ok), [true, true, true], 'each request gets its own answer')

  const late = settle(m.request({ op: 'datakey', key: 'k' }))
  m.close()
  t.equal(turns.length, 2)
  turns[1]?.()
  t.equal(sent.length, 1, 'a turn that ends after close() sends nothing')
  t.match(await late, { ok: false, code: 'AGENT_ERR_CLOSED' })
})

t.test('multiplexer: a request the session cannot carry fails alone', async (t) => {
  const clock = new FakeClock()
  const m = new KmsMultiplexer({ clock, logger: pino({ level: 'silent' }) })
  let calls = 0
  m.attach(() => {
    calls++
    throw new Error('socket gone')
  })
  t.match(await settle(m.request({ op: 'datakey', key: 'k' })), { ok: false, code: 'AGENT_ERR_CP_UNREACHABLE' })
  t.equal(calls, 1)
  t.equal(m.inFlight, 0, 'no slot is held')
})

t.test("the statuses of the control plane's KMS codes match its error table", async (t) => {
  for (const [code, [status, closeCode]] of Object.entries(CP_KMS_STATUS)) {
    const spec = (CP_ERRORS as Record<string, { status: number; closeCode: number }>)[code]
    t.ok(spec, `${code} exists in the control plane's table`)
    t.same([status, closeCode], [spec?.status, spec?.closeCode], code)
  }
  t.match(remoteError('PROTO_ERR_CIPHERTEXT_FORMAT', 'bad'), { code: 'PROTO_ERR_CIPHERTEXT_FORMAT', status: 400, message: 'bad' })
  t.match(remoteError('toString', 'x'), { status: 502 }, 'a name on the prototype is not a table entry')
})
