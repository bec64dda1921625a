import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { startTestControlPlane } from '../../kit/cp.js'
import { runCli } from '../../kit/cli.js'

t.test('doctor checks a running control plane and its data directory, and says what to fix', async (t) => {
  const cp = await startTestControlPlane(t)
  const tokenFile = join(t.testdir(), 'admin.token.copy')
  writeFileSync(tokenFile, cp.adminToken, { mode: 0o600 })
  const ok = await runCli(['doctor', '--cp', cp.cp.url, '--token-file', tokenFile, '--data-dir', cp.dataDir, '--json'])
  t.equal(ok.code, 0, ok.out)
  const checks = JSON.parse(ok.out) as { check: string; status: string }[]
  const by = Object.fromEntries(checks.map((c) => [c.check, c.status]))
  t.match(by, { reachable: 'ok', transport: 'ok', store: 'ok', token: 'ok', disk: 'ok', 'permissions admin.token': 'ok' })
  t.notOk(ok.out.includes(cp.adminToken), 'the token is never printed')

  chmodSync(join(cp.dataDir, 'admin.token'), 0o644)
  const pin = join(t.testdir(), 'wrong.pub')
  writeFileSync(pin, 'not the key\n')
  writeFileSync(tokenFile, 'kmo_' + 'A'.repeat(43))
  const bad = await runCli(['doctor', '--cp', cp.cp.url, '--token-file', tokenFile, '--data-dir', cp.dataDir, '--cp-key-file', pin])
  t.equal(bad.code, 1)
  t.match(bad.out, /fail\s+permissions admin\.token.*chmod 600/)
  t.match(bad.out, /fail\s+pinned key/)
  t.match(bad.out, /fail\s+token\s+.*not recognised/)

  const down = await runCli(['doctor', '--cp', 'http://127.0.0.1:1'])
  t.equal(down.code, 1)
  t.match(down.out, /fail\s+reachable\s+no answer/)
})
