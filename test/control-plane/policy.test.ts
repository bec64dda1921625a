import t from 'tap'

import { createNodeSuite, nodeSuite } from '../../protocol/src/index.js'
import {
  OPERATIONS,
  OPERATOR_ROLES,
  RIGHTS,
  authorizeOperator,
  authorizeService,
  hashToken,
  hashTokenBytes,
  mayConnect,
  activeIntentions,
  newToken,
  parseRights,
  parseToken,
  tokenHashEquals,
  type Grant,
  type Operation,
  type OperatorRole,
} from '../../control-plane/src/policy.js'

// Every role × every operation, written out: A = admin, O = operator, U = auditor.
const MATRIX: Record<Operation, string> = {
  'key.create': 'AO',
  'key.get': 'AOU',
  'key.list': 'AOU',
  'key.public': 'AOU',
  'key.rotate': 'AO',
  'key.update': 'AO',
  'key.state': 'AO',
  'key.import': 'AO',
  'key.grant': 'A',
  'intention.allow': 'AO',
  'intention.deny': 'AO',
  'intention.remove': 'AO',
  'intention.list': 'AOU',
  'pair.rotate': 'AO',
  'pair.list': 'AOU',
  'join-token.create': 'A',
  'join-token.list': 'AOU',
  'join-token.revoke': 'A',
  'agents.list': 'AOU',
  'agents.revoke': 'AO',
  'token.create': 'A',
  'token.list': 'A',
  'token.revoke': 'A',
  'audit.read': 'AOU',
  'audit.verify': 'AOU',
  'audit.export': 'AOU',
  'log.level': 'AO',
  'backup.create': 'A',
  'custody.seal': 'A',
  'custody.rekey': 'A',
  'console.read': 'AOU',
  'console.session': 'AOU',
  'console.link': 'AOU',
}
const LETTER: Record<OperatorRole, string> = { admin: 'A', operator: 'O', auditor: 'U' }

t.test('every role × operation is decided exactly as the matrix says', async (t) => {
  t.same([...OPERATIONS].sort(), Object.keys(MATRIX).sort(), 'the matrix covers every operation')
  let cells = 0
  for (const role of OPERATOR_ROLES) {
    for (const op of OPERATIONS) {
      cells++
      const want = MATRIX[op].includes(LETTER[role])
      const d = authorizeOperator(role, op)
      t.equal(d.allow, want, `${role} ${want ? 'may' : 'may not'} ${op}`)
      t.match(d.reason, new RegExp(`^role ${role} may ${want ? '' : 'not '}${op.replace('.', '\\.')}`), `${role}/${op} says why`)
    }
  }
  t.equal(cells, 3 * OPERATIONS.length)
})

t.test('denials say which rule refused', async (t) => {
  t.match(authorizeOperator('operator', 'token.create').reason, /token management is admin-only/)
  t.match(authorizeOperator('operator', 'key.grant').reason, /grants and join tokens are admin-only/)
  t.match(authorizeOperator('operator', 'join-token.create').reason, /grants and join tokens are admin-only/)
  t.match(authorizeOperator('auditor', 'key.rotate').reason, /auditors are read-only/)
})

t.test('an unknown role or operation is denied', async (t) => {
  t.same(authorizeOperator('root' as OperatorRole, 'key.list'), { allow: false, reason: 'unknown role "root"' })
  t.same(authorizeOperator('admin', 'key.delete' as Operation), { allow: false, reason: 'unknown operation "key.delete"' })
})

t.test('a service may use a key only for the rights it was granted', async (t) => {
  const grants: Grant[] = [
    { keyName: 'orders', service: 'shop', rights: ['encrypt', 'generate-data-key'] },
    { keyName: 'orders', service: 'billing', rights: ['decrypt'] },
    { keyName: 'orders', service: 'ops', rights: ['rotate', 'manage'] },
    { keyName: 'invoices', service: 'billing', rights: ['encrypt'] },
  ]
  const HELD: Record<string, string[]> = {
    shop: ['encrypt', 'generate-data-key'],
    billing: ['decrypt'],
    ops: ['rotate', 'manage'],
  }
  for (const service of Object.keys(HELD)) {
    for (const right of RIGHTS) {
      const want = HELD[service]?.includes(right) ?? false
      const d = authorizeService(grants, service, 'orders', right)
      t.equal(d.allow, want, `${service} ${want ? 'may' : 'may not'} ${right} on orders`)
      if (want) t.equal(d.reason, `service ${service} holds ${right} on key orders`)
      else t.equal(d.reason, `service ${service} lacks ${right} on key orders (holds ${HELD[service]?.join(', ')})`)
    }
  }
})

t.test('a grant on one key says nothing about another, and no grant means deny', async (t) => {
  const grants: Grant[] = [{ keyName: 'invoices', service: 'billing', rights: ['encrypt'] }]
  t.same(authorizeService(grants, 'billing', 'orders', 'encrypt'), { allow: false, reason: 'service billing has no grant on key orders' })
  t.same(authorizeService([], 'shop', 'orders', 'decrypt'), { allow: false, reason: 'service shop has no grant on key orders' })
})

t.test('several grants for one service and key add up', async (t) => {
  const grants: Grant[] = [
    { keyName: 'orders', service: 'shop', rights: ['encrypt'] },
    { keyName: 'orders', service: 'shop', rights: ['decrypt'] },
  ]
  t.ok(authorizeService(grants, 'shop', 'orders', 'encrypt').allow)
  t.ok(authorizeService(grants, 'shop', 'orders', 'decrypt').allow)
  t.match(authorizeService(grants, 'shop', 'orders', 'manage').reason, /holds encrypt, decrypt\)$/)
})

t.test('rights parse from the CLI form and unknown ones are refused', async (t) => {
  t.same(parseRights('encrypt,decrypt,generate-data-key'), ['encrypt', 'decrypt', 'generate-data-key'])
  t.same(parseRights(' decrypt , decrypt,'), ['decrypt'], 'spaces, repeats and a trailing comma are tolerated')
  t.same(parseRights('hmac,sign,verify'), ['hmac', 'sign', 'verify'], 'the signature rights')
  t.throws(() => parseRights('encrypt,teleport'), { code: 'CP_ERR_BAD_REQUEST', message: /unknown right "teleport"/ })
  t.throws(() => parseRights(' , '), { code: 'CP_ERR_BAD_REQUEST', message: /no rights given/ })
})

t.test('connections are denied unless an intention allows that direction', async (t) => {
  const intentions = [{ src: 'web', dst: 'api' }, { src: 'api', dst: 'db' }]
  t.same(mayConnect(intentions, 'web', 'api'), { allow: true, reason: 'intention allows web → api' })
  t.same(mayConnect(intentions, 'api', 'web'), { allow: false, reason: 'no intention allows api → web' }, 'intentions are one-way')
  t.notOk(mayConnect(intentions, 'web', 'db').allow, 'not transitive')
  t.notOk(mayConnect([], 'web', 'api').allow, 'default deny')
})

t.test('a deny wins over every allow it matches; * matches any service; removed rules stop at their end', async (t) => {
  const rules = [
    { src: 'web', dst: '*', effect: 'allow' as const },
    { src: 'web', dst: 'db', effect: 'deny' as const },
    { src: '*', dst: 'logs', effect: 'allow' as const },
  ]
  t.same(mayConnect(rules, 'web', 'api'), { allow: true, reason: 'intention allow web → * allows web → api' })
  t.same(mayConnect(rules, 'web', 'db'), { allow: false, reason: 'intention deny web → db denies web → db' })
  t.ok(mayConnect(rules, 'db', 'logs').allow)
  t.notOk(mayConnect(rules, 'logs', 'db').allow, 'wildcards keep the direction')
  t.notOk(mayConnect([...rules, { src: '*', dst: '*', effect: 'deny' as const }], 'web', 'logs').allow, 'deny * * blocks everything')
  const timed = [{ src: 'a', dst: 'b', expiresAt: 100 }, { src: 'b', dst: 'a', expiresAt: null }]
  t.same(activeIntentions(timed, 99), timed)
  t.same(activeIntentions(timed, 100), [timed[1]], 'a removed rule ends at its expiry')
})

t.test('new tokens carry their prefix and 32 random bytes in base64url', async (t) => {
  for (const [kind, prefix] of [['admin', 'kmo_'], ['operator', 'kmo_'], ['join', 'kmj_']] as const) {
    const tok = newToken(nodeSuite, kind)
    t.match(tok, new RegExp(`^${prefix}[A-Za-z0-9_-]{43}$`), `${kind} token form`)
    t.equal(Buffer.from(tok.slice(4), 'base64url').length, 32)
    t.same(parseToken(tok), { kind: kind === 'join' ? 'join' : 'operator' })
  }
  t.not(newToken(nodeSuite, 'join'), newToken(nodeSuite, 'join'), 'two tokens differ')
  const fixed = createNodeSuite({ random: (n) => new Uint8Array(n).fill(0xff) })
  t.equal(newToken(fixed, 'operator'), 'kmo_' + '_'.repeat(42) + '8', 'the body is exactly the random bytes')
})

t.test('malformed tokens are refused with CP_ERR_TOKEN_FORM and the token is never echoed', async (t) => {
  const good = newToken(nodeSuite, 'operator')
  const body = good.slice(4)
  const bad: Array<[unknown, RegExp]> = [
    [undefined, /not a string/],
    [42, /not a string/],
    ['', /unknown prefix/],
    ['kmx_' + body, /unknown prefix/],
    ['KMO_' + body, /unknown prefix/],
    ['kmo_' + body.slice(1), /43 base64url characters/],
    ['kmo_' + body + 'A', /43 base64url characters/],
    ['kmo_' + body.slice(1) + '=', /43 base64url characters/],
    ['kmo_' + body.slice(1) + '+', /43 base64url characters/],
    [good + '\n', /43 base64url characters/],
    ['kmo_' + 'A'.repeat(42) + 'B', /43 base64url characters/], // stray low bits: non-canonical
  ]
  for (const [text, why] of bad) {
    const e = t.throws(() => parseToken(text), { code: 'CP_ERR_TOKEN_FORM', status: 401, message: why }, `${JSON.stringify(text)?.slice(0, 20)} is refused`)
    if (typeof text === 'string' && text.length > 8) {
      t.ok(e instanceof Error, 'the refusal is an error')
      t.notOk((e as Error).message.includes(text.slice(4, 20)), 'its message does not repeat the token')
    }
  }
  t.same(parseToken('kmo_' + 'A'.repeat(42) + 'A'), { kind: 'operator' }, 'canonical all-zero body parses')
})

t.test('a token of the other class is refused where one class is expected', async (t) => {
  const join = newToken(nodeSuite, 'join')
  const op = newToken(nodeSuite, 'admin')
  t.same(parseToken(join, 'join'), { kind: 'join' })
  t.same(parseToken(op, 'operator'), { kind: 'operator' })
  t.throws(() => parseToken(join, 'operator'), { code: 'CP_ERR_TOKEN_FORM', message: /join token given where operator token is required/ })
  t.throws(() => parseToken(op, 'join'), { code: 'CP_ERR_TOKEN_FORM' })
})

t.test('a token is stored as the hex SHA-256 of its whole text', async (t) => {
  t.equal(hashToken(nodeSuite, 'abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'FIPS 180-2 "abc" vector')
  const tok = newToken(nodeSuite, 'operator')
  t.equal(hashToken(nodeSuite, tok), hashToken(nodeSuite, tok))
  t.not(hashToken(nodeSuite, tok), hashToken(nodeSuite, 'kmj_' + tok.slice(4)), 'the prefix is hashed too')
  t.notMatch(hashToken(nodeSuite, tok), tok.slice(4))
})

t.test('token hashes compare equal only when identical', async (t) => {
  const a = hashToken(nodeSuite, newToken(nodeSuite, 'operator'))
  const b = hashToken(nodeSuite, newToken(nodeSuite, 'operator'))
  t.ok(tokenHashEquals(a, a))
  t.ok(tokenHashEquals(a, String(a)))
  t.notOk(tokenHashEquals(a, b))
  t.notOk(tokenHashEquals(a, a.slice(0, 63) + (a.endsWith('0') ? '1' : '0')), 'last character differs')
  t.notOk(tokenHashEquals(a, a.slice(0, 63)), 'different length')
  t.notOk(tokenHashEquals('', ''), 'empty strings are not hashes')
  t.notOk(tokenHashEquals(a.toUpperCase(), a.toUpperCase()), 'upper-case hex is not the stored form')
})

t.test('hex and raw hashes of the same token compare equal', async (t) => {
  const tok = newToken(nodeSuite, 'join')
  const raw = hashTokenBytes(nodeSuite, tok)
  const hex = hashToken(nodeSuite, tok)
  t.equal(raw.length, 32)
  t.equal(Buffer.from(raw).toString('hex'), hex)
  t.ok(tokenHashEquals(raw, hex))
  t.ok(tokenHashEquals(new Uint8Array(raw), raw))
  t.notOk(tokenHashEquals(raw, hashTokenBytes(nodeSuite, tok + 'x')))
  t.notOk(tokenHashEquals(raw.subarray(1), raw.subarray(1)), '31 bytes are not a hash')
  const inner = new Uint8Array(40)
  inner.set(raw, 4)
  t.ok(tokenHashEquals(inner.subarray(4, 36), hex), 'a view into a larger buffer compares by its own bytes')
})
