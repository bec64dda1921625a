import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import yargs from 'yargs'

import { tokenCommand } from '../../../cli/commands/token.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { DAY } from '../../kit/fake-clock.js'
import { cliContext, runCli } from '../../kit/cli.js'

interface Ran { code: number; out: string; err: string }

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }) {
  const h = await startTestControlPlane(t)
  // Not t.testdir() again: that would wipe the control plane's own directory.
  const dir = h.dataDir
  const adminFile = join(dir, 'admin.token')
  const cli = async (argv: string[], tokenFile = adminFile): Promise<Ran> => {
    return runCli([...argv, '--cp', h.cp.url, '--token-file', tokenFile])
  }
  const fileWith = (name: string, token: string): string => {
    const f = join(dir, name)
    writeFileSync(f, token, { mode: 0o600 })
    return f
  }
  return { h, cli, fileWith }
}

t.test('token create prints the token once: a field in --json, a line otherwise', async (t) => {
  const { h, cli, fileWith } = await setup(t)
  const json = await cli(['token', 'create', '--name', 'ci', '--role', 'operator', '--ttl', '90d', '--json'])
  t.equal(json.code, 0, json.err)
  const made = JSON.parse(json.out)
  t.match(made, { id: /^tok_/, name: 'ci', role: 'operator', token: /^kmo_/, expiresAt: new Date(h.clock.now() + 90 * DAY).toISOString() })

  const plain = await cli(['token', 'create', '--name', 'alice', '--role', 'auditor'])
  t.equal(plain.code, 0)
  t.match(plain.out, /^id: +tok_\w+\nname: +alice\nrole: +auditor\nexpires: +never\ntoken: +kmo_[\w-]{43}\n$/)
  t.match(plain.err, /not shown again/)

  // The new token works from the CLI too, and an operator may not manage tokens.
  const denied = await cli(['token', 'list'], fileWith('ci.token', made.token))
  t.equal(denied.code, 1)
  t.match(denied.err, /^keymesh: .*token management is admin-only.* \(CP_ERR_FORBIDDEN\)\n$/)
  t.notOk(h.logs.join('').includes(made.token), 'the token is not logged')
})

t.test('token list shows a table or the API’s JSON, never a token', async (t) => {
  const { h, cli } = await setup(t)
  const made = JSON.parse((await cli(['token', 'create', '--name', 'ops', '--role', 'operator', '--json'])).out)
  const table = await cli(['token', 'list'])
  t.equal(table.code, 0)
  t.match(table.out, /^ID +NAME +ROLE +STATUS +CREATED +EXPIRES\n/)
  t.match(table.out, /bootstrap-admin +admin +active +2026-01-01T00:00:00.000Z +never/)
  t.match(table.out, new RegExp(`${made.id} +ops +operator +active`))
  const json = await cli(['token', 'list', '--json'])
  const body = JSON.parse(json.out)
  t.equal(body.tokens.length, 2)
  t.notOk(json.out.includes(made.token) || table.out.includes(made.token))

  const revoke = await cli(['token', 'revoke', made.id])
  t.equal(revoke.code, 0)
  t.equal(revoke.out, `revoked operator token ${made.id} (ops)\n`)
  t.notMatch((await cli(['token', 'list'])).out, made.id, 'revoked tokens are hidden by default')
  t.match((await cli(['token', 'list', '--all'])).out, new RegExp(`${made.id} +ops +operator +revoked`))
  t.ok(h)
})

t.test('token revoke errors are one line with a non-zero exit', async (t) => {
  const { h, cli } = await setup(t)
  const boot = JSON.parse((await cli(['token', 'list', '--json'])).out).tokens[0].id as string
  const last = await cli(['token', 'revoke', boot])
  t.equal(last.code, 1)
  t.match(last.err, /^keymesh: this is the last active admin token.* \(CP_ERR_LAST_ADMIN\)\n$/)
  const unknown = await cli(['token', 'revoke', 'tok_aaaaaaaaaaaaaaaaaaaaaaaaaa'])
  t.match(unknown, { code: 1, err: /\(CP_ERR_NOT_FOUND\)\n$/ })
  const json = await cli(['token', 'revoke', 'tok_aaaaaaaaaaaaaaaaaaaaaaaaaa', '--json'])
  t.equal(json.out, '', 'errors never go to stdout, even with --json')
  const made = JSON.parse((await cli(['token', 'create', '--name', 'x', '--role', 'auditor', '--json'])).out)
  const revoked = await cli(['token', 'revoke', made.id, '--json'])
  t.match(JSON.parse(revoked.out), { id: made.id, status: 'revoked' })
  t.ok(h)
})

t.test('token usage mistakes exit 2 before anything is sent', async (t) => {
  const { h, cli } = await setup(t)
  const before = (await h.cp.ctx.audit.verify(h.cp.ctx.store)).count
  const badTtl = await cli(['token', 'create', '--name', 'x', '--role', 'operator', '--ttl', 'soon'])
  t.match(badTtl, { code: 2, err: /--ttl must look like 90s/ })
  const badRole = await cli(['token', 'create', '--name', 'x', '--role', 'root'])
  t.equal(badRole.code, 2)
  t.match(badRole.err, /invalid values[\s\S]*role/)
  const noName = await cli(['token', 'create', '--role', 'admin'])
  t.equal(noName.code, 2)
  t.equal((await h.cp.ctx.audit.verify(h.cp.ctx.store)).count, before, 'nothing reached the control plane')
})

t.test('token --help shows examples', async (t) => {
  const ctx = cliContext()
  const helpOf = async (argv: string[]): Promise<string> => {
    let text = ''
    await yargs(argv).scriptName('keymesh').command(tokenCommand(ctx)).exitProcess(false).wrap(null).help()
      .parseAsync(argv, {}, (_e, _a, output) => { text = output })
    return text
  }
  t.match(await helpOf(['token', '--help']), /create[\s\S]*list[\s\S]*revoke <id>/)
  t.match(await helpOf(['token', 'create', '--help']), /keymesh token create --name ci --role operator --ttl 90d/)
  t.match(await helpOf(['token', 'revoke', '--help']), /last active admin token/)
})
