// `keymesh backup create|restore|inspect` as an operator runs them: a backup
// through the control plane (admin token) or offline from a data directory,
// restored into an empty data directory or PostgreSQL schema, where a control
// plane with the old master key opens what was sealed before. Then every
// refusal: one line on stderr, a non-zero exit, no file and no store written.
import { createServer } from 'node:http'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import yargs from 'yargs'

import { backupCommand } from '../../../cli/commands/backup.js'

import { cliContext, runCli } from '../../kit/cli.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { bytes, createKey, kmsAgent, text } from '../../kit/kms.js'
import { pgSchema } from '../../kit/pg.js'

interface Source {
  readonly h: TestControlPlane
  readonly base: string
  readonly cli: (...argv: string[]) => ReturnType<typeof runCli>
  readonly ciphertext: string
  readonly masterKey: string
}

const CONTEXT = { tenant: 't1' }

/** A control plane with a key and a ciphertext under it, and the CLI pointed at it with the admin token. */
async function source(t: Test): Promise<Source> {
  const base = t.testdir()
  const h = await startTestControlPlane(t, { dataDir: join(base, 'cp') })
  await createKey(h, 'orders', 'aead', { app: ['encrypt', 'decrypt'] })
  const app = await kmsAgent(h, t, 'app')
  const ciphertext = (await app.request({ op: 'encrypt', key: 'orders', plaintext: bytes('card 4111'), context: CONTEXT })).result?.ciphertext as string
  const tokenFile = join(base, 'admin.token')
  writeFileSync(tokenFile, h.adminToken, { mode: 0o600 })
  const cli = (...argv: string[]) => runCli([...argv, '--cp', h.cp.url, '--token-file', tokenFile])
  return { h, base, cli, ciphertext, masterKey: h.masterKeyFile() }
}

/** A control plane on the restored store opens the ciphertext made before the backup. */
async function opens(t: Test, s: Source, o: { dataDir: string; storeUrl?: string }): Promise<void> {
  const restored = await startTestControlPlane(t, { ...o, masterKeyFile: s.masterKey, adminToken: s.h.adminToken })
  const app = await kmsAgent(restored, t, 'app')
  const r = await app.request({ op: 'decrypt', ciphertext: s.ciphertext, context: CONTEXT })
  t.equal(text(r.result?.plaintext), 'card 4111', 'sealed before the backup, opened after the restore')
}

const leftovers = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.tmp'))

t.test('create through the control plane, inspect, restore into a data directory, start there', async (t) => {
  const s = await source(t)
  const file = join(s.base, 'keymesh.jsonl')
  const made = await s.cli('backup', 'create', '-o', file)
  t.equal(made.code, 0, made.err)
  t.match(made.out, /^wrote .*keymesh\.jsonl: \d+ rows, audit head seq \d+, sha256 [0-9a-f]{64}, sealed\n$/)
  t.equal(statSync(file).mode & 0o777, 0o600, 'only its owner reads it')

  const seen = await runCli(['backup', 'inspect', file, '--master-key-file', s.masterKey])
  t.equal(seen.code, 0, seen.err)
  t.match(seen.out, /keymesh-backup version 1, \d+ rows\n/)
  t.match(seen.out, new RegExp(`identity ${Buffer.from(s.h.cp.ctx.identity.publicKey).toString('hex')}`))
  t.match(seen.out, /key_versions\s+1\n/)
  t.match(seen.out, /checksum ok \(sha256 [0-9a-f]{64}\); seal verified with the master key\naudit chain ok: \d+ entries, head seq \d+ hash [0-9a-f]{16}…; MACs checked\n$/)
  t.match((await runCli(['backup', 'inspect', file])).out, /sealed \(give --master-key-file to check the seal\)/)

  const again = await s.cli('backup', 'create', '-o', file)
  t.match(again, { code: 1, err: /CP_ERR_FILE_EXISTS/ }, 'an existing file is not replaced without --force')
  t.equal((await s.cli('backup', 'create', '-o', file, '--force')).code, 0, '--force replaces it')

  const dataDir = join(s.base, 'restored')
  const restored = await runCli(['backup', 'restore', file, '--data-dir', dataDir, '--master-key-file', s.masterKey])
  t.equal(restored.code, 0, restored.err)
  t.match(restored.out, new RegExp(`^restored .*keymesh\\.jsonl into sqlite:${dataDir}\n`))
  t.match(restored.out, /audit chain verified on the target: \d+ entries, head seq \d+, the backup's\n$/)
  const twice = await runCli(['backup', 'restore', file, '--data-dir', dataDir])
  t.match(twice, { code: 1, err: /CP_ERR_STORE_NOT_EMPTY/ }, 'a second restore into the same store is refused')
  await opens(t, s, { dataDir })
})

t.test('create through an https control plane with the CLI\'s trust (--ca-file), and a TLS refusal named without it', async (t) => {
  const base = t.testdir()
  const h = await startTestControlPlane(t, { dataDir: join(base, 'cp'), madeTls: true })
  const tokenFile = join(base, 'admin.token')
  writeFileSync(tokenFile, h.adminToken, { mode: 0o600 })
  const file = join(base, 'keymesh.jsonl')
  const made = await runCli(['backup', 'create', '-o', file, '--cp', h.cp.url, '--ca-file', h.caFile as string, '--token-file', tokenFile])
  t.equal(made.code, 0, made.err)
  t.match(made.out, /^wrote .*keymesh\.jsonl: \d+ rows/)
  const untrusted = await runCli(['backup', 'create', '-o', join(base, 'other.jsonl'), '--cp', h.cp.url, '--token-file', tokenFile])
  t.match(untrusted, { code: 1, err: /CP_ERR_TLS/ }, 'a certificate the CLI does not trust is CP_ERR_TLS, not "unreachable"')
  t.notOk(existsSync(join(base, 'other.jsonl')), 'and no file is left')
  t.same(leftovers(base), [])
})

t.test('create offline from a stopped data directory, restore into PostgreSQL', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const s = await source(t)
  await s.h.cp.close()
  const file = join(s.base, 'offline.jsonl')
  const made = await runCli(['backup', 'create', '--data-dir', s.h.dataDir, '-o', file, '--json'])
  t.equal(made.code, 0, made.err)
  t.match(JSON.parse(made.out), { file, identity: null, audit: { ok: true, macs: 'unchecked' }, seal: 'absent' }, 'an offline backup does not know the identity, and without the key is not sealed')
  const sealed = join(s.base, 'offline-sealed.jsonl')
  t.match(await runCli(['backup', 'create', '--store', `sqlite:${s.h.dataDir}`, '--master-key-file', s.masterKey, '-o', sealed]), { code: 0, out: /, sealed\n$/ })
  t.match(await runCli(['backup', 'inspect', sealed, '--master-key-file', s.masterKey, '--json']), { code: 0, out: /"seal": ?"verified"/ })
  const restored = await runCli(['backup', 'restore', file, '--store', db.url, '--json'])
  t.equal(restored.code, 0, restored.err)
  t.match(JSON.parse(restored.out), { store: /\(schema km_test_/, rows: { keys: 1 }, restored: { count: Number } })
  await opens(t, s, { dataDir: join(s.base, 'on-pg'), storeUrl: db.url })
})

t.test('refusals: one line, a non-zero exit, no file and no store left behind', async (t) => {
  const s = await source(t)
  const auditor = (await s.h.api('POST', '/v1/tokens', { name: 'eve', role: 'auditor' })).body.token as string
  const auditorFile = join(s.base, 'auditor.token')
  writeFileSync(auditorFile, auditor, { mode: 0o600 })
  const out = join(s.base, 'no.jsonl')
  const denied = await runCli(['backup', 'create', '-o', out, '--cp', s.h.cp.url, '--token-file', auditorFile])
  t.match(denied, { code: 1, err: /^keymesh: .*auditors are read-only.*\(CP_ERR_FORBIDDEN\)\n$/ })
  t.notOk(existsSync(out), 'no file')
  t.same(leftovers(s.base), [], 'no temporary file')

  const usage = [
    [['backup', 'create', '-o', out, '--data-dir', s.base, '--store', 'sqlite:/x'], /either --data-dir DIR or --store URL/],
    [['backup', 'restore', out], /either --data-dir DIR or --store URL/],
    [['backup', 'restore', out, '--store', 'mysql://x'], /--store must be sqlite:DIR, or postgres/],
    [['backup', 'create', '-o', out], /name the control plane with --cp URL/],
    [['backup', 'create', '-o', out, '--master-key-file', s.masterKey], /--master-key-file is for offline backups/],
  ] as const
  for (const [argv, message] of usage) t.match(await runCli([...argv]), { code: 2, err: message }, argv.join(' '))

  // A download cut off before its trailer: the answer ends cleanly, the file is incomplete.
  const file = join(s.base, 'whole.jsonl')
  t.equal((await s.cli('backup', 'create', '-o', file)).code, 0)
  const whole = readFileSync(file)
  const server = createServer((_req, res) => res.end(whole.subarray(0, whole.length - 40)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const cut = await runCli(['backup', 'create', '-o', out, '--cp', `http://127.0.0.1:${(server.address() as AddressInfo).port}`, '--token-file', auditorFile])
  t.match(cut, { code: 1, err: /truncated.*\(CP_ERR_BACKUP_CORRUPT\)/ })
  t.notOk(existsSync(out), 'no half file')
  t.same(leftovers(s.base), [])

  // A connection dropped part-way through the answer.
  const dropper = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    res.write(whole.subarray(0, 100), () => res.destroy())
  })
  dropper.listen(0, '127.0.0.1')
  await once(dropper, 'listening')
  t.teardown(() => dropper.close())
  const dropped = await runCli(['backup', 'create', '-o', out, '--cp', `http://127.0.0.1:${(dropper.address() as AddressInfo).port}`, '--token-file', auditorFile])
  t.match(dropped, { code: 1, err: /the download was cut off \(CP_ERR_BACKUP_CORRUPT\)/ })
  t.notOk(existsSync(out))
  t.same(leftovers(s.base), [])
  dropper.closeAllConnections()

  t.match(await s.cli('backup', 'create', '-o', join(s.base, 'absent', 'x.jsonl')), { code: 1, err: /cannot create a file in .*absent: ENOENT \(CP_ERR_OUTPUT\)/ })
  t.match(await runCli(['backup', 'create', '-o', out, '--cp', 'http://127.0.0.1:1', '--token-file', auditorFile]), { code: 1, err: /CP_ERR_UNREACHABLE/ })
  t.notOk(existsSync(out))

  const truncated = join(s.base, 'truncated.jsonl')
  writeFileSync(truncated, whole.subarray(0, 200))
  const target = join(s.base, 'never')
  t.match(await runCli(['backup', 'restore', truncated, '--data-dir', target]), { code: 1, err: /CP_ERR_BACKUP_CORRUPT/ })
  t.notOk(existsSync(target), 'the target was not even created')
  t.match(await runCli(['backup', 'inspect', truncated]), { code: 1, err: /truncated/ })
  t.match(await runCli(['backup', 'restore', file, '--data-dir', target, '--master-key-file', join(s.base, 'admin.token')]), { code: 1, err: /CP_ERR_MASTER_KEY/ })
  t.notOk(existsSync(target))
})

t.test('--help says what a backup holds and what restore refuses', async (t) => {
  // main() leaves --help to yargs, which prints and exits the process: render it here instead.
  const render = async (argv: string[]): Promise<string> => {
    let help = ''
    await yargs(argv).scriptName('keymesh').command(backupCommand(cliContext())).exitProcess(false).wrap(null).help()
      .parseAsync(argv, {}, (_e, _a, output) => { help = output })
    return help
  }
  t.match(await render(['backup', 'create', '--help']), /Key material stays sealed under the master key/)
  const restore = await render(['backup', 'restore', '--help'])
  t.match(restore, /CP_ERR_BACKUP_CORRUPT/)
  t.match(restore, /CP_ERR_STORE_NOT_EMPTY/)
  t.match(await render(['backup', 'inspect', '--help']), /--master-key-file/)
})
