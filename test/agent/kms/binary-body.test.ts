// Binary batch bodies of the data API (agent/src/kms/binary-body.ts): through a
// real agent and control plane, an octet-stream batch gives what the JSON batch
// gives item for item (results, codes, the fields named as the API names them);
// a malformed body is refused whole with AGENT_ERR_BAD_FRAME, a big one within
// the route's limit; and the decoder is strict on its own.
import t from 'tap'
import { randomBytes } from 'node:crypto'

import { decodeBinaryAnswers, decodeBinaryBatch, encodeBinaryAnswers, encodeBinaryBatch, type BinaryBatchItem } from '../../../agent/src/kms/binary-body.js'
import { isKeymeshError, MAX_KMS_PLAINTEXT } from '../../../protocol/src/index.js'
import { startTestAgent, type TestAgent } from '../../kit/agent.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { createKey } from '../../kit/kms.js'
import { until } from '../../kit/wait.js'

const SECRET = 'BINARY-BODY-SECRET'

async function post(a: TestAgent, path: string, body: Uint8Array | string, type: string): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const res = await fetch(`${a.agent.apiUrl}${path}`, { method: 'POST', headers: { 'content-type': type, ...a.apiHeaders }, body })
  return { status: res.status, type: res.headers.get('content-type'), bytes: Buffer.from(await res.arrayBuffer()) }
}

t.test('through a real agent, a binary batch answers what the JSON batch answers, item for item', async (t) => {
  const h = await startTestControlPlane(t)
  await createKey(h, 'k', 'aead', { app: ['encrypt', 'decrypt'] })
  await createKey(h, 'locked', 'aead', { other: ['encrypt'] })
  await createKey(h, 'mac', 'hmac-sha256', { app: ['hmac'] })
  const a = await startTestAgent(t, h, { service: 'app', api: true })
  await until(() => a.agent.status().controlPlane.state === 'connected', 'the agent to connect')

  const plaintexts = [Buffer.from(SECRET), Buffer.alloc(0), randomBytes(1024), randomBytes(MAX_KMS_PLAINTEXT)]
  const items: BinaryBatchItem[] = [
    ...plaintexts.map((p) => ({ key: 'k', data: new Uint8Array(p) })),
    { key: 'locked', data: new Uint8Array(3) },
    { key: 'nope', data: new Uint8Array(3) },
    { key: 'bad key', data: new Uint8Array(3) },
    { data: new Uint8Array(3) },
    { key: 'k', data: new Uint8Array(3), context: { tenant: 't1' } },
    { key: 'k', data: new Uint8Array(MAX_KMS_PLAINTEXT + 1) },
    { key: 'k', text: 'km1:k:1:AAAA' },
  ]
  const sealed = await post(a, '/v1/encrypt', encodeBinaryBatch(items), 'application/octet-stream')
  t.equal(sealed.status, 200)
  t.equal(sealed.type, 'application/octet-stream')
  const results = decodeBinaryAnswers(sealed.bytes)
  const codes = results.map((r) => (r.ok ? 'ok' : r.error.code))
  t.same(codes, ['ok', 'ok', 'ok', 'ok', 'CP_ERR_FORBIDDEN', 'CP_ERR_KEY_NOT_FOUND', 'AGENT_ERR_BAD_REQUEST', 'AGENT_ERR_BAD_REQUEST', 'ok', 'AGENT_ERR_TOO_LARGE', 'AGENT_ERR_BAD_REQUEST'])
  t.notOk(sealed.bytes.includes(Buffer.from(SECRET)), 'no plaintext in the answer')

  // The same items as JSON: the same outcomes and messages.
  const jsonItems = items.map((i) => ({
    ...(i.key !== undefined ? { key: i.key } : {}),
    ...(i.data !== undefined ? { plaintext: Buffer.from(i.data).toString('base64') } : {}),
    ...(i.text !== undefined ? { ciphertext: i.text } : {}),
    ...(i.context !== undefined ? { context: i.context } : {}),
  }))
  const viaJson = JSON.parse((await post(a, '/v1/encrypt', JSON.stringify({ items: jsonItems }), 'application/json')).bytes.toString()) as { items: Array<{ ok: boolean; error?: { code: string; message: string }; key?: string; version?: number }> }
  t.same(results.map((r) => (r.ok ? { ok: true } : { ok: false, error: r.error })), viaJson.items.map((r) => (r.ok ? { ok: true } : { ok: false, error: r.error })), 'the same outcomes, codes and messages as JSON')
  t.same(results.filter((r) => r.ok).map((r) => r.ok && [r.key, r.version]), viaJson.items.filter((r) => r.ok).map((r) => [r.key, r.version]), 'the same keys and versions')

  // Decrypt them back, in binary: the same bytes.
  const cts = results.slice(0, 4).map((r) => (r.ok ? (r.text as string) : ''))
  const opened = decodeBinaryAnswers((await post(a, '/v1/decrypt', encodeBinaryBatch([...cts.map((text) => ({ text })), { text: cts[0] as string, context: { tenant: 'x' } }, { text: 'not km1' }]), 'application/octet-stream')).bytes)
  plaintexts.forEach((p, i) => {
    const r = opened[i]
    t.ok(r?.ok && Buffer.from(r.data ?? []).equals(p), `item ${i} opens to its plaintext`)
  })
  t.match(opened.slice(4), [{ ok: false, error: { code: 'CP_ERR_DECRYPT' } }, { ok: false, error: { code: 'AGENT_ERR_BAD_REQUEST', message: /items\[5\]\.ciphertext/ } }])

  // The signature routes' names in errors; the mac comes back as text.
  const macs = decodeBinaryAnswers((await post(a, '/v1/hmac', encodeBinaryBatch([{ key: 'mac', data: new Uint8Array(4) }, { key: 'mac' }]), 'application/octet-stream')).bytes)
  t.match(macs, [{ ok: true, text: /^km1m:mac:1:/ }, { ok: false, error: { code: 'AGENT_ERR_BAD_REQUEST', message: /items\[1\]\.message: missing/ } }])

  // Whole-body refusals are JSON errors.
  const broken = await post(a, '/v1/encrypt', encodeBinaryBatch([{ key: 'k', data: new Uint8Array(8) }]).subarray(0, 10), 'application/octet-stream')
  t.equal(broken.status, 400)
  t.match(JSON.parse(broken.bytes.toString()), { error: { code: 'AGENT_ERR_BAD_FRAME' } })
  const other = await post(a, '/v1/status', new Uint8Array([1]), 'application/octet-stream')
  t.not(other.status, 200, 'routes without binary bodies refuse them')
  const empty = decodeBinaryAnswers((await post(a, '/v1/encrypt', encodeBinaryBatch([]), 'application/octet-stream')).bytes)
  t.same(empty, [], 'an empty batch answers an empty list')
  t.notOk(a.logs.some((l: string) => l.includes(SECRET)) || h.logs.some((l) => l.includes(SECRET)), 'no plaintext in the logs')
})

t.test('the decoder checks every length, bit and count, and refuses with AGENT_ERR_BAD_FRAME', async (t) => {
  const body = encodeBinaryBatch([{ key: 'k', data: new Uint8Array([1, 2, 3]) }, { text: 'km1:k:1:AAAA', context: { a: 'b' } }])
  t.equal(decodeBinaryBatch('decrypt', new Uint8Array(body)).length, 2)
  const code = (b: Uint8Array, op: 'encrypt' | 'decrypt' = 'encrypt'): string => {
    try {
      decodeBinaryBatch(op, b)
      return 'ok'
    } catch (err) {
      return isKeymeshError(err) ? err.code : `not typed: ${String(err)}`
    }
  }
  let refused = 0
  for (let n = 0; n < body.length; n++) if (code(body.subarray(0, n)) === 'AGENT_ERR_BAD_FRAME') refused++
  t.equal(refused, body.length, 'every truncation')
  const at = (i: number, v: number[]): Uint8Array => {
    const b = Buffer.from(body)
    b.set(v, i)
    return b
  }
  t.equal(code(at(0, [0xb1])), 'AGENT_ERR_BAD_FRAME', 'magic')
  t.equal(code(at(1, [2])), 'AGENT_ERR_BAD_FRAME', 'version')
  t.equal(code(at(2, [0, 3])), 'AGENT_ERR_BAD_FRAME', 'a count past the items')
  t.equal(code(at(4, [0x40])), 'AGENT_ERR_BAD_FRAME', 'reserved field bits')
  t.equal(code(at(7, [0xff, 0xff, 0xff, 0xff])), 'AGENT_ERR_BAD_FRAME', 'a plaintext length past the end')
  t.equal(code(Buffer.concat([body, Buffer.from([0])])), 'AGENT_ERR_BAD_FRAME', 'a byte left over')
  t.equal(code(encodeBinaryBatch(Array.from({ length: 1001 }, () => ({ key: 'k', data: new Uint8Array(0) })))), 'AGENT_ERR_TOO_LARGE', 'over 1000 items')
  const many = encodeBinaryBatch([{ text: 'km1:k:1:AAAA', context: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`c${i}`, 'v'])) }])
  t.equal(code(many, 'decrypt'), 'AGENT_ERR_BAD_FRAME', 'more than 16 context entries')
  t.equal(code(encodeBinaryBatch([{ text: 'km1:k:1:AAAA', context: { a: 'x'.repeat(129) } }]), 'decrypt'), 'ok', 'a context value over the schema is the item\'s failure, not the body\'s')
  const items = decodeBinaryBatch('decrypt', encodeBinaryBatch([{ text: 'km1:k:1:AAAA', context: { a: 'x'.repeat(129) } }]))
  t.match(items, [{ ok: false, error: { code: 'AGENT_ERR_BAD_REQUEST', message: /items\[0\]\.context/ } }])
})

t.test('answers: each result in order, a missing field is AGENT_ERR_CP_PROTOCOL, plaintext wiped once written', async (t) => {
  const p = new Uint8Array([9, 9, 9])
  const body = encodeBinaryAnswers('decrypt', [
    { ok: true, result: { plaintext: p, key: 'k', version: 2 } },
    { ok: true, result: { key: 'k', version: 2 } },
  ])
  t.same([...p], [0, 0, 0], 'wiped')
  const out = decodeBinaryAnswers(body)
  t.match(out, [{ ok: true, key: 'k', version: 2 }, { ok: false, error: { code: 'AGENT_ERR_CP_PROTOCOL' } }])
  t.same([...((out[0] as { data: Uint8Array }).data)], [9, 9, 9])
})
