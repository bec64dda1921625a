// `keymesh join-token create` and `keymesh agents list|revoke`, run in-process
// against a real control plane with a real (fake) agent.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { HOUR, MINUTE } from '../../kit/fake-clock.js'
import { runCli } from '../../kit/cli.js'

interface Ran { code: number; out: string; err: string }

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }) {
  const h = await startTestControlPlane(t)
  const tokenFile = join(t.testdir(), 'admin.token')
  writeFileSync(tokenFile, `${h.adminToken}\n`, { mode: 0o600 })
  const cli = async (argv: string[], extra: string[] = ['--cp', h.cp.url, '--token-file', tokenFile]): Promise<Ran> => {
    return runCli([...argv, ...extra])
  }
  return { h, cli }
}

function agent(t: { teardown(fn: () => unknown): void }, h: TestControlPlane, service: string, joinToken: string): FakeAgent {
  const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service, joinToken })
  t.teardown(() => void a.close().catch(() => {}))
  return a
}

t.test('join-token create --json prints a token an agent can enrol with', async (t) => {
  const { h, cli } = await setup(t)
  const r = await cli(['join-token', 'create', '--service', 'orders', '--json'])
  t.equal(r.code, 0, r.err)
  const made = JSON.parse(r.out)
  t.match(made, { id: /^tok_/, token: /^kmj_[\w-]{43}$/, service: 'orders', expiresAt: new Date(h.clock.now() + HOUR).toISOString() })
  const a = agent(t, h, 'orders', made.token)
  t.equal((await a.welcome()).service, 'orders')
})

t.test('join-token create takes --ttl and prints a record otherwise', async (t) => {
  const { h, cli } = await setup(t)
  const r = await cli(['join-token', 'create', '--service', 'orders', '--ttl', '15m'])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /^id: +tok_\w+\nservice: +orders\nexpires: +\S+Z\ntoken: +kmj_[\w-]{43}\n$/)
  t.match(r.out, new Date(h.clock.now() + 15 * MINUTE).toISOString())
  t.match(r.err, /not shown again/)
})

t.test('join-token create refuses bad input with one line and a non-zero exit', async (t) => {
  const { cli } = await setup(t)
  const badTtl = await cli(['join-token', 'create', '--service', 'orders', '--ttl', 'soon'])
  t.equal(badTtl.code, 2)
  t.match(badTtl.err, /^keymesh: .*--ttl.* \(CP_ERR_USAGE\)\n$/)
  const badName = await cli(['join-token', 'create', '--service', 'Not_Valid'])
  t.equal(badName.code, 1)
  t.match(badName.err, /^keymesh: .*\(CP_ERR_SERVICE_NAME\)\n$/)
  const missing = await cli(['join-token', 'create'])
  t.equal(missing.code, 2)
  t.match(missing.err, /service/)
})

t.test('agents list shows a table or JSON, and agents revoke closes the agent', async (t) => {
  const { h, cli } = await setup(t)
  const made = JSON.parse((await cli(['join-token', 'create', '--service', 'orders', '--json'])).out)
  const a = agent(t, h, 'orders', made.token)
  const { agentId } = await a.welcome()

  const table = await cli(['agents', 'list'])
  t.equal(table.code, 0, table.err)
  t.match(table.out, /^ID +SERVICE +STATUS +ENDPOINT +LAST SEEN +STATIC KEY\n/)
  t.match(table.out, new RegExp(`${agentId} +orders +connected +- +\\S+Z +x25519:`))

  const json = JSON.parse((await cli(['agents', 'list', '--service', 'orders', '--json'])).out)
  t.match(json, [{ id: agentId, service: 'orders', connected: true, revokedAt: null }])
  t.same(JSON.parse((await cli(['agents', 'list', '--service', 'billing', '--json'])).out), [])

  const revoked = await cli(['agents', 'revoke', agentId])
  t.equal(revoked.code, 0, revoked.err)
  t.equal(revoked.out, `revoked agent ${agentId} of orders; no pair keys to rotate\n`)
  t.equal((await a.closed).code, 4611)

  t.equal((await cli(['agents', 'list'])).out, '(none)\n')
  const all = await cli(['agents', 'list', '--all'])
  t.match(all.out, new RegExp(`${agentId} +orders +revoked`))
  const again = await cli(['agents', 'revoke', agentId, '--json'])
  t.equal(again.code, 1)
  t.match(again.err, /^keymesh: .*already revoked.*\(CP_ERR_CONFLICT\)\n$/)
})

t.test('agents revoke --json prints the revocation', async (t) => {
  const { h, cli } = await setup(t)
  const made = JSON.parse((await cli(['join-token', 'create', '--service', 'orders', '--json'])).out)
  const a = agent(t, h, 'orders', made.token)
  const { agentId } = await a.welcome()
  await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })
  const r = await cli(['agents', 'revoke', agentId, '--json'])
  t.equal(r.code, 0, r.err)
  t.same(JSON.parse(r.out), { id: agentId, service: 'orders', revokedAt: new Date(h.clock.now()).toISOString(), rotatedPairs: ['billing:orders'] })
  const missing = await cli(['agents', 'revoke'])
  t.equal(missing.code, 2)
})
