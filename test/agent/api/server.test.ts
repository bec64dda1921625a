// The agent's local API server: the status answer, 404/405, the body limit, how
// handler errors are answered, the DNS-rebinding guard, unix sockets (0600, stale
// files, never deleting what is not ours), listen failures and graceful close.
import t, { type Test } from 'tap'
import { request, type IncomingHttpHeaders } from 'node:http'
import { createServer as createNetServer, type Server as NetServer } from 'node:net'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'

import { AgentApiServer, type AgentStatus, type ApiRoute, type ApiServerOptions } from '../../../agent/src/api/server.js'
import { requestAgentApi } from '../../../agent/src/api/client.js'
import type { ApiListen } from '../../../agent/src/config.js'
import { agentError } from '../../../agent/src/errors.js'
import { isKeymeshError, protoError } from '../../../protocol/src/index.js'

const STATUS: AgentStatus = {
  ready: true,
  service: 'web',
  agentId: 'agt_abcdefghijklmnopqrstuvwxya',
  controlPlane: { state: 'connected', url: 'http://127.0.0.1:7400', lastError: null },
  keySet: { source: 'control-plane', updatedAt: 1_700_000_000_000 },
  pairs: [{ pairId: 'api:web', peerService: 'api', currentVersion: 2, mayInitiate: true, mayAccept: false, peers: 1, tunnels: 0, tunnelKeyVersions: [] }],
  tunnels: { open: 3, inbound: 1, outbound: 2 },
  usage: { unackedBatches: 0, dropped: 0, lostBatches: 0, recoveredBatches: 0, lossReportsPending: 0 },
}

/** The token every TCP server here is started with; `call` sends it unless told otherwise. */
const TOKEN = 'dGVzdC10b2tlbi10ZXN0LXRva2VuLXRlc3QtdG9rZW4'
const AUTH = { authorization: `Bearer ${TOKEN}` }

interface Answer { status: number; headers: IncomingHttpHeaders; json: any; text: string }

function call(at: ApiListen, method: string, path: string, o: { body?: string | Buffer; headers?: Record<string, string | number> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ ...('socketPath' in at ? { socketPath: at.socketPath } : { host: at.host, port: at.port }), method, path, headers: { ...AUTH, ...o.headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text })
      })
    })
    req.on('error', reject)
    req.end(o.body)
  })
}

async function start(t: Test, o: Partial<ApiServerOptions> = {}): Promise<{ api: AgentApiServer; at: ApiListen; logs: string[] }> {
  const logs: string[] = []
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(s) })
  const api = await AgentApiServer.start({ listen: { host: '127.0.0.1', port: 0 }, status: () => STATUS, logger, token: TOKEN, ...o })
  t.teardown(() => api.close())
  let at: ApiListen
  if (api.url.startsWith('unix:')) at = { socketPath: api.url.slice(5) }
  else {
    const u = new URL(api.url)
    at = { host: u.hostname, port: Number(u.port) }
  }
  return { api, at, logs }
}

const json = (body: unknown): { body: string; headers: Record<string, string> } => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })

t.test('GET /v1/status answers the status as JSON, never cached', async (t) => {
  let calls = 0
  const { api, at } = await start(t, { status: () => ({ ...STATUS, tunnels: { ...STATUS.tunnels, open: ++calls } }) })
  t.match(api.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const r = await call(at, 'GET', '/v1/status?verbose=1')
  t.equal(r.status, 200)
  t.same(r.json, { ...STATUS, tunnels: { ...STATUS.tunnels, open: 1 } })
  t.match(r.headers['content-type'], /^application\/json/)
  t.equal(r.headers['cache-control'], 'no-store')
  t.equal((await call(at, 'GET', '/v1/status')).json.tunnels.open, 2, 'status() runs per request')
  t.same(await requestAgentApi(at, 'GET', '/v1/status', undefined, { token: TOKEN }), { ...STATUS, tunnels: { ...STATUS.tunnels, open: 3 } }, 'the CLI client reads it too')
})

t.test('unknown routes are 404, a known path with another method is 405 with Allow', async (t) => {
  const echo: ApiRoute = { method: 'POST', path: '/v1/echo', handler: async (req) => ({ body: { got: req.body } }) }
  const { at } = await start(t, { routes: [echo] })
  const nf = await call(at, 'GET', '/v1/nope')
  t.equal(nf.status, 404)
  t.equal(nf.json.error.code, 'AGENT_ERR_NOT_FOUND')
  const post = await call(at, 'POST', '/v1/status')
  t.equal(post.status, 405)
  t.equal(post.json.error.code, 'AGENT_ERR_METHOD_NOT_ALLOWED')
  t.equal(post.headers.allow, 'GET')
  t.equal((await call(at, 'GET', '/v1/echo')).headers.allow, 'POST')
  const ok = await call(at, 'POST', '/v1/echo', json({ a: [1, 2] }))
  t.same(ok.json, { got: { a: [1, 2] } })
  t.same((await call(at, 'POST', '/v1/echo')).json, {}, 'an empty body reaches the handler as undefined')
  t.same(await requestAgentApi(at, 'POST', '/v1/echo', { b: true }, { token: TOKEN }), { got: { b: true } })
})

t.test('request bodies are JSON within the limit', async (t) => {
  let ran = 0
  const sink: ApiRoute = { method: 'POST', path: '/v1/sink', handler: async () => { ran++; return { status: 201, body: { ok: true } } } }
  const small: ApiRoute = { method: 'POST', path: '/v1/small', maxBodyBytes: 10, handler: async () => { ran++; return { body: {} } } }
  const { at } = await start(t, { routes: [sink, small], bodyLimitBytes: 1024 })
  t.equal((await call(at, 'POST', '/v1/sink', json({ x: 'y'.repeat(900) }))).status, 201)
  const declared = await call(at, 'POST', '/v1/sink', json({ x: 'y'.repeat(2000) }))
  t.equal(declared.status, 413)
  t.equal(declared.json.error.code, 'AGENT_ERR_BODY_TOO_LARGE')
  t.equal(declared.headers.connection, 'close')
  // Chunked, so the size is only known while reading.
  const chunked = await call(at, 'POST', '/v1/sink', { body: Buffer.alloc(5000, 0x20), headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } })
  t.equal(chunked.status, 413)
  t.equal((await call(at, 'POST', '/v1/small', json({ x: 'more than ten' }))).status, 413, 'a route sets its own limit')
  const badJson = await call(at, 'POST', '/v1/sink', { body: '{"secret": "s3cr3t', headers: { 'content-type': 'application/json' } })
  t.equal(badJson.status, 400)
  t.equal(badJson.json.error.code, 'AGENT_ERR_BAD_REQUEST')
  t.notMatch(badJson.text, /s3cr3t/, 'the body is not quoted back')
  const plain = await call(at, 'POST', '/v1/sink', { body: '{}', headers: { 'content-type': 'text/plain' } })
  t.equal(plain.status, 400, 'a browser "simple request" content type is refused')
  t.match(plain.json.error.message, /application\/json/)
  t.equal((await call(at, 'POST', '/v1/sink', { body: Buffer.from([0x22, 0xff, 0x22]), headers: { 'content-type': 'application/json' } })).status, 400, 'not UTF-8')
  t.equal((await call(at, 'POST', '/v1/sink', { body: '{}', headers: { 'content-type': 'application/json; charset=latin1' } })).status, 400)
  t.equal(ran, 1, 'no refused request reached a handler')
})

t.test('handler errors: KeymeshErrors keep their code and status, anything else is a bare 500', async (t) => {
  const routes: ApiRoute[] = [
    { method: 'POST', path: '/v1/not-ready', handler: async () => { throw agentError('AGENT_ERR_NOT_READY', 'waiting for the key set') } },
    { method: 'POST', path: '/v1/proto', handler: async () => { throw protoError('PROTO_ERR_DECRYPT') } },
    { method: 'POST', path: '/v1/bug', handler: async () => { throw new Error('plaintext-in-a-bug-message') } },
  ]
  const { at, logs } = await start(t, { routes })
  const nr = await call(at, 'POST', '/v1/not-ready')
  t.equal(nr.status, 503)
  t.same(nr.json, { error: { code: 'AGENT_ERR_NOT_READY', message: 'the agent has no key set yet: waiting for the key set' } })
  const pr = await call(at, 'POST', '/v1/proto')
  t.equal(pr.status, 400)
  t.equal(pr.json.error.code, 'PROTO_ERR_DECRYPT')
  const bug = await call(at, 'POST', '/v1/bug')
  t.equal(bug.status, 500)
  t.same(bug.json, { error: { code: 'AGENT_ERR_INTERNAL', message: 'internal error' } })
  t.ok(logs.some((l) => l.includes('API request failed') && l.includes('/v1/bug')), 'the unexpected error is logged')
  const refused = logs.map((l) => JSON.parse(l) as { level: number; msg: string; path?: string; code?: string; err?: unknown })
    .filter((l) => l.path === '/v1/not-ready' && /^API request (refused|failed)$/.test(l.msg))
  t.equal(refused.length, 1, 'a routine 503 is logged once')
  t.match(refused[0], { level: 40, msg: 'API request refused', code: 'AGENT_ERR_NOT_READY' }, 'as a warning')
  t.equal(refused[0]?.err, undefined, 'without a stack')
  const err = await requestAgentApi(at, 'POST', '/v1/not-ready', undefined, { token: TOKEN }).catch((e: unknown) => e)
  t.ok(isKeymeshError(err, 'AGENT_ERR_NOT_READY'), 'the client rethrows the agent\'s code')
  t.match((err as Error).message, /waiting for the key set/)
})

t.test('a status function that throws is a 500 too', async (t) => {
  const { at } = await start(t, { status: () => { throw new Error('boom') } })
  const r = await call(at, 'GET', '/v1/status')
  t.equal(r.status, 500)
  t.equal(r.json.error.code, 'AGENT_ERR_INTERNAL')
})

t.test('on loopback, a Host header naming another domain is refused (DNS rebinding)', async (t) => {
  const { at } = await start(t)
  const port = (at as { port: number }).port
  const evil = await call(at, 'GET', '/v1/status', { headers: { host: `rebind.example:${port}` } })
  t.equal(evil.status, 400)
  t.equal(evil.json.error.code, 'AGENT_ERR_BAD_REQUEST')
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'localhost']) {
    t.equal((await call(at, 'GET', '/v1/status', { headers: { host } })).status, 200, `Host: ${host}`)
  }
})

t.test('routes are checked when the server starts', async (t) => {
  const logger = pino({ level: 'silent' })
  const status = (): AgentStatus => STATUS
  const dup: ApiRoute = { method: 'GET', path: '/v1/status', handler: async () => ({ body: 1 }) }
  await t.rejects(AgentApiServer.start({ listen: { host: '127.0.0.1', port: 0 }, status, logger, routes: [dup] }), /given twice/)
  const badMethod: ApiRoute = { method: 'FETCH', path: '/v1/x', handler: async () => ({ body: 1 }) }
  await t.rejects(AgentApiServer.start({ listen: { host: '127.0.0.1', port: 0 }, status, logger, routes: [badMethod] }), /unsupported method/)
  const badPath: ApiRoute = { method: 'GET', path: 'v1/x', handler: async () => ({ body: 1 }) }
  await t.rejects(AgentApiServer.start({ listen: { host: '127.0.0.1', port: 0 }, status, logger, routes: [badPath] }), /fixed path/)
})

t.test('a TCP address in use is AGENT_ERR_LISTEN', async (t) => {
  const { at } = await start(t)
  const err = await AgentApiServer.start({ listen: at, status: () => STATUS, logger: pino({ level: 'silent' }), token: TOKEN }).catch((e: unknown) => e)
  t.ok(isKeymeshError(err, 'AGENT_ERR_LISTEN'))
  t.match((err as Error).message, /EADDRINUSE/)
})

t.test('a unix socket is 0600, answers, and is removed on close', async (t) => {
  const dir = socketDir(t)
  const socketPath = join(dir, 'api.sock')
  const { api, at } = await start(t, { listen: { socketPath } })
  t.equal(api.url, `unix:${socketPath}`)
  t.equal(statSync(socketPath).mode & 0o777, 0o600)
  t.equal((await call(at, 'GET', '/v1/status', { headers: { host: 'anything' } })).json.service, 'web', 'no Host check on a unix socket')
  await api.close()
  t.notOk(existsSync(socketPath), 'socket file removed')
  t.same(readdirSync(dir), [], 'no temporary directory is left behind')
})

t.test('a stale socket file is replaced; a live socket or another file is left alone', async (t) => {
  const dir = socketDir(t)
  writeFileSync(join(dir, 'plain.sock'), 'not a socket')
  // A stale socket: bound, renamed away from the name node will unlink, then closed.
  const stale = join(dir, 'stale.sock')
  const old = await listenNet(join(dir, 'tmp.sock'))
  renameSync(join(dir, 'tmp.sock'), stale)
  await new Promise((r) => old.close(r))
  t.ok(statSync(stale).isSocket(), 'a stale socket file exists')
  const { at } = await start(t, { listen: { socketPath: stale } })
  t.equal((await call(at, 'GET', '/v1/status')).status, 200, 'took over the stale path')

  const live = join(dir, 'live.sock')
  const other = await listenNet(live)
  t.teardown(() => other.close())
  const busy = await AgentApiServer.start({ listen: { socketPath: live }, status: () => STATUS, logger: pino({ level: 'silent' }) }).catch((e: unknown) => e)
  t.ok(isKeymeshError(busy, 'AGENT_ERR_LISTEN'))
  t.match((busy as Error).message, /another process is listening/)
  t.ok(statSync(live).isSocket(), 'the live socket is still there')

  const plain = join(dir, 'plain.sock')
  const notSocket = await AgentApiServer.start({ listen: { socketPath: plain }, status: () => STATUS, logger: pino({ level: 'silent' }) }).catch((e: unknown) => e)
  t.ok(isKeymeshError(notSocket, 'AGENT_ERR_LISTEN'))
  t.match((notSocket as Error).message, /exists and is not a socket/)
  t.equal(readFileSync(plain, 'utf8'), 'not a socket', 'the file is untouched')

  const missingDir = await AgentApiServer.start({ listen: { socketPath: join(dir, 'no', 'such', 'api.sock') }, status: () => STATUS, logger: pino({ level: 'silent' }) }).catch((e: unknown) => e)
  t.ok(isKeymeshError(missingDir, 'AGENT_ERR_LISTEN'))
  t.match((missingDir as Error).message, /ENOENT/)

  const long = join(t.testdir({ ['x'.repeat(40)]: {} }), 'x'.repeat(40), 'api.sock')
  const tooLong = await AgentApiServer.start({ listen: { socketPath: long }, status: () => STATUS, logger: pino({ level: 'silent' }) }).catch((e: unknown) => e)
  t.ok(isKeymeshError(tooLong, 'AGENT_ERR_LISTEN'))
  t.match((tooLong as Error).message, /path too long/)
})

t.test('close lets a request in progress finish, then refuses new connections', async (t) => {
  let release!: () => void
  let entered!: () => void
  const inHandler = new Promise<void>((r) => { entered = r })
  const slow: ApiRoute = { method: 'POST', path: '/v1/slow', handler: async () => { entered(); await new Promise<void>((r) => { release = r }); return { body: { done: true } } } }
  const { api, at } = await start(t, { routes: [slow] })
  const pending = call(at, 'POST', '/v1/slow')
  await inHandler
  const closed = api.close()
  t.equal(api.close(), closed, 'close is idempotent')
  release()
  const r = await pending
  t.same(r.json, { done: true })
  t.equal(r.headers.connection, 'close')
  await closed
  await t.rejects(call(at, 'GET', '/v1/status'), { code: 'ECONNREFUSED' })
  const err = await requestAgentApi(at, 'GET', '/v1/status').catch((e: unknown) => e)
  t.ok(isKeymeshError(err, 'AGENT_ERR_API_UNREACHABLE'))
  t.match((err as Error).message, /ECONNREFUSED/)
})

t.test('a handler sees its signal abort when the client goes away', async (t) => {
  let aborted!: () => void
  const gone = new Promise<void>((r) => { aborted = r })
  let entered!: () => void
  const inHandler = new Promise<void>((r) => { entered = r })
  const wait: ApiRoute = {
    method: 'POST', path: '/v1/wait',
    handler: async (req) => {
      req.signal.addEventListener('abort', () => aborted())
      entered()
      await gone
      return { body: {} }
    },
  }
  const { at } = await start(t, { routes: [wait] })
  const req = request({ ...(at as { host: string; port: number }), method: 'POST', path: '/v1/wait', headers: AUTH })
  req.on('error', () => {})
  req.end()
  await inHandler
  req.destroy()
  await gone
  t.pass('the signal aborted')
})

t.test('the client refuses answers that are not from an agent', async (t) => {
  const server = createNetServer((s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello'))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const err = await requestAgentApi({ host: '127.0.0.1', port }, 'GET', '/v1/status').catch((e: unknown) => e)
  t.ok(isKeymeshError(err, 'AGENT_ERR_API_UNREACHABLE'))
  t.match((err as Error).message, /without JSON/)
  const { at } = await start(t)
  const big = await requestAgentApi(at, 'GET', '/v1/status', undefined, { maxResponseBytes: 10, token: TOKEN }).catch((e: unknown) => e)
  t.ok(isKeymeshError(big, 'AGENT_ERR_API_UNREACHABLE'))
  t.match((big as Error).message, /larger than 10 bytes/)
})

function listenNet(path: string): Promise<NetServer> {
  return new Promise((resolve) => {
    const s = createNetServer(() => {})
    s.listen(path, () => resolve(s))
  })
}

/**
 * A short directory for unix sockets: t.testdir() paths pass sun_path's 107 bytes,
 * which is exactly what the too-long test below relies on.
 */
function socketDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'km-api-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('fastify\'s own refusals keep the agent\'s error form and are counted', async (t) => {
  const answered: Array<[string, string, number]> = []
  const sink: ApiRoute = { method: 'POST', path: '/v1/sink', handler: async () => ({ body: { ok: true } }) }
  const { at } = await start(t, { routes: [sink], onAnswered: (route, method, status) => void answered.push([route, method, status]) })
  const badUrl = await call(at, 'GET', '/v1/st%E0%A4%Atus')
  t.same([badUrl.status, badUrl.json?.error.code], [400, 'AGENT_ERR_BAD_REQUEST'], 'a malformed percent-encoding')
  const badType = await call(at, 'POST', '/v1/sink', { body: '{}', headers: { 'content-type': 'not a type' } })
  t.same([badType.status, badType.json.error.code], [400, 'AGENT_ERR_BAD_REQUEST'])
  t.match(badType.json.error.message, /application\/json/)
  const untyped = await call(at, 'POST', '/v1/sink', { body: '{}' })
  t.same([untyped.status, untyped.json.error.code], [400, 'AGENT_ERR_BAD_REQUEST'], 'a body without a content type')
  t.equal(untyped.headers['cache-control'], 'no-store')
  t.same(answered.map(([route, , status]) => [route, status]), [['(unmatched)', 400], ['/v1/sink', 400], ['/v1/sink', 400]])
})

t.test('a failing onAnswered is logged and the answer stands', async (t) => {
  let thrown!: () => void
  const done = new Promise<void>((r) => { thrown = r })
  // The catch that logs runs synchronously after the throw, before this microtask.
  const { at, logs } = await start(t, { onAnswered: () => { queueMicrotask(thrown); throw new Error('metrics down') } })
  t.equal((await call(at, 'GET', '/v1/status')).status, 200)
  await done
  t.ok(logs.some((l) => /onAnswered failed/.test(l)))
})

t.test('over TCP every route but the open ones needs the bearer token', async (t) => {
  const probe: ApiRoute = { method: 'GET', path: '/healthz', open: true, handler: async () => ({ body: { status: 'ok' } }) }
  const { at } = await start(t, { routes: [probe] })
  const none = await call(at, 'GET', '/v1/status', { headers: { authorization: '' } })
  t.equal(none.status, 401)
  t.equal(none.json.error.code, 'AGENT_ERR_API_TOKEN')
  t.notOk('service' in none.json, 'no status without the token')
  const wrong = await call(at, 'GET', '/v1/status', { headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}x` } })
  t.equal(wrong.status, 401)
  t.match(wrong.json.error.message, /does not match/)
  t.equal((await call(at, 'GET', '/v1/status', { headers: { authorization: `Bearer ${TOKEN}x` } })).status, 401, 'a longer token')
  t.equal((await call(at, 'GET', '/v1/status', { headers: { authorization: `Basic ${TOKEN}` } })).status, 401, 'another scheme')
  t.equal((await call(at, 'GET', '/v1/nope', { headers: { authorization: '' } })).status, 401, 'unknown paths too: no route map for strangers')
  t.equal((await call(at, 'GET', '/v1/status', { headers: { authorization: `bearer  ${TOKEN}` } })).status, 200, 'the scheme is case-insensitive')
  t.equal((await call(at, 'GET', '/healthz', { headers: { authorization: '' } })).status, 200, 'probes stay open')
  const client = await requestAgentApi(at, 'GET', '/v1/status', undefined, { tokenSource: '--state-dir (/x/api.token)' }).catch((e: unknown) => e)
  t.ok(isKeymeshError(client, 'AGENT_ERR_API_TOKEN'))
  t.match((client as Error).message, /no token was sent \(--state-dir \(\/x\/api\.token\)\); give --api-token-file/)
  const refused = await requestAgentApi(at, 'GET', '/v1/status', undefined, { token: 'x'.repeat(43), tokenSource: '--api-token-file /y' }).catch((e: unknown) => e)
  t.match((refused as Error).message, /the token from --api-token-file \/y was refused/)
  const bare = await requestAgentApi(at, 'GET', '/v1/status', undefined, { token: 'x'.repeat(43) }).catch((e: unknown) => e)
  t.match((bare as Error).message, /the token from the caller was refused/)
})

t.test('a TCP server without a token does not start; a unix socket needs none but takes one', async (t) => {
  await t.rejects(AgentApiServer.start({ listen: { host: '127.0.0.1', port: 0 }, status: () => STATUS, logger: pino({ level: 'silent' }) }), /needs a token/)
  const dir = mkdtempSync(join(tmpdir(), 'km-api-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { at } = await start(t, { listen: { socketPath: join(dir, 'api.sock') } })
  t.equal((await call(at, 'GET', '/v1/status', { headers: { authorization: '' } })).status, 200)
  t.equal((await call(at, 'GET', '/v1/status')).status, 200)
})

t.test('a unix socket in a world-writable directory is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'km-api-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o1777)
  const err = await AgentApiServer.start({ listen: { socketPath: join(dir, 'api.sock') }, status: () => STATUS, logger: pino({ level: 'silent' }) }).catch((e: unknown) => e)
  t.ok(isKeymeshError(err, 'AGENT_ERR_LISTEN'))
  t.match((err as Error).message, /world-writable/)
  t.notOk(existsSync(join(dir, 'api.sock')))
})
