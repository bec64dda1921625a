// The JSON body rules both HTTP APIs share, and the 405 method lookup.
import t from 'tap'

import { allowedMethods, parseJsonBody, type JsonBodyErrors } from '../../platform/src/index.js'

const errors: JsonBodyErrors = {
  mediaType: () => Object.assign(new Error('media'), { code: 'MEDIA' }),
  notUtf8: () => Object.assign(new Error('not UTF-8'), { code: 'UTF8' }),
  badJson: () => Object.assign(new Error('bad json'), { code: 'JSON' }),
}
const parse = (ct: string | undefined, body: string | Buffer) => parseJsonBody(ct, Buffer.from(body), errors)

t.test('reads a JSON body', async (t) => {
  t.same(parse('application/json', '{"a":1}'), { a: 1 })
  t.same(parse('Application/JSON; charset="UTF-8"', '[1]'), [1])
  t.same(parse('application/json; boundary=x', '{}'), {})
})

t.test('an empty body is undefined, whatever its content type', async (t) => {
  t.equal(parse(undefined, ''), undefined)
  t.equal(parse('text/plain', ''), undefined)
})

t.test('malformed JSON is refused without quoting the input', async (t) => {
  const err = t.throws(() => parse('application/json', '{"secret": hunter2}'), { code: 'JSON' }) as Error
  t.notMatch(err.message, /hunter2/)
  t.throws(() => parse('application/json', Buffer.from([0x22, 0xff, 0x22])), { code: 'UTF8' })
})

t.test('a body that is not application/json in UTF-8 is refused', async (t) => {
  for (const ct of [undefined, 'text/plain', 'application/json; charset=latin1', 'application/jsonx']) {
    t.throws(() => parse(ct, '{}'), { code: 'MEDIA' }, String(ct))
  }
})

t.test('allowedMethods lists the methods of every pattern a path matches', async (t) => {
  const allowed = allowedMethods([
    { method: 'GET', path: '/v1/keys' }, { method: 'POST', path: '/v1/keys' }, { method: 'GET', path: '/v1/keys/:name' },
    { method: 'DELETE', path: '/v1/keys/:name' }, { method: 'GET', path: '/v1/keys/export' }, { method: 'GET', path: '/v1/a.b' },
  ])
  t.same(allowed('/v1/keys'), ['GET', 'POST'])
  t.same(allowed('/v1/keys/export'), ['GET', 'DELETE'])
  t.same(allowed('/v1/keys/'), [])
  t.same(allowed('/v1/keys/a/b'), [])
  t.same(allowed('/v1/aXb'), [], 'a dot in a pattern is a dot')
})
