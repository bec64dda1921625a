// The admin API's schema validator. Reading and parsing bodies is fastify's and
// platform/http-json's (test/platform/http-json.test.ts); what a client sees of
// both is in server.test.ts.
import t from 'tap'

import { DEFAULT_BODY_LIMIT, validateBody, validateQuery, type ObjectSchema } from '../../../control-plane/src/http/body.js'

t.test('the default limit is 1 MiB', async (t) => {
  t.equal(DEFAULT_BODY_LIMIT, 1048576)
})

const keySchema = {
  fields: {
    name: { type: 'string', pattern: /^[a-z][a-z0-9-]*$/, minLength: 2, maxLength: 8 },
    type: { type: 'string', enum: ['aead', 'x25519'] },
    versions: { type: 'integer', min: 1, max: 10, optional: true },
    exportable: { type: 'boolean', optional: true },
    labels: { type: 'array', items: { type: 'string', maxLength: 4 }, minItems: 1, maxItems: 2, optional: true },
    owner: { type: 'object', optional: true, fields: { service: { type: 'string' }, team: { type: 'string', optional: true } } },
  },
} as const satisfies ObjectSchema

t.test('a valid body comes back with its declared fields and types', async (t) => {
  const v = validateBody(keySchema, { name: 'pay', type: 'aead', versions: 3, exportable: false, labels: ['a'], owner: { service: 's' } })
  t.same(v, { name: 'pay', type: 'aead', versions: 3, exportable: false, labels: ['a'], owner: { service: 's' } })
  const typed: 'aead' | 'x25519' = v.type
  const optional: number | undefined = v.versions
  t.equal(typed, 'aead')
  t.equal(optional, 3)
  t.same(validateBody({ fields: { a: { type: 'string', optional: true } } }, undefined), {}, 'an absent body is {}')
})

t.test('refuses an unknown field, naming it', async (t) => {
  t.throws(() => validateBody(keySchema, { name: 'pay', type: 'aead', colour: 'red' }), { code: 'CP_ERR_UNKNOWN_FIELD', message: /: colour$/ })
  t.throws(() => validateBody(keySchema, { name: 'pay', type: 'aead', owner: { service: 's', x: 1 } }), { message: /owner\.x$/ })
  t.throws(() => validateBody(keySchema, JSON.parse('{"name":"pay","type":"aead","__proto__":{"admin":true}}')), { code: 'CP_ERR_UNKNOWN_FIELD', message: /__proto__/ })
  const long = 'f'.repeat(100) + '\u001b[31m'
  const err = t.throws(() => validateBody(keySchema, { [long]: 1 })) as Error
  t.notMatch(err.message, /\u001b/, 'control characters in a field name are not echoed')
  t.match(err.message, /f{64}…$/, 'long field names are cut')
})

t.test('refuses wrong types and broken rules, naming the field but never the value', async (t) => {
  const base = { name: 'pay', type: 'aead' }
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ type: 'aead' }, /name is required/],
    [{ ...base, name: 42 }, /name must be a string/],
    [{ ...base, name: 'SECRETVALUE' }, /name must be at most 8/],
    [{ ...base, name: 'a' }, /name must be at least 2/],
    [{ ...base, name: 'Sec-x' }, /name must match \/\^\[a-z\]/],
    [{ ...base, type: 'rsa-secret' }, /type must be one of aead, x25519/],
    [{ ...base, versions: 1.5 }, /versions must be an integer/],
    [{ ...base, versions: '3' }, /versions must be an integer/],
    [{ ...base, versions: 0 }, /versions must be at least 1/],
    [{ ...base, versions: 11 }, /versions must be at most 10/],
    [{ ...base, exportable: 'yes' }, /exportable must be true or false/],
    [{ ...base, labels: 'a' }, /labels must be an array/],
    [{ ...base, labels: [] }, /labels must have at least 1/],
    [{ ...base, labels: ['a', 'b', 'c'] }, /labels must have at most 2/],
    [{ ...base, labels: ['a', 'toolongsecret'] }, /labels\[1\] must be at most 4/],
    [{ ...base, owner: [] }, /owner must be an object/],
    [{ ...base, owner: {} }, /owner\.service is required/],
  ]
  for (const [body, message] of cases) {
    const err = t.throws(() => validateBody(keySchema, body), { code: 'CP_ERR_INVALID_FIELD', status: 400, message }) as Error
    t.notMatch(err.message, /SECRET|secret|rsa|yes|toolong/, 'the value is not echoed')
  }
  t.throws(() => validateBody(keySchema, [1]), { code: 'CP_ERR_INVALID_FIELD', message: /body must be an object/ })
  t.throws(() => validateBody(keySchema, null), { message: /body must be an object/ })
})

t.test('query parameters are coerced by type and checked like body fields', async (t) => {
  const q = { limit: { type: 'integer', min: 1, max: 100, optional: true }, desc: { type: 'boolean', optional: true }, actor: { type: 'string', optional: true } } as const
  t.same(validateQuery(q, { limit: '20', desc: 'true', actor: 'alice' }), { limit: 20, desc: true, actor: 'alice' })
  t.same(validateQuery(q, { desc: 'false' }), { desc: false })
  t.throws(() => validateQuery(q, { limit: 'ten' }), { code: 'CP_ERR_INVALID_FIELD', message: /limit must be an integer/ })
  t.throws(() => validateQuery(q, { limit: '0' }), { message: /limit must be at least 1/ })
  t.throws(() => validateQuery(q, { desc: 'yes' }), { message: /desc must be true or false/ })
  t.throws(() => validateQuery(q, { other: '1' }), { code: 'CP_ERR_UNKNOWN_FIELD', message: /query parameter other/ })
})
