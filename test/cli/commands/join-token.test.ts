import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { startTestControlPlane } from '../../kit/cp.js'
import { runCli } from '../../kit/cli.js'

t.test('join-token list shows service, expiry and status, never the token; revoke is audited', async (t) => {
  const cp = await startTestControlPlane(t)
  const tokenFile = join(cp.dataDir, 'cli.token')
  writeFileSync(tokenFile, cp.adminToken, { mode: 0o600 })
  const run = (...argv: string[]) => runCli([...argv, '--cp', cp.cp.url, '--token-file', tokenFile])
  const created = JSON.parse((await run('join-token', 'create', '--service', 'orders', '--json')).out)
  const list = await run('join-token', 'list')
  t.equal(list.code, 0, list.err)
  t.match(list.out, new RegExp(`^ID\\s+SERVICE\\s+EXPIRES\\s+STATUS\\n${created.id}\\s+orders\\s+2026-01-01T01:00:00\\.000Z\\s+unused\\n$`))
  t.notOk(list.out.includes(created.token), 'the token is not listed')
  const revoked = await run('join-token', 'revoke', created.id)
  t.equal(revoked.out, `revoked join token ${created.id} (orders)\n`)
  t.match((await run('join-token', 'list', '--service', 'orders')).out, /revoked 2026-01-01T00:00:00\.000Z\n$/)
  t.match(JSON.parse((await run('join-token', 'list', '--json')).out), [{ id: created.id, revokedAt: new Date(Date.UTC(2026, 0, 1)).toISOString() }])
  const bad = await run('join-token', 'revoke', 'nope')
  t.equal(bad.code, 1)
  t.match(bad.err, /CP_ERR_INVALID_FIELD/)
  t.match(await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'join-token.revoke', outcome: 'ok' }), [{ target: `join-token:${created.id}` }])
})
