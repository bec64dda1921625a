// PostgreSQL errors onto the store contract's codes, without values or passwords.
import t from 'tap'

import { isConnectionError, mapPgError, pgErrorText } from '../../../control-plane/src/store/pg-errors.js'
import { toPgSql } from '../../../control-plane/src/store/pg-tx.js'
import { parsePgUrl } from '../../../control-plane/src/store/pg-url.js'

const location = parsePgUrl('postgres://km:pa%24%24word@db.example:5433/kms?schema=prod')
const pgErr = (fields: Record<string, unknown>, message = 'server says no') => Object.assign(new Error(message), fields)

t.test('constraint failures read like SQLite\'s and never carry the values', async (t) => {
  const dup = mapPgError(pgErr({ code: '23505', table: 'agents', constraint: 'agents_static_key_key', detail: 'Key (static_key)=(\\x0101) already exists.' }), location)
  t.match(dup, { code: 'CP_ERR_CONFLICT', message: /UNIQUE constraint failed: agents\.static_key$/ })
  t.notMatch(dup.message, /0101/)
  t.match(mapPgError(pgErr({ code: '23505', table: 'keys', detail: 'Key (pair_a, pair_b)=(a, b) already exists.' }), location),
    { message: /UNIQUE constraint failed: keys\.pair_a, keys\.pair_b$/ })
  t.match(mapPgError(pgErr({ code: '23505', constraint: 'keys_pkey' }), location), { code: 'CP_ERR_CONFLICT', message: /failed: keys_pkey$/ },
    'without a detail line, the constraint names it')
  t.match(mapPgError(pgErr({ code: '23505', detail: 'Key (name)=(x) already exists.' }), location), { message: /failed: name$/ })
  t.match(mapPgError(pgErr({ code: '23503' }), location), { code: 'CP_ERR_NOT_FOUND', message: /referenced record does not exist/ })
  t.match(mapPgError(pgErr({ code: '23514', constraint: 'keys_check' }), location), { code: 'CP_ERR_STORE', message: /CHECK constraint failed: keys_check/ })
  t.match(mapPgError(pgErr({ code: '23502', table: 'keys', column: 'type' }), location), { code: 'CP_ERR_STORE', message: /NOT NULL constraint failed: keys\.type/ })
})

t.test('other server errors keep their SQLSTATE; data errors keep nothing else', async (t) => {
  t.match(mapPgError(pgErr({ code: '25006' }, 'cannot execute INSERT in a read-only transaction'), location),
    { code: 'CP_ERR_STORE', message: /cannot execute INSERT in a read-only transaction \(SQLSTATE 25006\)/ })
  const data = mapPgError(pgErr({ code: '22P02' }, 'invalid input syntax for type bigint: "secret-value"'), location)
  t.match(data, { code: 'CP_ERR_STORE', detail: 'SQLSTATE 22P02' })
  t.notMatch(data.message, /secret-value/)
  t.match(mapPgError(new TypeError('bad call'), location), { code: 'CP_ERR_STORE', detail: 'bad call' })
  t.match(mapPgError('a string', location), { code: 'CP_ERR_STORE', detail: undefined, cause: 'a string' })
  const mine = mapPgError(pgErr({ code: '23503' }), location)
  t.equal(mapPgError(mine, location), mine, 'an error already mapped passes through')
})

t.test('lost and refused connections say where, with the password hidden', async (t) => {
  const refused = Object.assign(new AggregateError([], ''), { code: 'ECONNREFUSED' })
  t.match(mapPgError(refused, location), { code: 'CP_ERR_STORE', message: /database unreachable at postgres:\/\/km:\*\*\*@db\.example:5433\/kms: ECONNREFUSED$/ })
  const echoed = mapPgError(pgErr({}, 'Connection terminated: pa$$word rejected'), location)
  t.match(echoed, { message: /database unreachable at .*: Connection terminated: \*\*\* rejected$/ })
  t.notMatch(echoed.message, /pa\$\$word/)
  for (const e of [pgErr({ code: '57P01' }), pgErr({ code: '08006' }), pgErr({ code: '28000' }), pgErr({ code: '3D000' }), pgErr({ code: 'ETIMEDOUT' }),
    new Error('timeout exceeded when trying to connect'), new Error('Client has encountered a connection error and is not queryable')]) {
    t.equal(isConnectionError(e), true, e.message)
  }
  const odd = mapPgError(pgErr({ code: 'ECONNRESET' }, 'reset while sending a%zz'), parsePgUrl('postgres://u:a%zz@h/db'))
  t.notMatch(odd.message, /a%zz/, 'a password that is not valid percent-encoding is hidden as written')
  t.equal(isConnectionError(pgErr({ code: '23505' })), false)
  t.equal(isConnectionError(null), false)
  const nopw = parsePgUrl('postgres://db.example/kms')
  t.match(mapPgError(pgErr({ code: '57P01' }, 'terminating connection due to administrator command'), nopw),
    { message: /database unreachable at postgres:\/\/db\.example\/kms: terminating connection/ })
})

t.test('placeholders become $1…$n, once per statement text', async (t) => {
  const a = toPgSql('SELECT x FROM t WHERE a = ? AND b IN (?, ?)')
  t.equal(a.text, 'SELECT x FROM t WHERE a = $1 AND b IN ($2, $3)')
  t.equal(toPgSql('SELECT x FROM t WHERE a = ? AND b IN (?, ?)'), a, 'the same text reuses its statement')
  t.not(toPgSql('SELECT 1').name, a.name, 'another text gets another name')
})

t.test('a password given as a URL parameter is hidden too, in every error and in log text', async (t) => {
  const q = parsePgUrl('postgres://km@db.example/kms?password=hunter2&sslpassword=k3y')
  const lost = mapPgError(pgErr({ code: 'ECONNRESET' }, 'reset after hunter2 and k3y'), q)
  t.notMatch(lost.message, /hunter2|k3y/)
  const uncoded = mapPgError(new TypeError('driver echoed hunter2'), q)
  t.equal(uncoded.detail, 'driver echoed ***', 'errors without a code are scrubbed as well')
  t.equal(pgErrorText(new Error('auth failed for hunter2'), q), 'auth failed for ***')
  t.equal(pgErrorText('k3y', q), '***')
  t.equal(pgErrorText(new Error('plain'), location), 'plain')
})
