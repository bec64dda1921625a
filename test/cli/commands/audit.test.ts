import t from 'tap'
import { once } from 'node:events'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import yargs from 'yargs'

import { auditCommand, EXIT_AUDIT_BROKEN, parseTimeFlag } from '../../../cli/commands/audit.js'
import { Database } from '../../../control-plane/src/index.js'
import { startTestControlPlane, testKeyDir, type TestControlPlane } from '../../kit/cp.js'
import { FAKE_EPOCH, HOUR, MINUTE } from '../../kit/fake-clock.js'
import { cliContext, runCli } from '../../kit/cli.js'

interface Ran { code: number; out: string; err: string }

const run = (argv: string[]): Promise<Ran> => runCli(argv)

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }) {
  const h = await startTestControlPlane(t)
  // t.testdir() would wipe the control plane's directory: keep extra files in a subfolder of it.
  const tokenFile = join(h.dataDir, 'cli.token')
  writeFileSync(tokenFile, h.adminToken, { mode: 0o600 })
  const cli = (...argv: string[]) => run([...argv, '--cp', h.cp.url, '--token-file', tokenFile])
  return { h, cli }
}

async function fill(h: TestControlPlane, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    h.clock.advance(MINUTE)
    await h.cp.ctx.store.transaction((tx) => h.cp.ctx.audit.append(tx, {
      actor: i % 2 ? 'operator:tok_a' : 'system:scheduler', action: i % 3 ? 'key.create' : 'key.rotate',
      target: `key:k${i}`, outcome: i === 4 ? 'deny' : 'ok', reason: `entry ${i}`, details: { n: i },
    }))
  }
}

function tamper(dir: string, sql: string): void {
  const db = new Database(join(dir, 'keymesh.db'))
  db.exec(`DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; ${sql}`)
  db.close()
}

t.test('audit tail shows the newest entries as a table or as JSON', async (t) => {
  const { h, cli } = await setup(t)
  await fill(h, 6)
  const table = await cli('audit', 'tail', '-n', '3')
  t.equal(table.code, 0, table.err)
  const lines = table.out.trim().split('\n')
  t.match(lines[0], /^SEQ +TIME +ACTOR +ACTION +TARGET +OUTCOME +REASON$/)
  t.equal(lines.length, 4)
  t.match(lines[3], /2026-01-01T00:06:00.000Z +system:scheduler +key.rotate +key:k6 +ok +entry 6$/)
  const json = await cli('audit', 'tail', '-n', '2', '--json')
  const body = JSON.parse(json.out)
  t.same(body.entries.map((e: { reason: string }) => e.reason), ['entry 5', 'entry 6'])
  t.match(await cli('audit', 'tail', '-n', '0'), { code: 2, err: /-n must be an integer from 1 to 1000/ })
})

t.test('audit query filters by time, actor, action, target and outcome', async (t) => {
  const { h, cli } = await setup(t)
  await fill(h, 9)
  const reasons = async (...argv: string[]) => {
    const r = await cli('audit', 'query', ...argv, '--json')
    t.equal(r.code, 0, r.err)
    return (JSON.parse(r.out).entries as Array<{ reason: string }>).map((e) => e.reason)
  }
  t.same(await reasons('--action', 'key.rotate'), ['entry 3', 'entry 6', 'entry 9'])
  t.same(await reasons('--actor', 'system:scheduler', '--limit', '2'), ['entry 2', 'entry 4'])
  t.same(await reasons('--outcome', 'deny'), ['entry 4'])
  t.same(await reasons('--target', 'key:k7'), ['entry 7'])
  t.same(await reasons('--since', new Date(FAKE_EPOCH + 8 * MINUTE).toISOString(), '--until', new Date(FAKE_EPOCH + 9 * MINUTE).toISOString()), ['entry 8'])
  const all = await reasons('--limit', '3')
  t.equal(all.length, 3, 'no filter: the oldest entries first')
  t.notOk(all.includes('entry 9'))
  const table = await cli('audit', 'query', '--outcome', 'deny')
  t.match(table.out, /^SEQ .*\n\d+ +2026-01-01T00:04:00.000Z +system:scheduler +key.create +key:k4 +deny +entry 4\n$/)
  t.match(await cli('audit', 'query', '--since', 'last tuesday'), { code: 2, err: /--since must be an ISO 8601 time/ })
  t.match(await cli('audit', 'query', '--limit', '5000'), { code: 2, err: /--limit/ })
  t.match(await cli('audit', 'query', '--outcome', 'maybe'), { code: 2 })
})

t.test('--since takes a duration ago', async (t) => {
  const now = Date.UTC(2026, 5, 1)
  t.equal(parseTimeFlag('2h', '--since', now), now - 2 * HOUR)
  t.equal(parseTimeFlag('2026-01-01T00:00:00Z', '--since', now), FAKE_EPOCH)
  t.throws(() => parseTimeFlag('soon', '--since', now), { code: 'CP_ERR_USAGE' })
})

t.test('audit export writes JSON lines to stdout or, whole, to a file', async (t) => {
  const { h, cli } = await setup(t)
  await fill(h, 700)
  const out = await cli('audit', 'export', '--format', 'jsonl')
  t.equal(out.code, 0, out.err)
  const lines = out.out.split('\n')
  t.equal(lines.pop(), '', 'newline-terminated')
  const entries = lines.map((l) => JSON.parse(l) as { seq: number; action: string })
  t.same(entries.map((e) => e.seq), Array.from({ length: entries.length }, (_, i) => i + 1), 'every entry in order')
  t.equal(entries[entries.length - 1]?.action, 'audit.export')

  const dir = join(h.dataDir, 'out')
  mkdirSync(dir)
  const file = join(dir, 'audit.jsonl')
  const toFile = await cli('audit', 'export', '--format', 'jsonl', '-o', file, '--action', 'key.rotate', '--json')
  t.equal(toFile.code, 0, toFile.err)
  t.same(JSON.parse(toFile.out), { file, entries: 233 })
  t.equal(readFileSync(file, 'utf8').trim().split('\n').length, 233)
  const plain = await cli('audit', 'export', '-o', file)
  t.match(plain.out, new RegExp(`^exported \\d+ audit entries to ${file}\\n$`))
  t.same(readdirSync(dir), ['audit.jsonl'], 'no temporary file left behind')
  t.match(await cli('audit', 'export', '--format', 'csv'), { code: 2 })
})

t.test('a refused or unreachable export writes nothing', async (t) => {
  const { h } = await setup(t)
  const dir = join(h.dataDir, 'out')
  mkdirSync(dir)
  const bad = join(dir, 'bad.token')
  writeFileSync(bad, `kmo_${'A'.repeat(43)}`, { mode: 0o600 })
  const file = join(dir, 'audit.jsonl')
  const refused = await run(['audit', 'export', '-o', file, '--cp', h.cp.url, '--token-file', bad])
  t.match(refused, { code: 1, err: /\(CP_ERR_UNAUTHENTICATED\)\n$/ })
  const unreachable = await run(['audit', 'export', '-o', file, '--cp', 'http://127.0.0.1:1', '--token-file', bad])
  t.match(unreachable, { code: 1, err: /\(CP_ERR_UNREACHABLE\)\n$/ })
  t.match(await run(['audit', 'export', '--cp', h.cp.url]), { code: 2, err: /token file/ })
  t.same(readdirSync(dir), ['bad.token'])
  t.notOk(existsSync(file))
})

t.test('audit verify, online and offline: exit 0 with {"ok":true} when intact, 3 and firstBadSeq when not', async (t) => {
  const { h, cli } = await setup(t)
  await fill(h, 10)
  const online = await cli('audit', 'verify', '--json')
  t.equal(online.code, 0, online.err)
  t.match(JSON.parse(online.out), { ok: true, count: Number, head: { seq: Number, hash: /^[0-9a-f]{64}$/ } })
  t.match((await cli('audit', 'verify')).out, /^audit log intact: \d+ entries, head seq \d+ hash [0-9a-f]{16}…; MACs checked; 1 checkpoint matched\n$/)

  // Offline, while the control plane still runs: no --cp, no token, no master key.
  const offline = await run(['audit', 'verify', '--data-dir', h.dataDir, '--json'])
  t.equal(offline.code, 0, offline.err)
  t.match(offline.out, /^\{\n {2}"ok": true,/)
  t.match(JSON.parse(offline.out), { ok: true, count: Number })

  tamper(h.dataDir, "UPDATE audit_log SET reason = 'forged' WHERE seq = 7")
  const broken = await run(['audit', 'verify', '--data-dir', h.dataDir, '--json'])
  t.equal(broken.code, EXIT_AUDIT_BROKEN)
  t.same(JSON.parse(broken.out), { ok: false, count: 6, firstBadSeq: 7, reason: 'hash-mismatch' })
  const line = await run(['audit', 'verify', '--data-dir', h.dataDir])
  t.equal(line.code, 3)
  t.equal(line.out, 'audit log BROKEN at seq 7 (hash-mismatch); 6 entries before it verified\n')
  const viaApi = await cli('audit', 'verify', '--json')
  t.equal(viaApi.code, 3)
  t.match(JSON.parse(viaApi.out), { ok: false, firstBadSeq: 7 })
})

t.test('offline verify finds deleted and reordered rows after the control plane stopped', async (t) => {
  for (const [name, sql, expected] of [
    ['deleted', 'DELETE FROM audit_log WHERE seq = 5', { firstBadSeq: 5, reason: 'seq-gap' }],
    ['reordered', 'UPDATE audit_log SET seq = 1000 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = 1000', { firstBadSeq: 5, reason: 'prev-mismatch' }],
    ['truncated', 'DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)', { reason: 'head-mismatch' }],
  ] as const) {
    await t.test(name, async (t) => {
      const { h } = await setup(t)
      await fill(h, 8)
      await h.cp.close()
      t.equal((await run(['audit', 'verify', '--data-dir', h.dataDir])).code, 0)
      tamper(h.dataDir, sql)
      const r = await run(['audit', 'verify', '--data-dir', h.dataDir, '--json'])
      t.equal(r.code, 3)
      t.match(JSON.parse(r.out), { ok: false, ...expected })
    })
  }
})

t.test('offline verify that could check nothing trusted is no pass: CP_ERR_AUDIT_UNVERIFIED, and what to give', async (t) => {
  const { h } = await setup(t)
  await fill(h, 3)
  await h.cp.close()
  // A copy of the database alone: no master key at hand, no audit.pub beside it.
  const pub = join(h.dataDir, 'audit.pub')
  const kept = join(h.dataDir, 'kept-audit.pub')
  renameSync(pub, kept)
  const line = await run(['audit', 'verify', '--data-dir', h.dataDir])
  t.equal(line.code, 1)
  t.equal(line.out, '')
  t.match(line.err, /^keymesh: nothing trusted was checked: .*: \d+ entries up to seq \d+ hold together, but no MAC was checked \(no master key at hand\) and no signed checkpoint or expected head; give --master-key-file \(or KEYMESH_MASTER_KEY\), or --public-key with --checkpoint or --expect-head \(CP_ERR_AUDIT_UNVERIFIED\)\n$/)
  const json = await run(['audit', 'verify', '--data-dir', h.dataDir, '--json'])
  t.equal(json.code, 1)
  t.match(JSON.parse(json.out), { ok: true, macs: 'unchecked', checkpoints: 0 }, 'the JSON says why, for scripts')
  t.match(json.err, /\(CP_ERR_AUDIT_UNVERIFIED\)\n$/)
  // Any one trusted thing makes it a check.
  t.equal((await run(['audit', 'verify', '--data-dir', h.dataDir, '--master-key-file', h.masterKeyFile()])).code, 0, 'the MACs')
  t.equal((await run(['audit', 'verify', '--data-dir', h.dataDir, '--public-key', kept])).code, 0, 'the signed checkpoints in the store')
  // A database writer who deletes the checkpoints leaves nothing to vouch with the public key alone.
  renameSync(kept, pub)
  tamper(h.dataDir, 'DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints')
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir]), { code: 1, err: /\(CP_ERR_AUDIT_UNVERIFIED\)\n$/ })
})

t.test('audit checkpoint exports the newest signed checkpoint; verify checks the log against it or an expected head', async (t) => {
  const { h, cli } = await setup(t)
  await fill(h, 4)
  const online = await cli('audit', 'checkpoint', '--json')
  t.equal(online.code, 0, online.err)
  const cp = JSON.parse(online.out)
  const pub = readFileSync(join(h.dataDir, 'audit.pub'), 'utf8').trim()
  t.match(cp, { format: 'keymesh-audit-checkpoint-v1', seq: 3, hash: /^[0-9a-f]{64}$/, signer: pub, signature: /^[\w-]{86}$/ }, 'the bridge entry was signed at start')
  t.match((await cli('audit', 'checkpoint')).out, /^audit checkpoint: seq 3 hash [0-9a-f]{64} at 2026-.*, signed by ed25519:/)

  h.clock.advance(2 * HOUR)
  await h.cp.scheduler.tick()
  const later = JSON.parse((await cli('audit', 'checkpoint', '--json')).out)
  t.ok(later.seq > cp.seq, 'the scheduler signed the head once the newest checkpoint was an hour old')
  await h.cp.scheduler.tick()
  t.equal(JSON.parse((await cli('audit', 'checkpoint', '--json')).out).seq, later.seq, 'and not again before the next hour')

  const dir = join(h.dataDir, 'held')
  mkdirSync(dir)
  const file = join(dir, 'checkpoint.json')
  writeFileSync(file, JSON.stringify(later))
  const pubFile = join(h.dataDir, 'audit.pub')
  const viaApi = await cli('audit', 'verify', '--checkpoint', file, '--public-key', pubFile, '--json')
  t.equal(viaApi.code, 0, viaApi.err)
  t.match(JSON.parse(viaApi.out), { ok: true, macs: 'checked' })
  const head = JSON.parse((await cli('audit', 'verify', '--json')).out).head as { seq: number; hash: string }
  t.equal((await cli('audit', 'verify', '--expect-head', `${head.seq}:${head.hash}`)).code, 0)
  const wrong = await cli('audit', 'verify', '--expect-head', `${head.seq}:${'0'.repeat(64)}`, '--json')
  t.equal(wrong.code, EXIT_AUDIT_BROKEN)
  t.same(JSON.parse(wrong.out), { ok: false, count: head.seq - 1, firstBadSeq: head.seq, reason: 'checkpoint-mismatch' })

  await h.cp.close()
  const offline = await run(['audit', 'checkpoint', '--data-dir', h.dataDir, '--json'])
  t.same(JSON.parse(offline.out), later, 'offline, the same checkpoint from the store')
  // The development master key is found where the control plane made it (custody "file").
  const home = { KEYMESH_CONFIG_HOME: testKeyDir(h.dataDir) }
  const ok = await runCli(['audit', 'verify', '--data-dir', h.dataDir, '--checkpoint', file, '--expect-head', `${head.seq}:${head.hash}`, '--json'], home)
  t.equal(ok.code, 0, ok.err)
  t.match(JSON.parse(ok.out), { ok: true, macs: 'checked', checkpoints: Number })

  const keyFile = h.masterKeyFile()
  const macs = async (argv: string[], env: Record<string, string> = {}) => JSON.parse((await runCli(['audit', 'verify', '--data-dir', h.dataDir, '--json', ...argv], env)).out).macs
  t.equal(await macs(['--master-key-file', keyFile]), 'checked', '--master-key-file')
  t.equal(await macs([], { KEYMESH_MASTER_KEY: readFileSync(keyFile).toString('base64') }), 'checked', 'KEYMESH_MASTER_KEY')
  t.equal(await macs([]), 'unchecked', 'no key at hand: the answer says so')
  const wrongKey = join(dir, 'wrong.key')
  writeFileSync(wrongKey, Buffer.alloc(32, 1), { mode: 0o600 })
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir, '--master-key-file', wrongKey]), { code: 1, err: /does not open this store.*\(CP_ERR_MASTER_KEY\)/ }, 'a wrong key is named')
  chmodSync(keyFile, 0o644)
  t.equal(await macs([], home), 'unchecked', 'a development key this check may not use is left out, and the answer says so')
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir, '--master-key-file', keyFile]), { code: 1, err: /CP_ERR_MASTER_KEY/ }, 'but a named one must work')
  chmodSync(keyFile, 0o600)

  const forged = join(dir, 'forged.json')
  writeFileSync(forged, JSON.stringify({ ...later, seq: later.seq + 1 }))
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir, '--checkpoint', forged]), { code: 1, err: /does not verify with the trusted audit public key \(CP_ERR_AUDIT_CHECKPOINT\)/ })
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir, '--checkpoint', join(dir, 'none.json')]), { code: 1, err: /cannot read .*none\.json \(ENOENT\).*\(CP_ERR_AUDIT_CHECKPOINT\)/ })
  writeFileSync(join(dir, 'bad.pub'), 'ed25519:nope\n')
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir, '--public-key', join(dir, 'bad.pub')]), { code: 1, err: /CP_ERR_AUDIT_KEY/ })
  t.match(await run(['audit', 'checkpoint', '--data-dir', dir]), { code: 1, err: /no audit\.pub in .*--public-key FILE \(CP_ERR_AUDIT_KEY\)/ })
  t.match(await run(['audit', 'verify', '--data-dir', h.dataDir, '--expect-head', '7:abc']), { code: 2, err: /--expect-head must be SEQ:HASH/ })
  t.match(await run(['audit', 'verify', '--checkpoint', file, '--cp', 'http://127.0.0.1:1']), { code: 1, err: /--public-key FILE \(CP_ERR_AUDIT_KEY\)/ })
  t.match(await run(['audit', 'verify', '--master-key-file', file, '--cp', 'http://127.0.0.1:1']), { code: 2, err: /offline checks/ })
  t.match(await run(['audit', 'verify', '--checkpoint', file, '--public-key', pubFile, '--expect-head', `${head.seq}:${head.hash}`, '--cp', 'http://127.0.0.1:1']), { code: 2, err: /not both/ })
})

t.test('a store with no checkpoint says so', async (t) => {
  const { openSqliteStore } = await import('../../../control-plane/src/index.js')
  const dir = t.testdir({ 'audit.pub': `ed25519:${'A'.repeat(43)}\n` })
  await (await openSqliteStore({ dir })).close()
  t.match(await run(['audit', 'checkpoint', '--data-dir', dir]), { code: 1, err: /no audit checkpoint has been made yet \(CP_ERR_NO_CHECKPOINT\)/ })
})

t.test('offline verify of a directory without a store fails in one line, exit 1', async (t) => {
  const dir = t.testdir()
  const r = await run(['audit', 'verify', '--data-dir', dir, '--json'])
  t.equal(r.code, 1)
  t.equal(r.out, '')
  t.match(r.err, /^keymesh: .*no keymesh store at .* \(CP_ERR_STORE\)\n$/)
})

t.test('audit --help shows the commands and examples', async (t) => {
  const ctx = cliContext()
  const helpOf = async (argv: string[]): Promise<string> => {
    let text = ''
    await yargs(argv).scriptName('keymesh').command(auditCommand(ctx)).exitProcess(false).wrap(null).help()
      .parseAsync(argv, {}, (_e, _a, output) => { text = output })
    return text
  }
  t.match(await helpOf(['audit', '--help']), /tail[\s\S]*query[\s\S]*export[\s\S]*verify/)
  t.match(await helpOf(['audit', 'verify', '--help']), /keymesh audit verify --data-dir \/var\/lib\/keymesh --json/)
  t.match(await helpOf(['audit', 'export', '--help']), /keymesh audit export --format jsonl -o audit.jsonl/)
  t.match(await helpOf(['audit', 'query', '--help']), /--since/)
})

t.test('an export cut off part-way, or ending mid-line, fails and leaves no file', async (t) => {
  const { createServer } = await import('node:http')
  let mode: 'drop' | 'no-newline' | 'garbage' = 'drop'
  const server = createServer((_req, res) => {
    if (mode === 'garbage') {
      res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>bad gateway</h1>')
      return
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    res.write('{"seq":1}\n{"seq":2}\n')
    if (mode === 'no-newline') res.end('{"seq":3')
    else setImmediate(() => res.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const dir = t.testdir({ 'any.token': `kmo_${'A'.repeat(43)}` })
  chmodSync(join(dir, 'any.token'), 0o600)
  const file = join(dir, 'audit.jsonl')
  const cli = (...argv: string[]) => run(['audit', 'export', ...argv, '--cp', url, '--token-file', join(dir, 'any.token')])

  const dropped = await cli('-o', file)
  t.match(dropped, { code: 1, err: /ended before it was complete.*\(CP_ERR_AUDIT_INCOMPLETE\)\n$/ })
  mode = 'no-newline'
  t.match(await cli('-o', file), { code: 1, err: /last line is cut off \(CP_ERR_AUDIT_INCOMPLETE\)/ })
  t.same(readdirSync(dir), ['any.token'], 'neither the file nor a temporary file is left')
  const toStdout = await cli()
  t.equal(toStdout.code, 1, 'to stdout, what came is shown but the exit says it is incomplete')
  mode = 'garbage'
  t.match(await cli(), { code: 1, err: /HTTP 502 without an error code \(CP_ERR_BAD_RESPONSE\)/ })
})

t.test('an export to a directory that does not exist is one line with CP_ERR_OUTPUT', async (t) => {
  const { h, cli } = await setup(t)
  const file = join(h.dataDir, 'no-such-dir', 'audit.jsonl')
  const r = await cli('audit', 'export', '-o', file)
  t.match(r, { code: 1, err: /cannot write beside .*\(ENOENT\).*\(CP_ERR_OUTPUT\)\n$/ })
  t.notOk(existsSync(file))
})
