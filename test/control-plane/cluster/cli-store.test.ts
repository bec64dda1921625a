// `keymesh control-plane --store`: checked before anything is created, and a
// PostgreSQL URL starts a control plane on that database.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { checkStoreSpec } from '../../../cli/index.js'
import { IDENTITY_PUB_FILE } from '../../../control-plane/src/bootstrap.js'
import { SQLITE_FILE } from '../../../control-plane/src/store/sqlite-store.js'
import { cliChild, runCli, runControlPlaneCli } from '../../kit/cli.js'
import { pgExec, pgSchema } from '../../kit/pg.js'

t.test('a bad --store is one line on stderr, a non-zero exit, and nothing created', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const cases: [string, RegExp][] = [
    ['mysql://me:hunter2@db/kms', /^keymesh: invalid command-line usage: --store must be sqlite:DIR, or postgres:.*got "mysql:\/\/me:\*\*\*@db\/kms" \(CP_ERR_USAGE\)\n$/],
    ['postgres://db/kms?schema=Bad-Name', /^keymesh: invalid command-line usage: --store: schema "Bad-Name" is not a plain lower-case SQL identifier \(CP_ERR_USAGE\)\n$/],
    ['postgres://[x/db', /^keymesh: invalid command-line usage: --store: the store URL is not a valid URL .*\(CP_ERR_USAGE\)\n$/],
    ['postgres://', /^keymesh: invalid command-line usage: --store: name the database \(postgres:\/\/HOST\[:PORT\]\/DB\) \(CP_ERR_USAGE\)\n$/],
    ['postgres://db.internal', /--store: name the database/],
    ['./somewhere', /^keymesh: invalid command-line usage: --store must be .*\(CP_ERR_USAGE\)\n$/],
  ]
  for (const [spec, err] of cases) {
    const r = await runCli(['control-plane', '--data-dir', dir, '--store', spec])
    t.not(r.code, 0, spec)
    t.match(r.err, err, spec)
    t.notMatch(r.err, /hunter2/)
  }
  const fromEnv = await runCli(['control-plane', '--data-dir', dir], { KEYMESH_STORE: 'redis://x' })
  t.not(fromEnv.code, 0, 'KEYMESH_STORE is checked the same way')
  t.match(fromEnv.err, /--store must be/)
  t.notOk(existsSync(dir), 'no data directory was created')
})

t.test('accepted forms pass through unchanged', async (t) => {
  t.equal(checkStoreSpec(undefined), undefined)
  t.equal(checkStoreSpec('sqlite:/var/lib/keymesh'), 'sqlite:/var/lib/keymesh')
  t.equal(checkStoreSpec('postgresql://kms@db:5433/keymesh?schema=prod'), 'postgresql://kms@db:5433/keymesh?schema=prod')
})

// yargs prints help to the process's stdout and exits, so help runs in a child process.
t.test('--help describes --store with an example', async (t) => {
  const help = cliChild(['control-plane', '--help'], { KEYMESH_STORE: 'postgres://kms:hunter2@db/keymesh' })
  t.notMatch(help, /hunter2/, 'a password in KEYMESH_STORE is not shown as the default')
  t.match(help, /default: from KEYMESH_STORE/)
  t.match(help, /--store\s[\s\S]*?sqlite:DIR[\s\S]*?postgres:\/\/HOST\[:PORT\]\/DB\[\?schema=NAME\][\s\S]*?env\s+KEYMESH_STORE/)
  t.match(help, /Examples:[\s\S]*--store\s[\s\S]*postgres:\/\/kms@db\.internal\/keymesh/)
})

t.test('--store postgres://… runs the control plane on that database until stopped', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const dir = join(t.testdir(), 'cp')
  const cp = await runControlPlaneCli(dir, { KEYMESH_STORE: db.url })
  t.equal(cp.err().replace(/^keymesh: control plane at .*\n/m, ''), '', 'nothing but the line saying where it listens')
  const tables = await pgExec<{ n: number }>('SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1', [db.schema])
  t.ok(tables[0]!.n > 0, 'its tables are in the given schema')
  t.notOk(existsSync(join(dir, SQLITE_FILE)))
  t.match(readFileSync(join(dir, IDENTITY_PUB_FILE), 'utf8'), /\S/)
  t.equal(await cp.stop(), 0)
})
