// Routing of the admin API, as a client sees it: fastify routes, the server adds
// 405 with Allow and keymesh's error bodies.
import t, { type Test } from 'tap'
import { pino } from 'pino'

import { createHttpServer, type AnsweredEvent } from '../../../control-plane/src/http/server.js'
import { route, routeFactory, type Route } from '../../../control-plane/src/http/router.js'

const r = (method: Route['method'], path: string, operation = 'op'): Route =>
  route({ method, path, operation, auth: 'none', handler: async (ctx) => ({ status: 200, body: { operation: ctx.operation, params: ctx.params, pattern: ctx.pattern } }) })

async function serve(t: Test, routes: Route[]): Promise<{ get(method: string, path: string): Promise<{ status: number; json: any; allow: string | null }>; answered: AnsweredEvent[] }> {
  const answered: AnsweredEvent[] = []
  const http = createHttpServer({ routes, logger: pino({ enabled: false }), authenticate: async () => null, authorize: async () => ({ allow: true, reason: '' }), onAnswered: (e) => answered.push(e) })
  const { port } = await http.listen('127.0.0.1', 0)
  t.teardown(() => http.close())
  return {
    answered,
    async get(method, path) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method })
      const text = await res.text()
      return { status: res.status, json: text === '' ? undefined : JSON.parse(text), allow: res.headers.get('allow') }
    },
  }
}

t.test('finds a route by method and path and decodes its parameters', async (t) => {
  const s = await serve(t, [r('GET', '/v1/keys/:name'), r('POST', '/v1/keys/:name/versions/:version')])
  t.same((await s.get('GET', '/v1/keys/pay%20ments')).json, { operation: 'op', params: { name: 'pay ments' }, pattern: '/v1/keys/:name' })
  t.same((await s.get('POST', '/v1/keys/a/versions/3')).json.params, { name: 'a', version: '3' })
})

t.test('a literal segment wins over a parameter in the same place', async (t) => {
  const s = await serve(t, [r('GET', '/v1/keys/:name', 'key.get'), r('GET', '/v1/keys/export', 'key.export'), r('GET', '/v1/:any/export', 'x')])
  t.equal((await s.get('GET', '/v1/keys/export')).json.operation, 'key.export')
  t.equal((await s.get('GET', '/v1/keys/other')).json.operation, 'key.get')
})

t.test('a known path with the wrong method lists the allowed methods; another method\'s route still wins', async (t) => {
  const s = await serve(t, [r('GET', '/v1/keys'), r('POST', '/v1/keys'), r('DELETE', '/v1/keys/:name'), r('GET', '/v1/keys/export', 'key.export')])
  const put = await s.get('PUT', '/v1/keys')
  t.same([put.status, put.json.error.code, put.allow], [405, 'CP_ERR_METHOD_NOT_ALLOWED', 'GET, POST'])
  t.equal((await s.get('GET', '/v1/keys/x')).allow, 'DELETE')
  t.equal((await s.get('DELETE', '/v1/keys/export')).status, 200, 'DELETE /v1/keys/:name matches /v1/keys/export')
  t.equal((await s.get('HEAD', '/v1/keys')).status, 405, 'no HEAD routes are made up')
  t.match(s.answered, [{ operation: '(unmatched)', status: 405 }])
})

t.test('unknown paths, trailing slashes and empty parameters are not found', async (t) => {
  const s = await serve(t, [r('GET', '/v1/keys/:name')])
  for (const p of ['/v1/keys', '/v1/keys/', '/v1/keys/a/', '/v1/keys//', '/v2/keys/a', '/v1/keyz/a']) {
    const a = await s.get('GET', p)
    t.same([a.status, a.json.error.code], [404, 'CP_ERR_NOT_FOUND'], p)
  }
  t.equal((await s.get('POST', '/healthz')).status, 404, 'the built-in probe is no route of the table')
})

t.test('a malformed percent-encoding in a parameter is a bad request', async (t) => {
  const s = await serve(t, [r('GET', '/v1/keys/:name')])
  const a = await s.get('GET', '/v1/keys/%E0%A4%A')
  t.same([a.status, a.json.error.code], [400, 'CP_ERR_BAD_REQUEST'])
  t.match(s.answered, [{ operation: '(unmatched)', status: 400 }], 'counted like any answer')
})

t.test('refuses route tables that would be ambiguous', async (t) => {
  const make = (routes: Route[]) => createHttpServer({ routes, logger: pino({ enabled: false }), authenticate: async () => null, authorize: async () => ({ allow: true, reason: '' }) })
  t.throws(() => make([r('GET', '/v1/keys/:a'), r('GET', '/v1/keys/:b')]))
  t.throws(() => make([r('GET', '/v1/keys'), r('GET', '/v1/keys')]))
  t.throws(() => make([r('GET', '/healthz')]), /built in/)
  t.doesNotThrow(() => make([r('GET', '/v1/keys/:a'), r('POST', '/v1/keys/:b')]))
})

t.test('routeFactory types routes for a principal and returns the spec unchanged', async (t) => {
  const typed = routeFactory<{ id: string; role: 'admin' }>()
  const spec = { method: 'GET', path: '/x', operation: 'x', auth: 'token', handler: async (ctx: { principal: { role: string } }) => ({ status: 200, body: ctx.principal.role }) } as const
  t.equal(typed(spec), spec)
})
