// What a `--store` PostgreSQL URL means: connection string, schema, a display
// form without the password, and per-installation channel and lock space.
import t from 'tap'

import { PG_LOCKS, isPgUrl, parsePgUrl } from '../../../control-plane/src/store/pg-url.js'

t.test('a URL gives the connection string without our schema parameter, and a display form without the password', async (t) => {
  const l = parsePgUrl('postgres://km:secret@db.example:5433/kms?schema=prod&sslmode=require')
  t.equal(l.connectionString, 'postgres://km:secret@db.example:5433/kms?sslmode=require')
  t.equal(l.display, 'postgres://km:***@db.example:5433/kms?sslmode=require')
  t.equal(l.schema, 'prod')
  t.equal(l.channel, 'keymesh_prod')
  t.ok(Number.isInteger(l.lockSpace) && l.lockSpace >= -(2 ** 31) && l.lockSpace < 2 ** 31, 'the lock space is an int4')
  t.equal(parsePgUrl('postgresql://db/kms').schema, 'public', 'the schema defaults to public')
  t.equal(parsePgUrl('postgres://db/kms').display, 'postgres://db/kms')
})

t.test('installations differ in lock space by host, database and schema', async (t) => {
  const spaces = ['postgres://a/kms?schema=x', 'postgres://b/kms?schema=x', 'postgres://a/other?schema=x', 'postgres://a/kms?schema=y']
    .map((u) => parsePgUrl(u).lockSpace)
  t.equal(new Set(spaces).size, 4)
  t.equal(parsePgUrl('postgres://u:one@a/kms?schema=x').lockSpace, parsePgUrl('postgres://u:two@a/kms?schema=x').lockSpace,
    'credentials do not change the installation')
  t.same(Object.values(PG_LOCKS).length, new Set(Object.values(PG_LOCKS)).size, 'lock purposes are distinct')
})

t.test('unusable URLs are CP_ERR_STORE', async (t) => {
  t.throws(() => parsePgUrl('not a url'), { code: 'CP_ERR_STORE', message: /not a valid URL/ })
  t.throws(() => parsePgUrl('mysql://db/kms'), { code: 'CP_ERR_STORE', message: /unsupported store URL scheme mysql:/ })
  t.throws(() => parsePgUrl('postgres://db/kms?schema=Prod;DROP'), { code: 'CP_ERR_STORE', message: /not a plain lower-case SQL identifier/ })
  t.equal(isPgUrl('POSTGRES://db/kms'), true)
  t.equal(isPgUrl('sqlite:/data'), false)
})
