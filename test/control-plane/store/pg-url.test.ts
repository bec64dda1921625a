// What a `--store` PostgreSQL URL means: connection string, schema, a display
// form without the password, and per-installation channel and lock space.
import t from 'tap'
import { userInfo } from 'node:os'

import { PG_LOCKS, isPgUrl, parsePgUrl, redactStoreSpec } from '../../../control-plane/src/store/pg-url.js'

t.test('a URL gives the connection string without our schema parameter, and a display form without the password', async (t) => {
  const l = parsePgUrl('postgres://km:secret@db.example:5433/kms?schema=prod&sslmode=require')
  t.equal(l.connectionString, 'postgres://km:secret@db.example:5433/kms?sslmode=require')
  t.equal(l.display, 'postgres://km:***@db.example:5433/kms', 'display: no password, no query parameters')
  t.equal(l.schema, 'prod')
  t.match(l.channel, /^keymesh_[0-9a-f]{16}$/)
  t.ok(Number.isInteger(l.lockSpace) && l.lockSpace >= -(2 ** 31) && l.lockSpace < 2 ** 31, 'the lock space is an int4')
  t.equal(parsePgUrl('postgresql://db/kms').schema, 'public', 'the schema defaults to public')
  t.equal(parsePgUrl('postgres://db/kms').display, 'postgres://db/kms')
})

t.test('the schema alone names the installation: any spelling of the server shares its locks and channel', async (t) => {
  // Advisory locks and channels are per database already; a host in the key made
  // 127.0.0.1 and localhost two installations that ignored each other's write lock.
  const same = ['postgres://127.0.0.1:5432/kms?schema=x', 'postgres://localhost/kms?schema=x', 'postgres://u:one@db/kms?schema=x']
    .map((u) => parsePgUrl(u))
  t.equal(new Set(same.map((l) => l.lockSpace)).size, 1)
  t.equal(new Set(same.map((l) => l.channel)).size, 1)
  const x = parsePgUrl('postgres://a/kms?schema=x')
  const y = parsePgUrl('postgres://a/kms?schema=y')
  t.not(x.lockSpace, y.lockSpace, 'schemas differ in lock space')
  t.not(x.channel, y.channel, 'and in channel')
  const long = parsePgUrl(`postgres://a/kms?schema=${'s'.repeat(63)}`)
  t.ok(long.channel.length <= 63, 'a channel is a valid identifier even for the longest schema name')
  t.same(Object.values(PG_LOCKS).length, new Set(Object.values(PG_LOCKS)).size, 'lock purposes are distinct')
})

t.test('unusable URLs are CP_ERR_STORE', async (t) => {
  t.throws(() => parsePgUrl('not a url'), { code: 'CP_ERR_STORE', message: /not a valid URL/ })
  t.throws(() => parsePgUrl('mysql://db/kms'), { code: 'CP_ERR_STORE', message: /unsupported store URL scheme mysql:/ })
  t.throws(() => parsePgUrl('postgres://db/kms?schema=Prod;DROP'), { code: 'CP_ERR_STORE', message: /not a plain lower-case SQL identifier/ })
  t.throws(() => parsePgUrl('postgres://db/kms?options=-c%20search_path%3Dpublic'), { code: 'CP_ERR_STORE', message: /may not set options/ })
  t.equal(isPgUrl('POSTGRES://db/kms'), true)
  t.equal(isPgUrl('sqlite:/data'), false)
})

t.test('passwords never show: not in the userinfo, not as a query parameter, not in specs that are not ours', async (t) => {
  const l = parsePgUrl('postgres://u@h/db?password=hunter2&sslpassword=pw2')
  t.notMatch(l.display, /hunter2|pw2/)
  t.equal(l.display, 'postgres://u@h/db')
  t.equal(redactStoreSpec('mysql://u:hunter2@h/db'), 'mysql://u:***@h/db')
  t.equal(redactStoreSpec('postgres://h/db?password=hunter2'), 'postgres://h/db')
  t.equal(redactStoreSpec('kms password=hunter2'), 'kms password=hunter2', 'not a URL and no query: unchanged')
  t.equal(redactStoreSpec('weird?password=hunter2'), 'weird?password=***')
})

t.test('with no user in the URL and none in the environment, the operating-system user is used, as libpq does', async (t) => {
  const saved = { USER: process.env['USER'], PGUSER: process.env['PGUSER'] }
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v
  })
  delete process.env['USER']
  delete process.env['PGUSER']
  const l = parsePgUrl('postgres://db/kms')
  t.equal(new URL(l.connectionString).username, encodeURIComponent(userInfo().username))
  t.equal(l.display, 'postgres://db/kms', 'the display form shows what was given')
  process.env['USER'] = 'someone'
  t.equal(new URL(parsePgUrl('postgres://db/kms').connectionString).username, '', 'with $USER set, pg picks it itself')
  t.equal(new URL(parsePgUrl('postgres://kms@db/kms').connectionString).username, 'kms', 'a user in the URL is kept')
})

t.test('a URL that names no database is refused (pg would quietly use the user\'s default one)', async (t) => {
  t.throws(() => parsePgUrl('postgres://db'), { code: 'CP_ERR_STORE', message: /name the database/ })
  t.throws(() => parsePgUrl('postgres://db/?schema=x'), { code: 'CP_ERR_STORE', message: /name the database/ })
})
