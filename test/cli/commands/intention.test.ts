import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import yargs from 'yargs'

import { intentionCommand } from '../../../cli/commands/intention.js'
import { pairCommand } from '../../../cli/commands/pair.js'
import { main } from '../../../cli/main.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { HOUR } from '../../kit/fake-clock.js'
import { cliContext, runCli } from '../../kit/cli.js'

interface Ran { code: number; stdout: string; stderr: string }

function cli(cp: TestControlPlane, tokenFile: string) {
  return async (...argv: string[]): Promise<Ran> => {
    const { code, out, err } = await runCli([...argv, '--cp', cp.cp.url, '--token-file', tokenFile])
    return { code, stdout: out, stderr: err }
  }
}

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }) {
  const cp = await startTestControlPlane(t)
  const tokenFile = join(t.testdir(), 'admin.token')
  writeFileSync(tokenFile, cp.adminToken, { mode: 0o600 })
  return { cp, run: cli(cp, tokenFile) }
}

t.test('intention allow SRC DST, then list, in tables and JSON', async (t) => {
  const { run } = await setup(t)
  const allowed = await run('intention', 'allow', 'web', 'api')
  t.equal(allowed.code, 0, allowed.stderr)
  t.equal(allowed.stdout, 'allowed web -> api (pair api:web, key version 1)\n')
  const again = await run('intention', 'allow', 'web', 'api', '--json')
  t.match(JSON.parse(again.stdout), { src: 'web', dst: 'api', created: false, pairId: 'api:web', pairVersion: 1 })

  const table = await run('intention', 'list')
  t.match(table.stdout, /^EFFECT\s+SRC\s+DST\s+CREATED\s+REMOVED AT\nallow\s+web\s+api\s+2026-01-01T00:00:00\.000Z\s+-\n$/)
  const json = await run('intention', 'list', '--service', 'api', '--json')
  t.same(JSON.parse(json.stdout), [{ src: 'web', dst: 'api', effect: 'allow', createdAt: new Date(Date.UTC(2026, 0, 1)).toISOString(), removesAt: null }])
  t.same(JSON.parse((await run('intention', 'list', '--service', 'db', '--json')).stdout), [])
})

t.test('pair rotate A B --json, pair list, and intention remove --now', async (t) => {
  const { cp, run } = await setup(t)
  await run('intention', 'allow', 'web', 'api')
  await run('intention', 'allow', 'api', 'web')
  const now = cp.clock.now()
  const rotated = await run('pair', 'rotate', 'web', 'api', '--json')
  t.equal(rotated.code, 0, rotated.stderr)
  t.same(JSON.parse(rotated.stdout), { pairId: 'api:web', version: 2, previousVersion: 1, previousNotAfter: new Date(now + HOUR).toISOString() })
  const plain = await run('pair', 'rotate', 'api', 'web')
  t.equal(plain.stdout, `rotated api:web to v3 (v2 decrypt-only, accepted until ${new Date(now + HOUR).toISOString()})\n`)

  const list = await run('pair', 'list')
  t.match(list.stdout, /^PAIR\s+PRIMARY\s+ALLOWS\s+VERSIONS\napi:web\s+v3\s+api->web web->api\s+v1 decrypt-only until .*; v2 decrypt-only until .*; v3 enabled\n$/)
  const listJson = JSON.parse((await run('pair', 'list', '--json')).stdout)
  t.match(listJson, [{ pairId: 'api:web', services: ['api', 'web'], primaryVersion: 3, allows: { 'api->web': true, 'web->api': true } }])

  const removeOne = await run('intention', 'remove', 'web', 'api', '--now')
  t.equal(removeOne.stdout, 'removed allow web -> api\n')
  const removeLast = await run('intention', 'remove', 'api', 'web', '--now', '--json')
  t.match(JSON.parse(removeLast.stdout), { removed: true, effect: 'allow' })
  t.equal((await run('pair', 'list')).stdout, '(none)\n', 'a destroyed pair is not listed')
  t.match((await run('pair', 'list', '--all')).stdout, /api:web\s+none \(destroyed\)\s+none\s+-\n/, '--all lists it as destroyed')
})

t.test('mistakes are one line with a code and a non-zero exit', async (t) => {
  const { run } = await setup(t)
  const bad = await run('intention', 'allow', 'Web', 'api')
  t.equal(bad.code, 1)
  t.match(bad.stderr, /^keymesh: .*\(CP_ERR_SERVICE_NAME\)\n$/)
  t.equal(bad.stdout, '')
  const same = await run('intention', 'allow', 'api', 'api')
  t.match(same.stderr, /CP_ERR_SAME_SERVICE/)
  const none = await run('pair', 'rotate', 'a', 'b')
  t.equal(none.code, 1)
  t.match(none.stderr, /^keymesh: .*\(CP_ERR_PAIR_NOT_FOUND\)\n$/)
  const unknown = await run('intention', 'remove', 'a', 'b')
  t.match(unknown.stderr, /CP_ERR_INTENTION_NOT_FOUND/)
  const usage = await run('pair', 'rotate', 'a')
  t.equal(usage.code, 2, 'a missing argument is a usage error')
  t.match(usage.stderr, /not enough non-option arguments/)
})

// main() leaves --help to yargs, which prints with console.log and exits the process;
// so the modules' help is rendered here through a yargs instance that returns it.
async function helpOf(argv: string[]): Promise<string> {
  const ctx = cliContext()
  let text = ''
  await yargs(argv)
    .scriptName('keymesh')
    .command(intentionCommand(ctx))
    .command(pairCommand(ctx))
    .exitProcess(false)
    .help()
    .parseAsync(argv, {}, (_err, _argv, output) => {
      text = output
    })
  return text
}

t.test('--help shows examples', async (t) => {
  t.match(await helpOf(['pair', 'rotate', '--help']), /keymesh pair rotate web api --json/)
  t.match(await helpOf(['intention', 'allow', '--help']), /keymesh intention allow web api/)
  t.match(await helpOf(['intention', '--help']), /allow <src> <dst>[\s\S]*deny <src> <dst>[\s\S]*remove <src> <dst>[\s\S]*list/)
  t.match(await helpOf(['pair', '--help']), /list[\s\S]*rotate <a> <b>/)
})

t.test('an auditor may list but not allow', async (t) => {
  const { cp } = await setup(t)
  const { hashTokenBytes, newToken } = await import('../../../control-plane/src/index.js')
  const { newTokenId } = await import('../../../protocol/src/index.js')
  const { ctx } = cp.cp
  const token = newToken(ctx.suite, 'operator')
  await ctx.store.transaction((tx) =>
    tx.insertOperatorToken({ id: newTokenId(ctx.suite.randomBytes), name: 'aud', tokenHash: hashTokenBytes(ctx.suite, token), role: 'auditor', createdAt: ctx.clock.now(), expiresAt: null, revokedAt: null }),
  )
  const file = join(t.testdir(), 'auditor.token')
  writeFileSync(file, token, { mode: 0o600 })
  const run = cli(cp, file)
  t.equal((await run('pair', 'list', '--json')).code, 0)
  const denied = await run('intention', 'allow', 'a', 'b')
  t.equal(denied.code, 1)
  t.match(denied.stderr, /CP_ERR_FORBIDDEN/)
})

t.test('on a terminal, remove --now and deny show what would change and ask; --yes and --dry-run do not ask', async (t) => {
  const { cp } = await setup(t)
  const tokenFile = join(cp.dataDir, 'tty.token')
  writeFileSync(tokenFile, cp.adminToken, { mode: 0o600 })
  const questions: string[] = []
  const tty = (answer: boolean) => async (...argv: string[]): Promise<Ran> => {
    let stdout = ''
    let stderr = ''
    const code = await main([...argv, '--cp', cp.cp.url, '--token-file', tokenFile], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: {},
      confirm: async (q) => (questions.push(q), answer),
    })
    return { code, stdout, stderr }
  }
  await tty(true)('intention', 'allow', 'web', 'api')
  t.same(questions, [], 'allowing is never asked')
  const declined = await tty(false)('intention', 'remove', 'web', 'api', '--now')
  t.equal(declined.code, 1)
  t.match(declined.stdout, /^dry run: nothing was changed\nwould intention\.remove intention:web->api: removed allow web → api; 1 pair\(s\) affected, 1 pair key\(s\) destroyed\n  pair api:web: allows none; key destroyed\n  agents of api, web would get new key sets \(0 enrolled\)\n$/)
  t.equal(declined.stderr, 'keymesh: not confirmed; nothing changed\n')
  t.same(questions, ['remove web -> api now, cutting its live tunnels?'])
  t.equal((await cp.api('GET', '/v1/pairs')).body.length, 1, 'the pair lives on')

  const denied = await tty(true)('intention', 'deny', 'web', 'api')
  t.equal(denied.code, 0, denied.stderr)
  t.match(denied.stdout, /dry run[\s\S]*denied \(replacing its allow\) web -> api; pair keys api:web destroyed\n$/)
  t.equal(questions.length, 2)
  await tty(false)('intention', 'remove', 'web', 'api', '--now', '--yes')
  t.equal(questions.length, 2, '--yes does not ask')
  t.same((await cp.api('GET', '/v1/intentions')).body, [], 'and removed the deny')
})

t.test('--dry-run on any changing command prints what would change and changes nothing', async (t) => {
  const { cp, run } = await setup(t)
  await run('intention', 'allow', 'web', 'api')
  const head = await cp.cp.ctx.store.read((r) => r.getAuditHead())
  const remove = await run('intention', 'remove', 'web', 'api', '--dry-run')
  t.equal(remove.code, 0, remove.stderr)
  t.match(remove.stdout, /^dry run: nothing was changed\nwould intention\.remove intention:web->api: allow web → api is removed at 2026-01-01T01:00:00\.000Z; it works until then; 0 pair\(s\) affected\n$/)
  const key = await run('key', 'create', 'orders', '--type', 'aead', '--dry-run', '--json')
  t.match(JSON.parse(key.stdout), { dryRun: true, changes: [{ action: 'key.create', target: 'key:orders' }] })
  const tokenRun = await run('join-token', 'create', '--service', 'db', '--dry-run')
  t.match(tokenRun.stdout, /would join-token\.create/)
  t.notMatch(tokenRun.stdout, /kmj_/, 'no token is printed')
  t.same(await cp.cp.ctx.store.read((r) => r.getAuditHead()), head, 'no audit entry')
  t.same((await cp.api('GET', '/v1/keys')).body.keys.filter((k: { name: string }) => k.name === 'orders'), [])
  t.match((await cp.api('GET', '/v1/intentions')).body, [{ src: 'web', dst: 'api', removesAt: null }])
})
