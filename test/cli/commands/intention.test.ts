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
  t.match(table.stdout, /^SRC\s+DST\s+CREATED\nweb\s+api\s+2026-01-01T00:00:00\.000Z\n$/)
  const json = await run('intention', 'list', '--service', 'api', '--json')
  t.same(JSON.parse(json.stdout), [{ src: 'web', dst: 'api', createdAt: new Date(Date.UTC(2026, 0, 1)).toISOString() }])
  t.same(JSON.parse((await run('intention', 'list', '--service', 'db', '--json')).stdout), [])
})

t.test('pair rotate A B --json, pair list, and intention deny', async (t) => {
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

  const denyOne = await run('intention', 'deny', 'web', 'api')
  t.equal(denyOne.stdout, 'denied web -> api; pair key api:web kept for api -> web\n')
  const denyLast = await run('intention', 'deny', 'api', 'web', '--json')
  t.match(JSON.parse(denyLast.stdout), { pairRetired: true, destroyedVersions: [1, 2, 3] })
  t.match((await run('pair', 'list')).stdout, /api:web\s+none \(destroyed\)\s+none\s+-\n/)
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
  const unknown = await run('intention', 'deny', 'a', 'b')
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
  t.match(await helpOf(['intention', '--help']), /allow <src> <dst>[\s\S]*deny <src> <dst>[\s\S]*list/)
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
