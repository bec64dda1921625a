import t from 'tap'

import { Router, parseQuery, route, routeFactory, splitTarget, type Route } from '../../../control-plane/src/http/router.js'

const ok = async () => ({ status: 200 })
const r = (method: Route['method'], path: string, operation = 'op'): Route =>
  route({ method, path, operation, auth: 'token', handler: ok })

t.test('finds a route by method and path and decodes its parameters', async (t) => {
  const router = new Router([r('GET', '/v1/keys/:name'), r('POST', '/v1/keys/:name/versions/:version')])
  const m = router.match('GET', '/v1/keys/pay%20ments')
  t.equal(m.kind, 'found')
  if (m.kind === 'found') {
    t.equal(m.route.path, '/v1/keys/:name')
    t.same(m.params, { name: 'pay ments' })
  }
  const m2 = router.match('POST', '/v1/keys/a/versions/3')
  t.same(m2.kind === 'found' && m2.params, { name: 'a', version: '3' })
  t.equal(router.routes.length, 2)
})

t.test('a literal segment wins over a parameter in the same place', async (t) => {
  const router = new Router([r('GET', '/v1/keys/:name', 'key.get'), r('GET', '/v1/keys/export', 'key.export'), r('GET', '/v1/:any/export', 'x')])
  const m = router.match('GET', '/v1/keys/export')
  t.equal(m.kind === 'found' && m.route.operation, 'key.export')
  const m2 = router.match('GET', '/v1/keys/other')
  t.equal(m2.kind === 'found' && m2.route.operation, 'key.get')
})

t.test('a known path with the wrong method lists the allowed methods', async (t) => {
  const router = new Router([r('GET', '/v1/keys'), r('POST', '/v1/keys'), r('DELETE', '/v1/keys/:name')])
  t.same(router.match('PUT', '/v1/keys'), { kind: 'method-not-allowed', allowed: ['GET', 'POST'] })
  t.same(router.match('GET', '/v1/keys/x'), { kind: 'method-not-allowed', allowed: ['DELETE'] })
})

t.test('unknown paths, trailing slashes, empty parameters and relative targets are not found', async (t) => {
  const router = new Router([r('GET', '/v1/keys/:name')])
  for (const p of ['/v1/keys', '/v1/keys/', '/v1/keys/a/', '/v1/keys//', '/v2/keys/a', 'v1/keys/a', 'http://h/v1/keys/a', '/v1/keyz/a']) {
    t.same(router.match('GET', p), { kind: 'not-found' }, p)
  }
})

t.test('a malformed percent-encoding in a parameter is a bad request', async (t) => {
  const router = new Router([r('GET', '/v1/keys/:name')])
  t.throws(() => router.match('GET', '/v1/keys/%E0%A4%A'), { code: 'CP_ERR_BAD_REQUEST' })
})

t.test('refuses route tables that would be ambiguous or malformed', async (t) => {
  t.throws(() => new Router([r('GET', '/v1/keys/:a'), r('GET', '/v1/keys/:b')]), /duplicate route/)
  t.throws(() => new Router([r('GET', '/v1/:a/:a')]), /bad or repeated parameter/)
  t.throws(() => new Router([r('GET', '/v1/:1x')]), /bad or repeated parameter/)
  t.throws(() => new Router([r('GET', 'v1/keys')]), /must start with \//)
  t.throws(() => new Router([r('HEAD' as Route['method'], '/v1/keys')]), /unsupported method/)
  t.doesNotThrow(() => new Router([r('GET', '/v1/keys/:a'), r('POST', '/v1/keys/:b')]))
})

t.test('routeFactory types routes for a principal and returns the spec unchanged', async (t) => {
  const typed = routeFactory<{ id: string; role: 'admin' }>()
  const spec = { method: 'GET', path: '/x', operation: 'x', auth: 'token', handler: async (ctx: { principal: { role: string } }) => ({ status: 200, body: ctx.principal.role }) } as const
  t.equal(typed(spec), spec)
})

t.test('parseQuery splits parameters and refuses repeats', async (t) => {
  t.same(parseQuery('a=1&b=two%20words'), { a: '1', b: 'two words' })
  t.same(parseQuery(''), {})
  t.throws(() => parseQuery('a=1&a=2'), { code: 'CP_ERR_BAD_REQUEST' })
})

t.test('splitTarget separates path and query string', async (t) => {
  t.same(splitTarget('/v1/keys?limit=5'), { path: '/v1/keys', search: 'limit=5' })
  t.same(splitTarget('/v1/keys'), { path: '/v1/keys', search: '' })
})
