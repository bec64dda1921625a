import t from 'tap'
import { request as httpRequest, Agent, type IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import { once } from 'node:events'
import { pino } from 'pino'
import { WebSocket, WebSocketServer } from 'ws'

import { cpError } from '../../../control-plane/src/errors.js'
import { bindPort } from '../../../control-plane/src/http/bound-port.js'
import { createHttpServer, type DeniedEvent, type HttpLimits, type HttpServer, type HttpServerOptions } from '../../../control-plane/src/http/server.js'
import { route, type Principal, type Route } from '../../../control-plane/src/http/router.js'
import { StrangerLimits } from '../../../control-plane/src/http/stranger-limits.js'
import { FakeClock } from '../../kit/fake-clock.js'

interface Deferred<T = void> { promise: Promise<T>; resolve(v: T): void }
function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

const TOKEN = 'tok-alice-9f8e7d6c5b4a'
const SECRET = 'plaintext-4b1d-very-secret'

interface Harness {
  http: HttpServer
  base: string
  port: number
  logs: string[]
  /** Resolves when a log line matches. */
  logged(re: RegExp): Promise<void>
  denied: DeniedEvent<Principal>[]
  handled: string[]
  slow: { entered: Deferred; release: Deferred }
  aborted: Deferred
}

async function start(t: { teardown(fn: () => unknown): void }, extra: Partial<HttpServerOptions<Principal>> = {}, limits: HttpLimits = {}): Promise<Harness> {
  const logs: string[] = []
  const waiters: Array<{ re: RegExp; resolve: () => void }> = []
  const logged = (re: RegExp) => new Promise<void>((resolve) => {
    if (logs.some((l) => re.test(l))) resolve()
    else waiters.push({ re, resolve })
  })
  const denied: DeniedEvent<Principal>[] = []
  const handled: string[] = []
  const slow = { entered: deferred(), release: deferred() }
  const aborted = deferred()
  const routes: Route[] = [
    route({ method: 'GET', path: '/v1/keys/:name', operation: 'key.get', auth: 'token', handler: async (ctx) => {
      handled.push('key.get')
      return { status: 200, body: { name: ctx.params['name'], principal: ctx.principal.id, requestId: ctx.requestId } }
    } }),
    route({
      method: 'POST', path: '/v1/keys', operation: 'key.create', auth: 'token',
      body: { fields: { name: { type: 'string', maxLength: 16 }, type: { type: 'string', enum: ['aead', 'x25519'] }, secret: { type: 'string', optional: true } } },
      handler: async (ctx) => { handled.push('key.create'); return { status: 201, body: { name: ctx.body.name, type: ctx.body.type }, headers: { location: `/v1/keys/${ctx.body.name}` } } },
    }),
    route({ method: 'DELETE', path: '/v1/keys/:name', operation: 'key.delete', auth: 'token', handler: async () => ({ status: 204 }) }),
    route({ method: 'GET', path: '/v1/search', operation: 'audit.query', auth: 'token', query: { limit: { type: 'integer', min: 1, optional: true } },
      handler: async (ctx) => ({ status: 200, body: { limit: ctx.query.limit ?? null } }) }),
    route({ method: 'GET', path: '/v1/public', operation: 'public', auth: 'none', handler: async (ctx) => ({ status: 200, body: { principal: ctx.principal } }) }),
    route({ method: 'POST', path: '/v1/slow', operation: 'slow', auth: 'token', handler: async () => {
      slow.entered.resolve()
      await slow.release.promise
      return { status: 200, body: { done: true } }
    } }),
    route({ method: 'GET', path: '/v1/hang', operation: 'hang', auth: 'token', handler: async (ctx) => {
      slow.entered.resolve()
      await once(ctx.signal, 'abort')
      aborted.resolve()
      return { status: 200, body: {} }
    } }),
    route({ method: 'GET', path: '/v1/boom', operation: 'boom', auth: 'token', handler: async () => { throw new Error('database password is hunter2') } }),
    route({ method: 'GET', path: '/v1/bigint', operation: 'bigint', auth: 'token', handler: async () => ({ status: 200, body: { n: 1n } }) }),
    route({ method: 'GET', path: '/v1/store-down', operation: 'x', auth: 'token', handler: async () => { throw cpError('CP_ERR_STORE') } }),
    route({ method: 'GET', path: '/v1/not-yours', operation: 'key.use', auth: 'token', handler: async () => { throw cpError('CP_ERR_FORBIDDEN', 'no grant on this key') } }),
  ]
  const logger = pino({ level: 'debug' }, { write: (s: string) => { logs.push(s); for (const w of waiters) if (w.re.test(s)) w.resolve() } })
  const http = createHttpServer<Principal>({
    routes,
    logger,
    limits: { bodyBytes: 256, ...limits },
    async authenticate(bearer) {
      if (bearer === TOKEN) return { id: 'alice' }
      if (bearer === 'tok-mallory') return { id: 'mallory' }
      if (bearer === 'malformed') throw cpError('CP_ERR_TOKEN_FORM', 'expired')
      return null
    },
    async authorize(principal, operation) {
      if (principal.id === 'mallory') return { allow: false, reason: `mallory may not ${operation}` }
      return { allow: true, reason: 'admin' }
    },
    onDenied(e) { denied.push(e) },
    ...extra,
  })
  const addr = await http.listen('127.0.0.1', 0)
  t.teardown(() => http.close())
  return { http, base: `http://127.0.0.1:${addr.port}`, port: addr.port, logs, logged, denied, handled, slow, aborted }
}

const auth = (token = TOKEN) => ({ authorization: `Bearer ${token}` })
async function call(h: Harness, method: string, path: string, init: { headers?: Record<string, string>; body?: string } = {}) {
  const res = await fetch(h.base + path, { method, headers: init.headers ?? {}, body: init.body ?? null })
  const text = await res.text()
  return { status: res.status, headers: res.headers, text, json: text === '' ? undefined : JSON.parse(text) as any }
}

t.test('GET /healthz answers 200 without a token, with a request id and no caching', async (t) => {
  const h = await start(t)
  const r = await call(h, 'GET', '/healthz')
  t.equal(r.status, 200)
  t.same(r.json, { status: 'ok' })
  t.match(r.headers.get('x-request-id'), /^[0-9a-f-]{36}$/)
  t.equal(r.headers.get('cache-control'), 'no-store')
  t.equal(r.headers.get('content-type'), 'application/json; charset=utf-8')
})

t.test('a token route answers with the authenticated principal and decoded params', async (t) => {
  const h = await start(t)
  const r = await call(h, 'GET', '/v1/keys/pay%2Dments', { headers: { ...auth(), 'x-request-id': 'trace-42' } })
  t.equal(r.status, 200)
  t.same(r.json, { name: 'pay-ments', principal: 'alice', requestId: 'trace-42' })
  t.equal(r.headers.get('x-request-id'), 'trace-42')
  const bad = await call(h, 'GET', '/v1/keys/a', { headers: { ...auth(), 'x-request-id': 'no spaces allowed' } })
  t.not(bad.headers.get('x-request-id'), 'no spaces allowed', 'a malformed request id is replaced')
  const pub = await call(h, 'GET', '/v1/public')
  t.same(pub.json, { principal: null }, 'an auth: none route runs without a principal')
})

t.test('401 without a token or with a bad one, and each is reported to onDenied', async (t) => {
  const h = await start(t)
  const none = await call(h, 'GET', '/v1/keys/a')
  t.equal(none.status, 401)
  t.same(none.json, { error: { code: 'CP_ERR_UNAUTHENTICATED', message: 'missing or invalid credentials: no bearer token' } })
  t.equal(none.headers.get('www-authenticate'), 'Bearer')
  const bad = await call(h, 'GET', '/v1/keys/a', { headers: auth('forged') })
  t.equal(bad.status, 401)
  t.match(bad.json.error.message, /bearer token not recognised/)
  t.notMatch(bad.text, /forged/, 'the token is not echoed')
  const basic = await call(h, 'GET', '/v1/keys/a', { headers: { authorization: 'Basic YWxpY2U6cHc=' } })
  t.match(basic.json.error.message, /no bearer token/, 'a non-Bearer scheme counts as no token')
  const thrown = await call(h, 'GET', '/v1/keys/a', { headers: auth('malformed') })
  t.equal(thrown.status, 401)
  t.equal(thrown.json.error.code, 'CP_ERR_TOKEN_FORM', 'a 401 KeymeshError from authenticate keeps its code')
  t.same(h.denied.map((d) => [d.kind, d.reason, d.operation, d.principal]), [
    ['unauthenticated', 'no bearer token', 'key.get', null],
    ['unauthenticated', 'bearer token not recognised', 'key.get', null],
    ['unauthenticated', 'no bearer token', 'key.get', null],
    ['unauthenticated', 'expired', 'key.get', null],
  ])
  t.equal(h.denied[0]?.path, '/v1/keys/a')
  t.equal(h.denied[0]?.remoteAddress, '127.0.0.1')
  t.same(h.handled, [])
})

t.test('with a stranger gate: failed authentications spend the budget, then 429 before authenticate, reported to onDenied', async (t) => {
  const clock = new FakeClock()
  const strangers = new StrangerLimits({ perSecond: 1, burst: 2 }, clock, { record: async () => {} })
  let authenticated = 0
  let storeDown = false
  const h = await start(t, {
    strangers,
    async authenticate(bearer) {
      authenticated++
      if (storeDown) throw cpError('CP_ERR_STORE')
      return bearer === TOKEN ? { id: 'alice' } : null
    },
  })
  for (let i = 0; i < 10; i++) t.equal((await call(h, 'GET', '/v1/keys/a', { headers: auth() })).status, 200, 'successes give their token back')
  storeDown = true
  for (let i = 0; i < 3; i++) t.equal((await call(h, 'GET', '/v1/keys/a', { headers: auth() })).status, 503, 'a failed store is not the caller\'s failure')
  storeDown = false
  t.equal((await call(h, 'GET', '/v1/keys/a')).status, 401)
  t.equal((await call(h, 'GET', '/v1/keys/a', { headers: auth('forged') })).status, 401)
  const before = authenticated
  const limited = await call(h, 'GET', '/v1/keys/a', { headers: auth() })
  t.equal(limited.status, 429)
  t.same(limited.json, { error: { code: 'CP_ERR_RATE_LIMITED', message: 'too many failed authentications from this address; retry later' } })
  t.equal(limited.headers.get('retry-after'), '1')
  t.equal(authenticated, before, 'the token was not looked at')
  t.same(h.denied.map((d) => [d.kind, d.error.code, d.principal]).at(-1), ['unauthenticated', 'CP_ERR_RATE_LIMITED', null])
  t.equal((await call(h, 'GET', '/healthz')).status, 200, 'routes without a token are not gated')
  clock.advance(1000)
  t.equal((await call(h, 'GET', '/v1/keys/a', { headers: auth() })).status, 200, 'served once a token flowed in')
})

t.test('403 carries the authorizer\'s reason, reaches onDenied, and the handler never runs', async (t) => {
  const h = await start(t)
  const r = await call(h, 'POST', '/v1/keys', { headers: { ...auth('tok-mallory'), 'content-type': 'application/json' }, body: '{"name":"k","type":"aead"}' })
  t.equal(r.status, 403)
  t.same(r.json, { error: { code: 'CP_ERR_FORBIDDEN', message: 'not allowed: mallory may not key.create' } })
  t.equal(h.denied.length, 1)
  t.match(h.denied[0], { kind: 'forbidden', reason: 'mallory may not key.create', operation: 'key.create', principal: { id: 'mallory' }, method: 'POST' })
  t.same(h.handled, [])
})

t.test('a 403 raised by a handler is also reported to onDenied', async (t) => {
  const h = await start(t)
  const r = await call(h, 'GET', '/v1/not-yours', { headers: auth() })
  t.equal(r.status, 403)
  t.match(h.denied, [{ kind: 'forbidden', reason: 'no grant on this key', principal: { id: 'alice' } }])
})

t.test('a failing onDenied is logged and the denial stands', async (t) => {
  const h = await start(t, { onDenied: async () => { throw new Error('audit down') } })
  const r = await call(h, 'GET', '/v1/keys/a')
  t.equal(r.status, 401)
  t.ok(h.logs.some((l) => /onDenied failed/.test(l)))
})

t.test('without onDenied a denial is still answered, and a bare 403 reports its message', async (t) => {
  const h = await start(t, { onDenied: undefined })
  t.equal((await call(h, 'GET', '/v1/keys/a')).status, 401)
  const h2 = await start(t, { authorize: async () => { throw cpError('CP_ERR_FORBIDDEN') } })
  t.equal((await call(h2, 'GET', '/v1/keys/a', { headers: auth() })).status, 403)
  t.match(h2.denied, [{ kind: 'forbidden', reason: 'not allowed' }])
})

t.test('a handler that finishes after its client left writes nothing and its signal was aborted', async (t) => {
  const h = await start(t)
  const ac = new AbortController()
  const gone = fetch(`${h.base}/v1/slow`, { method: 'POST', headers: auth(), signal: ac.signal }).catch((e: unknown) => e)
  await h.slow.entered.promise
  ac.abort()
  t.match(await gone, { name: 'AbortError' })
  const logged = h.logged(/"operation":"slow"/)
  h.slow.release.resolve()
  await logged
  t.pass('the request completed without a socket to write to')
})

t.test('a valid body reaches the handler validated', async (t) => {
  const h = await start(t)
  const r = await call(h, 'POST', '/v1/keys', { headers: { ...auth(), 'content-type': 'application/json' }, body: '{"name":"k1","type":"aead"}' })
  t.equal(r.status, 201)
  t.same(r.json, { name: 'k1', type: 'aead' })
  t.equal(r.headers.get('location'), '/v1/keys/k1')
})

t.test('an oversized body is 413 and the handler never runs', async (t) => {
  const h = await start(t)
  const r = await call(h, 'POST', '/v1/keys', { headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x'.repeat(300), type: 'aead' }) })
  t.equal(r.status, 413)
  t.equal(r.json.error.code, 'CP_ERR_BODY_TOO_LARGE')
  t.equal(r.headers.get('connection'), 'close')
  t.same(h.handled, [])
})

t.test('a streamed oversized body is refused without waiting for its end', async (t) => {
  const h = await start(t)
  const req = httpRequest(`${h.base}/v1/keys`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json', 'transfer-encoding': 'chunked' } })
  req.on('error', () => {})
  req.write('{"name":"' + 'x'.repeat(200))
  req.write('y'.repeat(200))
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  t.equal(res.statusCode, 413, 'answered while the request is still open')
  res.resume()
  req.destroy()
  t.same(h.handled, [])
})

t.test('malformed JSON, unknown fields, wrong types and wrong media types are typed 4xx errors', async (t) => {
  const h = await start(t)
  const post = (body: string, ct = 'application/json') => call(h, 'POST', '/v1/keys', { headers: { ...auth(), 'content-type': ct }, body })
  const bad = await post('{"name":')
  t.equal(bad.status, 400)
  t.equal(bad.json.error.code, 'CP_ERR_BAD_JSON')
  const unknown = await post('{"name":"k","type":"aead","colour":"red"}')
  t.same(unknown.json, { error: { code: 'CP_ERR_UNKNOWN_FIELD', message: 'request has a field this endpoint does not accept: colour' } })
  const wrong = await post(`{"name":"k","type":"aead","secret":{"v":"${SECRET}"}}`)
  t.equal(wrong.status, 400)
  t.match(wrong.json.error, { code: 'CP_ERR_INVALID_FIELD', message: /secret must be a string/ })
  t.notMatch(wrong.text, SECRET, 'the value is not echoed')
  const media = await post('{"name":"k","type":"aead"}', 'text/plain')
  t.equal(media.status, 415)
  const noBody = await call(h, 'DELETE', '/v1/keys/a', { headers: { ...auth(), 'content-type': 'application/json' }, body: '{}' })
  t.match(noBody.json.error, { code: 'CP_ERR_BAD_REQUEST', message: /takes no body/ })
  t.same(h.handled, [])
})

t.test('query parameters are validated per route and refused where none are declared', async (t) => {
  const h = await start(t)
  t.same((await call(h, 'GET', '/v1/search?limit=5', { headers: auth() })).json, { limit: 5 })
  t.equal((await call(h, 'GET', '/v1/search?limit=0', { headers: auth() })).json.error.code, 'CP_ERR_INVALID_FIELD')
  t.equal((await call(h, 'GET', '/v1/keys/a?x=1', { headers: auth() })).json.error.code, 'CP_ERR_UNKNOWN_FIELD')
  t.equal((await call(h, 'GET', '/v1/search?limit=1&limit=2', { headers: auth() })).json.error.code, 'CP_ERR_BAD_REQUEST')
})

t.test('unknown paths are 404 JSON and wrong methods are 405 with Allow', async (t) => {
  const h = await start(t)
  const nf = await call(h, 'GET', '/v1/nothing')
  t.equal(nf.status, 404)
  t.same(nf.json, { error: { code: 'CP_ERR_NOT_FOUND', message: 'not found: no such endpoint' } })
  const na = await call(h, 'PUT', '/v1/keys/a', { headers: auth() })
  t.equal(na.status, 405)
  t.equal(na.json.error.code, 'CP_ERR_METHOD_NOT_ALLOWED')
  t.equal(na.headers.get('allow'), 'GET, DELETE')
  const del = await call(h, 'DELETE', '/v1/keys/a', { headers: auth() })
  t.equal(del.status, 204)
  t.equal(del.text, '')
})

t.test('an unexpected error is 500 CP_ERR_INTERNAL without its message, and is logged', async (t) => {
  const h = await start(t)
  const r = await call(h, 'GET', '/v1/boom', { headers: auth() })
  t.equal(r.status, 500)
  t.same(r.json, { error: { code: 'CP_ERR_INTERNAL', message: 'internal error' } })
  t.notMatch(r.text, /hunter2/)
  t.ok(h.logs.some((l) => /request failed/.test(l) && /hunter2/.test(l)), 'the operator sees it in the log')
  const big = await call(h, 'GET', '/v1/bigint', { headers: auth() })
  t.equal(big.status, 500, 'a result that cannot be serialised is an internal error')
  const store = await call(h, 'GET', '/v1/store-down', { headers: auth() })
  t.same([store.status, store.json.error.code], [503, 'CP_ERR_STORE'], 'a KeymeshError keeps its own status')
})

t.test('logs redact tokens and secret body fields', async (t) => {
  const h = await start(t)
  await call(h, 'POST', '/v1/keys', { headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'k', type: 'aead', secret: SECRET }) })
  const all = h.logs.join('')
  t.notMatch(all, TOKEN)
  t.notMatch(all, SECRET)
  t.match(all, /"msg":"request body"/)
  t.match(all, /"secret":"\[Redacted\]"/)
  const line = JSON.parse(h.logs.find((l) => /"msg":"request"/.test(l)) as string)
  t.match(line, { method: 'POST', path: '/v1/keys', status: 201, operation: 'key.create', principal: 'alice' })
})

t.test('a route may not claim /healthz', async (t) => {
  const r = route({ method: 'GET', path: '/healthz', operation: 'h', auth: 'none', handler: async () => ({ status: 200 }) })
  t.throws(() => createHttpServer({ routes: [r], logger: pino({ enabled: false }), authenticate: async () => null, authorize: async () => ({ allow: true, reason: '' }) }), /built in/)
})

t.test('listen rejects when the port is taken', async (t) => {
  const h = await start(t)
  const other = createHttpServer({ routes: [], logger: pino({ enabled: false }), authenticate: async () => null, authorize: async () => ({ allow: true, reason: '' }) })
  await t.rejects(other.listen('127.0.0.1', h.port), { code: 'CP_ERR_LISTEN', message: /address already in use/ })
  await other.close()
})

t.test('a port bound before the server is ready: an early connection waits and is answered once it serves', async (t) => {
  const bound = await bindPort('127.0.0.1', 0)
  const early = connect(bound.address.port, '127.0.0.1')
  early.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
  const answer = new Promise<string>((resolve) => {
    let text = ''
    early.on('data', (c: Buffer) => (text += c.toString()))
    early.on('end', () => resolve(text))
  })
  await once(early, 'connect')
  const http = createHttpServer({ routes: [], logger: pino({ enabled: false }), authenticate: async () => null, authorize: async () => ({ allow: true, reason: '' }) })
  t.teardown(() => http.close())
  t.same(await http.serve(bound), bound.address)
  t.match(await answer, /^HTTP\/1\.1 200 /)
  await t.rejects(bound.handOver(http.server), /handed over already/, 'once only')
})

t.test('a bound port closed before the hand-over frees the port and drops who waited', async (t) => {
  const bound = await bindPort('127.0.0.1', 0)
  const early = connect(bound.address.port, '127.0.0.1')
  await once(early, 'connect')
  early.on('error', () => {}) // a reset, when the kernel had not handed it over yet
  const ended = once(early, 'close')
  bound.close()
  bound.close()
  await ended
  const again = await bindPort('127.0.0.1', bound.address.port)
  again.close()
})

t.test('close waits for an in-flight request, closes idle sockets, then refuses connections', async (t) => {
  const h = await start(t)
  // An idle keep-alive socket, left open by a finished request.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const first = httpRequest(`${h.base}/healthz`, { agent })
  first.end()
  const [idleSocket] = (await once(first, 'socket')) as [Socket]
  const [idle] = (await once(first, 'response')) as [IncomingMessage]
  idle.resume()
  await once(idle, 'end')
  const idleClosed = once(idleSocket, 'close')

  const inflight = fetch(`${h.base}/v1/slow`, { method: 'POST', headers: auth() })
  await h.slow.entered.promise
  let closed = false
  const closing = h.http.close().then(() => { closed = true })
  await idleClosed
  t.pass('the idle keep-alive socket was closed')
  await t.rejects(fetch(`${h.base}/healthz`), { cause: { code: 'ECONNREFUSED' } }, 'no new connections')
  t.equal(closed, false, 'close waits for the in-flight request')
  h.slow.release.resolve()
  const res = await inflight
  t.equal(res.status, 200)
  t.same(await res.json(), { done: true })
  t.equal(res.headers.get('connection'), 'close')
  await closing
  t.equal(closed, true)
  t.equal(h.http.close(), h.http.close(), 'close is idempotent')
})

t.test('close aborts in-flight requests after the shutdown timeout', async (t) => {
  const h = await start(t, {}, { shutdownTimeoutMs: 20 })
  const inflight = fetch(`${h.base}/v1/hang`, { headers: auth() }).catch((e: unknown) => e)
  await h.slow.entered.promise
  await h.http.close()
  await h.aborted.promise
  t.pass('the handler saw its signal abort')
  t.type(await inflight, Error, 'the client saw the connection drop')
  t.ok(h.logs.some((l) => /shutdown timeout/.test(l)))
})

t.test('a request arriving on a busy socket during shutdown is refused with 503', async (t) => {
  const h = await start(t)
  const sock = connect(h.port, '127.0.0.1')
  await once(sock, 'connect')
  sock.on('error', () => {})
  sock.write(`POST /v1/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 0\r\n\r\n`)
  await h.slow.entered.promise
  const closing = h.http.close()
  sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  // The pipelined request is refused at once; its answer would queue behind the
  // first, whose `connection: close` ends the socket before it is written.
  await h.logged(/"code":"CP_ERR_SHUTTING_DOWN".*"msg":"request failed"/)
  t.pass('refused with 503 CP_ERR_SHUTTING_DOWN')
  h.slow.release.resolve()
  await closing
})

t.test('upgrades go to the hook on the same port', async (t) => {
  const wss = new WebSocketServer({ noServer: true })
  t.teardown(() => wss.close())
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)))
  let seen = ''
  const h = await start(t, { onUpgrade: (req, socket, head) => {
    seen = req.url ?? ''
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
  } })
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/v1/agent`)
  await once(ws, 'open')
  ws.send('hi')
  const [msg] = await once(ws, 'message')
  t.equal(String(msg), 'echo:hi')
  t.equal(seen, '/v1/agent')
  // The upgraded socket is the hook owner's: close does not wait for it.
  await h.http.close()
  t.equal(ws.readyState, WebSocket.OPEN)
  ws.close()
  await once(ws, 'close')
})

t.test('without a hook, or during shutdown, an upgrade is refused', async (t) => {
  const h = await start(t)
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/v1/agent`)
  ws.on('error', () => {})
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage]
  t.equal(res.statusCode, 404)
  res.resume()
  ws.terminate()
  // During shutdown no new connection can arrive, so drive the handler directly.
  const h2 = await start(t, { onUpgrade: () => t.fail('not during shutdown') })
  const closing = h2.http.close()
  const fake = new PassThrough()
  let written = ''
  fake.on('data', (c: Buffer) => { written += String(c) })
  h2.http.server.emit('upgrade', { url: '/v1/agent', headers: {} }, fake, Buffer.alloc(0))
  await once(fake, 'end')
  t.match(written, /^HTTP\/1.1 503/)
  await closing
})

t.test('a request whose headers do not arrive in time gets 408', async (t) => {
  const h = await start(t, {}, { headersTimeoutMs: 50, requestTimeoutMs: 100, timeoutCheckIntervalMs: 20 })
  const sock = connect(h.port, '127.0.0.1')
  await once(sock, 'connect')
  sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n')
  let got = ''
  sock.on('data', (c: Buffer) => { got += String(c) })
  await once(sock, 'close')
  t.match(got, /^HTTP\/1.1 408/)
})

t.test('a socket error on a refused upgrade destroys that socket instead of crashing the process', async (t) => {
  // Node removes its own error handler from a socket it hands to 'upgrade'; a
  // client resetting the connection then raised an unhandled 'error' event.
  const h = await start(t)
  const fake = new PassThrough()
  h.http.server.emit('upgrade', { url: '/nope', headers: {} }, fake, Buffer.alloc(0))
  t.ok(fake.listenerCount('error') >= 1, 'the upgraded socket has an error listener')
  fake.emit('error', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))
  t.ok(fake.destroyed, 'the socket is destroyed')
  const res = await fetch(`${h.base}/healthz`)
  t.equal(res.status, 200, 'the server keeps serving')
})

t.test('the pipeline runs in order: authenticate, authorize, handler, audit, metrics', async (t) => {
  const seen: string[] = []
  const h = await start(t, {
    authenticate: async (bearer) => { seen.push('authenticate'); return bearer === TOKEN ? { id: 'alice' } : bearer === 'tok-mallory' ? { id: 'mallory' } : null },
    authorize: async (p, op) => { seen.push('authorize'); return { allow: p.id === 'alice', reason: `no ${op}` } },
    onDenied: (e) => { seen.push(`audit:${e.kind}`) },
    onRejected: (e) => { seen.push(`audit:${e.error.code}`) },
    onAnswered: (e) => { seen.push(`metrics:${e.operation}:${e.status}`) },
  })
  const step = async (init: Parameters<typeof call>[3], path = '/v1/keys/a', method = 'GET') => {
    seen.length = 0
    h.logs.length = 0
    const answered = h.logged(/"msg":"request"/)
    await call(h, method, path, init)
    await answered
    return [...seen]
  }
  t.same(await step({ headers: auth() }), ['authenticate', 'authorize', 'metrics:key.get:200'])
  t.same(await step({}), ['authenticate', 'audit:unauthenticated', 'metrics:key.get:401'])
  t.same(await step({ headers: auth('tok-mallory') }), ['authenticate', 'authorize', 'audit:forbidden', 'metrics:key.get:403'])
  t.same(await step({ headers: auth() }, '/v1/keys/a?x=1'), ['authenticate', 'audit:CP_ERR_UNKNOWN_FIELD', 'metrics:key.get:400'], 'bad input is audited, never authorized')
  t.same(await step({ headers: { ...auth(), 'content-type': 'application/json' }, body: '{"name":"k","type":"rsa"}' }, '/v1/keys', 'POST'),
    ['authenticate', 'audit:CP_ERR_INVALID_FIELD', 'metrics:key.create:400'])
  t.same(await step({}, '/v1/nothing'), ['metrics:(unmatched):404'], 'an unknown path is counted, not audited')
  t.same(await step({}, '/healthz'), ['metrics:healthz:200'])
  t.same(await step({}, '/healthz?x=1'), ['metrics:healthz:400'], 'a probe\'s refusal is never audited')
  t.same(await step({ headers: auth() }, '/v1/not-yours'), ['authenticate', 'authorize', 'audit:forbidden', 'metrics:key.use:403'], 'a handler\'s own 403 is audited once')
  t.same(await step({ headers: auth() }, '/v1/store-down'), ['authenticate', 'authorize', 'metrics:x:503'], 'a handler\'s other refusals are its own to audit')
})

t.test('a body of exactly the limit is read; an announced oversized body is refused before it is sent', async (t) => {
  const h = await start(t, {}, { bodyBytes: 27 })
  const exact = '{"name":"k1","type":"aead"}'
  t.equal(Buffer.byteLength(exact), 27)
  t.equal((await call(h, 'POST', '/v1/keys', { headers: { ...auth(), 'content-type': 'application/json' }, body: exact })).status, 201)
  const sock = connect(h.port, '127.0.0.1')
  await once(sock, 'connect')
  sock.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n`)
  let got = ''
  sock.on('data', (c: Buffer) => { got += String(c) })
  await once(sock, 'close')
  t.match(got, /^HTTP\/1\.1 413[^]*"code":"CP_ERR_BODY_TOO_LARGE","message":"[^"]*limit is 27 bytes"/, 'answered and closed without waiting for the body')
})

t.test('a body cut off part-way is a bad request, audited, and the handler never runs', async (t) => {
  const rejected = deferred<string>()
  const h = await start(t, { onRejected: (e) => { rejected.resolve(e.error.code) } })
  const sock = connect(h.port, '127.0.0.1')
  await once(sock, 'connect')
  sock.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":`)
  sock.end()
  t.equal(await rejected.promise, 'CP_ERR_BAD_REQUEST')
  t.same(h.handled, [])
})

t.test('a body in another media type, or a malformed content type, is 415', async (t) => {
  const h = await start(t)
  for (const ct of ['text/plain', 'application/json; charset=latin1', 'not a type']) {
    const r = await call(h, 'POST', '/v1/keys', { headers: { ...auth(), 'content-type': ct }, body: '{}' })
    t.same([r.status, r.json.error.code], [415, 'CP_ERR_UNSUPPORTED_MEDIA_TYPE'], ct)
  }
  const none = await fetch(`${h.base}/v1/keys`, { method: 'POST', headers: auth(), body: new Blob(['{}']) })
  t.equal(none.status, 415, 'a body without a content type')
  await none.text()
  h.slow.release.resolve()
  const empty = await call(h, 'POST', '/v1/slow', { headers: { ...auth(), 'content-type': 'text/plain' }, body: '' })
  t.equal(empty.status, 200, 'an empty body is no body, whatever its declared type')
})
