import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { chmodSync, mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'

import { ControlPlaneClient, ControlPlaneError, createClient, readTokenFile, resolveClientConfig } from '../../cli/client.js'

const dir = mkdtempSync(join(tmpdir(), 'keymesh-client-'))
const file = (name: string, content: string | Buffer) => { const p = join(dir, name); writeFileSync(p, content, { mode: 0o600 }); return p }

interface Seen { method: string; url: string; auth: string | undefined; ct: string | undefined; body: string }

async function serve(t: { teardown(fn: () => unknown): void }, answer: (req: IncomingMessage, res: ServerResponse, body: string) => void) {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += String(c) })
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, ct: req.headers['content-type'], body })
      answer(req, res, body)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}
const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

t.test('the --cp flag wins over KEYMESH_CP, and --token-file over KEYMESH_TOKEN_FILE', async (t) => {
  const env = { KEYMESH_CP: 'http://env:1', KEYMESH_TOKEN_FILE: '/env/token' }
  t.same(resolveClientConfig({ cp: 'http://flag:2/', tokenFile: '/flag/token' }, env), { baseUrl: 'http://flag:2', tokenFile: '/flag/token' })
  t.same(resolveClientConfig({}, env), { baseUrl: 'http://env:1', tokenFile: '/env/token' })
  t.same(resolveClientConfig({ cp: '', tokenFile: ' ' }, env), { baseUrl: 'http://env:1', tokenFile: '/env/token' }, 'empty flags count as absent')
  t.same(resolveClientConfig({ cp: 'https://cp.example/base/' }, {}), { baseUrl: 'https://cp.example/base', tokenFile: undefined })
})

t.test('a missing or malformed control plane URL is a usage error', async (t) => {
  t.throws(() => resolveClientConfig({}, {}), { code: 'CP_ERR_USAGE', message: /--cp URL or KEYMESH_CP/ })
  t.throws(() => resolveClientConfig({ cp: 'not a url' }, {}), { code: 'CP_ERR_USAGE', message: /is not a URL/ })
  t.throws(() => resolveClientConfig({ cp: 'ftp://x' }, {}), { code: 'CP_ERR_USAGE', message: /http:\/\/ or https:\/\// })
  t.throws(() => resolveClientConfig({ cp: 'http://u:pw@x' }, {}), { code: 'CP_ERR_USAGE', message: /credentials/ })
  t.throws(() => resolveClientConfig({ cp: 'http://x/?a=1' }, {}), { code: 'CP_ERR_USAGE', message: /query or fragment/ })
})

t.test('a token file is read and trimmed', async (t) => {
  t.equal(await readTokenFile(file('ok', '  kmt_abc123\n')), 'kmt_abc123')
})

t.test('token file problems name the file, never its content', async (t) => {
  const cases: Array<[string, RegExp]> = [
    [join(dir, 'missing'), /missing: no such file/],
    [file('empty', ''), /empty: file is empty/],
    [file('blank', ' \n\t\n'), /blank: file is empty/],
    [file('two', 'secret-one secret-two\n'), /two: does not hold a single token/],
    [file('big', 'x'.repeat(5000)), /big: too large to be a token/],
    [join(dir, 'ok', 'below'), /below: cannot be read/],
  ]
  mkdirSync(join(dir, 'adir'))
  cases.push([join(dir, 'adir'), /adir: is a directory/])
  for (const [path, message] of cases) {
    const err = await readTokenFile(path).catch((e: unknown) => e)
    t.match(err, { code: 'CP_ERR_TOKEN_FILE', message }, path)
    t.notMatch((err as Error).message, /secret-one|xxxx/, 'content not shown')
  }
})

t.test('a token file other users may read is refused, with the fix', async (t) => {
  const loose = join(dir, 'loose')
  writeFileSync(loose, 'kmt_abc123\n', { mode: 0o644 })
  chmodSync(loose, 0o644)
  const err = await readTokenFile(loose).catch((e: unknown) => e)
  t.match(err, { code: 'CP_ERR_TOKEN_FILE_MODE', message: new RegExp(`mode 0644\\); run chmod 600 ${loose}$`) })
  t.notMatch((err as Error).message, /kmt_abc123/, 'content not shown')
  chmodSync(loose, 0o600)
  t.equal(await readTokenFile(loose), 'kmt_abc123', 'accepted once 0600')
})

t.test('createClient needs a token file unless told otherwise', async (t) => {
  await t.rejects(createClient({ cp: 'http://x' }, {}), { code: 'CP_ERR_USAGE', message: /--token-file F or KEYMESH_TOKEN_FILE/ })
  const anon = await createClient({ cp: 'http://x' }, {}, { requireToken: false })
  t.equal(anon.baseUrl, 'http://x')
  await t.rejects(createClient({ cp: 'http://x', tokenFile: file('e2', '') }, {}), { code: 'CP_ERR_TOKEN_FILE' })
})

t.test('requests send the bearer token and JSON, and return parsed answers', async (t) => {
  const s = await serve(t, (req, res, body) => {
    if (req.method === 'DELETE') return void res.writeHead(204).end()
    json(res, 200, { echo: body === '' ? null : JSON.parse(body), url: req.url })
  })
  const c = await createClient({ tokenFile: file('tok', 'kmt_live\n') }, { KEYMESH_CP: `${s.url}/` })
  t.same(await c.post('/v1/keys', { name: 'k' }), { echo: { name: 'k' }, url: '/v1/keys' })
  t.same(await c.get('/v1/audit', { limit: 5, actor: 'a b', skip: undefined, desc: true }), { echo: null, url: '/v1/audit?limit=5&actor=a+b&desc=true' })
  t.same(await c.get('/v1/keys'), { echo: null, url: '/v1/keys' })
  await c.put('/v1/x', { a: 1 })
  await c.patch('/v1/x')
  t.equal(await c.delete('/v1/keys/k'), undefined, '204 gives undefined')
  t.same(s.seen.map((r) => [r.method, r.auth, r.ct]), [
    ['POST', 'Bearer kmt_live', 'application/json'],
    ['GET', 'Bearer kmt_live', undefined],
    ['GET', 'Bearer kmt_live', undefined],
    ['PUT', 'Bearer kmt_live', 'application/json'],
    ['PATCH', 'Bearer kmt_live', undefined],
    ['DELETE', 'Bearer kmt_live', undefined],
  ])
  const anon = new ControlPlaneClient(`${s.url}/prefix/`, undefined)
  await anon.get('/healthz')
  t.same([s.seen.at(-1)?.url, s.seen.at(-1)?.auth], ['/prefix/healthz', undefined], 'a base path is kept; no token, no header')
})

t.test('an error answer becomes a typed error with the server\'s code', async (t) => {
  const s = await serve(t, (req, res) => {
    if (req.url === '/forbidden') return json(res, 403, { error: { code: 'CP_ERR_FORBIDDEN', message: 'not allowed: auditor may not key.create' } })
    if (req.url === '/novel') return json(res, 409, { error: { code: 'CP_ERR_SOMETHING_NEW', message: 'line one\n\u001b[31mline two' } })
    if (req.url === '/long') return json(res, 400, { error: { code: 'CP_ERR_BAD_REQUEST', message: 'y'.repeat(600) } })
    if (req.url === '/html') return void res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>')
    if (req.url === '/badcode') return json(res, 400, { error: { code: 'lower case; rm -rf', message: 'x' } })
    if (req.url === '/moved') return void res.writeHead(302, { location: 'http://elsewhere.example/steal' }).end()
    if (req.url === '/okhtml') return void res.writeHead(200).end('<html>')
    res.writeHead(500).end()
  })
  const c = new ControlPlaneClient(s.url, 'tok')
  const e = await c.get('/forbidden').catch((x: unknown) => x)
  t.type(e, ControlPlaneError)
  t.match(e, { name: 'ControlPlaneError', code: 'CP_ERR_FORBIDDEN', status: 403, closeCode: 4505, message: 'not allowed: auditor may not key.create' })
  t.match(await c.get('/novel').catch((x: unknown) => x), { code: 'CP_ERR_SOMETHING_NEW', status: 409, closeCode: 4500, message: 'line one [31mline two' })
  t.match(await c.get('/long').catch((x: unknown) => x), { message: /^y{500}…$/ })
  await t.rejects(c.get('/html'), { code: 'CP_ERR_BAD_RESPONSE', message: /HTTP 502 without an error code/ })
  await t.rejects(c.get('/badcode'), { code: 'CP_ERR_BAD_RESPONSE' })
  await t.rejects(c.get('/empty500'), { code: 'CP_ERR_BAD_RESPONSE', message: /HTTP 500/ })
  await t.rejects(c.get('/moved'), { code: 'CP_ERR_BAD_RESPONSE', message: /HTTP 302/ })
  t.equal(s.seen.filter((r) => r.url === '/steal').length, 0, 'the redirect is not followed')
  await t.rejects(c.get('/okhtml'), { code: 'CP_ERR_BAD_RESPONSE', message: /HTTP 200 with a body that is not JSON/ })
})

t.test('a control plane that cannot be reached says why: refused (CP_ERR_UNREACHABLE), no answer in time (CP_ERR_TIMEOUT)', async (t) => {
  const s = await serve(t, () => {})
  const closed = createServer()
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
  const port = (closed.address() as AddressInfo).port
  await new Promise((r) => closed.close(r))
  const c = new ControlPlaneClient(`http://127.0.0.1:${port}`, 'tok')
  await t.rejects(c.get('/healthz'), { code: 'CP_ERR_UNREACHABLE', status: 503, message: `cannot reach the control plane at http://127.0.0.1:${port}: connection refused (is it running and listening on 127.0.0.1:${port}?)` })
  const slow = new ControlPlaneClient(s.url, 'tok', { timeoutMs: 30 })
  await t.rejects(slow.get('/never'), { code: 'CP_ERR_TIMEOUT', status: 504, message: `the control plane at ${s.url} did not answer within 30 ms` })
})

t.test('a connection cut while the answer is read is also unreachable', async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' })
    res.write('{"partial":')
    setImmediate(() => res.socket?.destroy())
  })
  const c = new ControlPlaneClient(s.url, 'tok')
  await t.rejects(c.get('/x'), { code: 'CP_ERR_UNREACHABLE' })
})

t.test('an injected transport is used (fetch fits)', async (t) => {
  const c = new ControlPlaneClient('http://fake', 't', { send: async () => new Response('{"ok":true}', { status: 200 }) })
  t.same(await c.get('/x'), { ok: true })
})
