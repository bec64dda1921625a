// The data API's answers as written by agent/src/kms/routes.ts (its own JSON, not
// the server's JSON.stringify), against a fake backend: the same JSON for every
// result, whatever characters it holds; failures per item; plaintext wiped.
import t from 'tap'
import { pino } from 'pino'

import { answerFields, kmsRoutes, type KmsBackend } from '../../../agent/src/kms/routes.js'
import type { KmsRequest, KmsResult } from '../../../agent/src/kms/multiplexer.js'
import type { ApiResponse } from '../../../agent/src/api/routes.js'
import { agentError } from '../../../agent/src/errors.js'
import type { KmsOp } from '../../../protocol/src/index.js'

const logger = pino({ level: 'silent' })

/** A backend answering each request with `answer(req)` (a result, or an error to throw). */
function backend(answer: (req: KmsRequest) => KmsResult | Error): KmsBackend {
  const one = async (req: KmsRequest): Promise<KmsResult> => {
    const r = answer(req)
    if (r instanceof Error) throw r
    return r
  }
  return { connected: true, request: one, requestBatch: (reqs) => reqs.map(one) }
}

async function post(b: KmsBackend, op: KmsOp, body: unknown): Promise<{ res: ApiResponse; json: any }> {
  const route = kmsRoutes({ backend: b, logger }).find((r) => r.path === `/v1/${op}`)
  if (route === undefined) throw new Error(`no route for ${op}`)
  const res = await route.handler({ body, signal: new AbortController().signal })
  const raw = res.raw?.body
  const text = typeof raw === 'string' ? raw : Buffer.from(raw ?? []).toString('utf8')
  return { res, json: JSON.parse(text) }
}

t.test('answers are JSON of the result, whatever characters a ciphertext or key holds', async (t) => {
  const odd = ['km1:k:1:plain', 'quote " and backslash \\ in it', 'control \u0001\n', 'non-ASCII é 鍵 😀', '']
  for (const ciphertext of odd) {
    const b = backend(() => ({ ciphertext, key: 'k', version: 3 }))
    const single = await post(b, 'encrypt', { key: 'k', plaintext: 'AAAA' })
    t.equal(single.res.raw?.contentType, 'application/json; charset=utf-8')
    t.same(single.json, { ciphertext, key: 'k', version: 3 }, `single: ${JSON.stringify(ciphertext)}`)
    t.same(Object.keys(single.json), ['ciphertext', 'key', 'version'], 'in that order')
    const batch = await post(b, 'encrypt', { items: [{ key: 'k', plaintext: 'AAAA' }, { key: 'k', plaintext: '' }] })
    t.same(batch.json, { items: [{ ok: true, ciphertext, key: 'k', version: 3 }, { ok: true, ciphertext, key: 'k', version: 3 }] }, `batch: ${JSON.stringify(ciphertext)}`)
  }
  t.same((await post(backend(() => ({ ciphertext: 'c' })), 'encrypt', { items: [] })).json, { items: [] }, 'an empty batch')
  const noMeta = await post(backend(() => ({ ciphertext: 'c' })), 'rewrap', { ciphertext: 'km1:k:1:AAAA' })
  t.same(noMeta.json, { ciphertext: 'c' }, 'key and version only when the result has them')
})

t.test('each operation answers its fields; plaintext goes out as base64 and is wiped', async (t) => {
  const given: Uint8Array[] = []
  const bytes = (s: string): Uint8Array => {
    const b = new Uint8Array(Buffer.from(s))
    given.push(b)
    return b
  }
  const b = backend((req) => {
    switch (req.op) {
      case 'decrypt':
        return { plaintext: bytes('hello'), key: 'k', version: 1 }
      case 'dropopen':
        return { plaintext: bytes('chunk key'), key: 'x', version: 2 }
      case 'dropseal':
        return { plaintext: bytes('sender term'), key: 's', version: 3 }
      case 'datakey':
        return { ciphertext: 'km1:k:1:wrapped', plaintext: bytes('data key'), key: 'k', version: 1 }
      default:
        return { ciphertext: 'km1:k:1:x', key: 'k', version: 1 }
    }
  })
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  t.same((await post(b, 'decrypt', { ciphertext: 'km1:k:1:AAAA' })).json, { plaintext: b64('hello'), key: 'k', version: 1 })
  t.same((await post(b, 'dropopen', { header: Buffer.alloc(90, 9).toString('base64') })).json, { chunkKey: b64('chunk key'), key: 'x', version: 2 })
  t.same((await post(b, 'dropseal', { header: Buffer.alloc(90, 9).toString('base64') })).json, { senderTerm: b64('sender term'), key: 's', version: 3 })
  t.same((await post(b, 'datakey', { key: 'k' })).json, { ciphertext: 'km1:k:1:wrapped', plaintext: b64('data key'), key: 'k', version: 1 })
  t.same((await post(b, 'datakey', { key: 'k', wrappedOnly: true })).json, { ciphertext: 'km1:k:1:wrapped', key: 'k', version: 1 })
  t.same((await post(b, 'decrypt', { items: [{ ciphertext: 'km1:k:1:AAAA' }] })).json, { items: [{ ok: true, plaintext: b64('hello'), key: 'k', version: 1 }] })
  t.equal(given.length, 6)
  t.ok(given.every((g) => g.every((x) => x === 0)), 'every plaintext the backend gave is wiped')
})

t.test('a batch answers failed items in place: refused, malformed, or a result lacking its field', async (t) => {
  const b = backend((req) => {
    if (req.key === 'gone') return agentError('AGENT_ERR_CP_UNREACHABLE', 'the control session ended — déjà vu')
    if (req.key === 'bare') return { key: 'bare', version: 1 }
    if (req.key === 'odd') return new Error('not typed')
    return { ciphertext: 'km1:k:1:x', key: 'k', version: 1 }
  })
  const { json } = await post(b, 'encrypt', {
    items: [
      { key: 'k', plaintext: 'AAAA' },
      { key: 'gone', plaintext: 'AAAA' },
      { key: 'k', plaintext: 'AAA' },
      { key: 'bare', plaintext: 'AAAA' },
      { key: 'odd', plaintext: 'AAAA' },
      { key: 'k', plaintext: 'AAAA' },
    ],
  })
  t.same(json.items.map((i: { ok: boolean; error?: { code: string } }) => (i.ok ? 'ok' : i.error?.code)), [
    'ok',
    'AGENT_ERR_CP_UNREACHABLE',
    'AGENT_ERR_BAD_REQUEST',
    'AGENT_ERR_CP_PROTOCOL',
    'AGENT_ERR_INTERNAL',
    'ok',
  ])
  t.match(json.items[1].error.message, /déjà vu/, 'a message with non-ASCII text arrives whole')
  await t.rejects(post(b, 'encrypt', { key: 'bare', plaintext: 'AAAA' }), { code: 'AGENT_ERR_CP_PROTOCOL' }, 'a single call throws it')
})

t.test('answerFields refuses an unknown operation', async (t) => {
  const plaintext = new Uint8Array([1, 2])
  t.throws(() => answerFields('bogus' as KmsOp, { op: 'encrypt' } as KmsRequest, { plaintext }), { code: 'AGENT_ERR_INTERNAL' })
  t.same([...plaintext], [0, 0], 'and still wipes the plaintext')
})
