// `keymesh store migrate` as an operator runs it, offline (no control plane API
// involved in the copy): an installation made by a real control plane on SQLite
// moves to PostgreSQL, and a control plane started there with the old master key
// is the same installation — identity, tokens, agents, keys that still decrypt,
// an audit chain that verifies and goes on. Then every refusal: one line on
// stderr, a non-zero exit, nothing written.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import yargs from 'yargs'

import { storeCommand } from '../../../cli/commands/store.js'
import { SQLITE_MIGRATIONS, openSqliteStore } from '../../../control-plane/src/index.js'
import { Database } from '../../../control-plane/src/index.js'
import { cliContext, runCli } from '../../kit/cli.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { bytes, kmsAgent, text } from '../../kit/kms.js'
import { pgExec, pgSchema } from '../../kit/pg.js'

/** The newest schema version (migration numbers may have gaps). */
const LATEST = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version))

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
}

interface Installation {
  readonly h: TestControlPlane
  readonly dir: string
  readonly agent: FakeAgent
  /** Made through the KMS before the move. */
  readonly ciphertext: string
}

const migrate = (from: string, to: string, ...more: string[]) => runCli(['store', 'migrate', '--from', `sqlite:${from}`, '--to', to, ...more])

async function ok(t: { equal(a: unknown, b: unknown): void }, res: Promise<{ status: number }>, status = 200): Promise<void> {
  t.equal((await res).status, status)
}

/** A SQLite installation with keys (aead and pair, several versions), grants, an intention, an enrolled agent, usage and audit. */
async function installation(t: Tap & { equal(a: unknown, b: unknown): void }, dir: string): Promise<Installation> {
  const h = await startTestControlPlane(t, { dataDir: dir })
  await ok(t, h.api('POST', '/v1/keys', { name: 'orders-data', type: 'aead' }), 201)
  await ok(t, h.api('POST', '/v1/keys/orders-data/grants', { service: 'app', rights: ['encrypt', 'decrypt'] }))
  await ok(t, h.api('POST', '/v1/intentions', { src: 'app', dst: 'billing' }), 201)
  await ok(t, h.api('POST', '/v1/pairs/app/billing/rotate'))
  const agent = await kmsAgent(h, t, 'app')
  const sealed = await agent.request({ op: 'encrypt', key: 'orders-data', plaintext: bytes('card 4111'), context: { tenant: 't1' } })
  await ok(t, h.api('POST', '/v1/keys/orders-data/rotate'))
  agent.sendUsage(1, [{ kind: 'conn.open', at: h.clock.now(), pairId: 'app:billing', peerService: 'billing', keyVersion: 2, bytesIn: 1, bytesOut: 2 }])
  await agent.next('usage.ack')
  return { h, dir, agent, ciphertext: sealed.result?.ciphertext as string }
}

async function stopped(t: Tap & { equal(a: unknown, b: unknown): void }, dir: string): Promise<Installation> {
  const i = await installation(t, dir)
  await i.agent.close()
  await i.h.cp.close()
  return i
}

const countRows = async (schema: string, table: string): Promise<number> =>
  (await pgExec<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.${table}`))[0]?.n ?? -1

t.test('an installation moves from SQLite to PostgreSQL and carries on there with the old master key', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const base = t.testdir()
  const old = await stopped(t, join(base, 'old'))
  const sourceVerify = await runCli(['audit', 'verify', '--data-dir', old.dir, '--json'])
  const sourceHead = JSON.parse(sourceVerify.out).head as { seq: number; hash: string }

  const res = await migrate(old.dir, db.url, '--json')
  t.equal(res.code, 0, res.err)
  t.equal(res.err, '')
  const summary = JSON.parse(res.out)
  t.match(summary, {
    from: `sqlite:${old.dir}`,
    to: /^postgres:\/\/.*127\.0\.0\.1:5432\/test \(schema km_test_/,
    schemaVersion: LATEST,
    // meta: the custody row, the identity, the sealed audit signing key and the audit chain's anchor.
    rows: { meta: 4, keys: 2, key_versions: 4, grants: 2, intentions: 1, agents: 1, join_tokens: 1, operator_tokens: 1, usage_batches: 1, audit_head: 1 },
    audit: { ok: true, count: sourceHead.seq, head: sourceHead },
  })
  t.equal(summary.rows.audit_log, sourceHead.seq, 'every audit entry')

  const h = await startTestControlPlane(t, {
    dataDir: join(base, 'new'),
    storeUrl: db.url,
    masterKeyFile: old.h.masterKeyFile(),
    adminToken: old.h.adminToken,
    clock: old.h.clock,
  })
  t.equal(h.identityPub, old.h.identityPub, 'the same control-plane identity')
  t.equal(h.cp.ctx.store.backend, 'postgres')
  const keys = await h.api('GET', '/v1/keys')
  t.equal(keys.status, 200, 'the old admin token works')
  t.same(keys.body.keys.map((k: { name: string }) => k.name).sort(), ['app:billing', 'orders-data'])

  // The enrolled agent comes back by its static key alone: no new join token.
  const agent = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service: 'app', staticKey: old.agent.staticKey })
  t.teardown(() => void agent.close().catch(() => {}))
  t.equal((await agent.welcome()).agentId, old.agent.agentId)
  const opened = await agent.request({ op: 'decrypt', ciphertext: old.ciphertext, context: { tenant: 't1' } })
  t.equal(text(opened.result?.plaintext), 'card 4111', 'a ciphertext made before the move decrypts after it')
  const fresh = await agent.request({ op: 'encrypt', key: 'orders-data', plaintext: bytes('x') })
  t.match(fresh.result?.ciphertext, /^km1:orders-data:2:/, 'version 2, rotated before the move, is primary')
  t.equal(await h.cp.ctx.store.read((r) => r.lastUsageBatchSeq(old.agent.agentId as string)), 1, 'usage batches came along')

  const verify = await h.api('GET', '/v1/audit/verify')
  t.equal(verify.body.ok, true, 'the chain verifies on PostgreSQL')
  t.ok(verify.body.head.seq > sourceHead.seq, 'and continues past the copied head')
  const copiedEntry = await h.api('GET', `/v1/audit?action=identity.create`)
  t.equal(copiedEntry.body.entries[0]?.seq, 1, 'the copied entries keep their seq')
})

t.test('a running source is copied from one consistent snapshot; the text summary lists every table', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const live = await installation(t, join(t.testdir(), 'live'))
  // Keys are created one after another for as long as the copy runs: each lands
  // wholly before or wholly after its snapshot, with its audit entry.
  let copied = false
  const copying = migrate(live.dir, db.url).finally(() => (copied = true))
  let made = 0
  while (!copied) await live.h.api('POST', '/v1/keys', { name: `during-${++made}`, type: 'aead' })
  const res = await copying
  t.equal(res.code, 0, res.err)
  t.match(res.out, /^copied sqlite:.* to postgres:\/\/.* \(schema km_test_\w+\), schema version \d+\n/)
  t.match(res.out, /TABLE +ROWS\nmeta +4\nkeys +\d+\nkey_versions +\d+\n/)
  t.match(res.out, /audit_head +1\nelapsed_ledger +\d+\nconsole_sessions +\d+\nconsole_replicas +\d+\nagent_tunnels +\d+\naudit chain verified on the target: \d+ entries, head seq \d+ hash [0-9a-f]{16}…, the same as the source's\n$/)
  const keys = await countRows(db.schema, 'keys')
  const created = (await pgExec(`SELECT seq FROM ${db.schema}.audit_log WHERE action = 'key.create'`)).length
  t.equal(keys - 1, created, 'every copied key has its copied audit entry, and no more')
  t.ok(keys >= 2 && keys <= made + 2, `${keys} keys copied, ${made} made during the copy`)

  await live.h.api('POST', '/v1/keys', { name: 'after', type: 'aead' })
  t.equal(await countRows(db.schema, 'keys'), keys, 'later changes to the source are not copied')
})

t.test('refusals: one line, a non-zero exit, and nothing written', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const base = t.testdir()
  const old = await stopped(t, join(base, 'old'))

  t.equal((await migrate(old.dir, db.url)).code, 0, 'the first copy goes in')
  const head = await pgExec(`SELECT seq FROM ${db.schema}.audit_head`)
  const again = await migrate(old.dir, db.url)
  t.equal(again.code, 1)
  t.match(again.err, /^keymesh: the target store is not empty; a copy or restore never merges: the target already holds an installation \(rows in meta, keys, .*, audit_head\); copy into an empty database or schema \(CP_ERR_STORE_NOT_EMPTY\)\n$/)
  t.same(await pgExec(`SELECT seq FROM ${db.schema}.audit_head`), head, 'the target is left as it was')

  const unreachable = await migrate(old.dir, 'postgres://kms:hunter2@127.0.0.1:1/test?schema=km_nowhere')
  t.equal(unreachable.code, 1)
  t.match(unreachable.err, /^keymesh: .*database unreachable at postgres:\/\/kms:\*\*\*@127\.0\.0\.1:1\/test.* \(CP_ERR_STORE\)\n$/)
  t.notMatch(unreachable.err, /hunter2/, 'the password is never shown')

  const missing = await migrate(join(base, 'nothing-here'), db.url)
  t.equal(missing.code, 1)
  t.match(missing.err, /^keymesh: .*no keymesh store at .*nothing-here.keymesh\.db \(CP_ERR_STORE\)\n$/)

  const notOurs = join(base, 'not-ours')
  mkdirSync(notOurs)
  const other = new Database(join(notOurs, 'keymesh.db'))
  other.exec('CREATE TABLE notes (body TEXT)')
  other.close()
  t.match((await migrate(notOurs, db.url)).err, /^keymesh: .*not-ours.keymesh\.db is not an initialised keymesh store \(CP_ERR_STORE\)\n$/)

  const newer = join(base, 'newer')
  await (await openSqliteStore({ dir: newer, migrations: [...SQLITE_MIGRATIONS, { version: 99, name: 'future', sql: 'CREATE TABLE future (x INTEGER)' }] })).close()
  const fromFuture = await migrate(newer, db.url)
  t.equal(fromFuture.code, 1)
  t.match(fromFuture.err, new RegExp(`has schema version 99, newer than this keymesh understands \\(${LATEST}\\); run a newer keymesh \\(CP_ERR_STORE\\)\\n$`))
})

t.test('a source whose audit chain was tampered with is refused, naming the entry; the target stays empty', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const old = await stopped(t, join(t.testdir(), 'old'))
  const file = new Database(join(old.dir, 'keymesh.db'))
  file.exec("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3")
  file.close()
  const res = await migrate(old.dir, db.url)
  t.equal(res.code, 1)
  t.match(res.err, /^keymesh: .*the source's audit chain is broken at seq 3 \(hash-mismatch\); nothing was copied \(CP_ERR_STORE\)\n$/)
  t.equal(res.out, '')
  for (const table of ['meta', 'keys', 'key_versions', 'agents', 'operator_tokens', 'audit_log']) t.equal(await countRows(db.schema, table), 0, `no rows in ${table}`)
})

t.test('usage: both stores named explicitly and different; --help says what a snapshot means', async (t) => {
  const dir = t.testdir()
  const cases: [string[], RegExp][] = [
    [['--from', `sqlite:${dir}`, '--to', 'mysql://root:pw@db/kms'], /--to must be sqlite:DIR, or postgres:.*got "mysql:\/\/root:\*\*\*@db\/kms" \(CP_ERR_USAGE\)/],
    [['--from', 'sqlite:', '--to', 'postgres://127.0.0.1/test'], /--from must be sqlite:DIR/],
    [['--from', `sqlite:${dir}`, '--to', 'postgres://127.0.0.1'], /--to: name the database \(postgres:\/\/HOST\[:PORT\]\/DB\) \(CP_ERR_USAGE\)/],
    [['--from', `sqlite:${dir}`, '--to', `sqlite:${dir}`], /--from and --to name the same store \(CP_ERR_USAGE\)/],
    [['--from', `sqlite:${dir}`], /missing required argument: to/],
  ]
  for (const [argv, err] of cases) {
    const res = await runCli(['store', 'migrate', ...argv])
    t.equal(res.code, 2, argv.join(' '))
    t.match(res.err, err)
  }
  // main() leaves --help to yargs, which prints and exits the process: render it here instead.
  const ctx = cliContext()
  let help = ''
  await yargs(['store', 'migrate', '--help']).scriptName('keymesh').command(storeCommand(ctx)).exitProcess(false).wrap(null).help()
    .parseAsync(['store', 'migrate', '--help'], {}, (_e, _a, output) => { help = output })
  t.match(help, /changes made to it after that moment are not copied, so for a cut-over stop the old control plane first/)
  t.match(help, /--master-key-file FILE, the development key file/)
  t.match(help, /--from .*sqlite:DIR/)
})
