import t from 'tap'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { startTestControlPlane } from '../../kit/cp.js'
import { runCli } from '../../kit/cli.js'

t.test('doctor checks a running control plane and its data directory, and says what to fix', async (t) => {
  const cp = await startTestControlPlane(t)
  const tokenFile = join(cp.dataDir, 'admin.token.copy')
  writeFileSync(tokenFile, cp.adminToken, { mode: 0o600 })
  // A data directory of our own: the secrets as the control plane writes them, and its public key.
  const dir = join(cp.dataDir, 'data')
  mkdirSync(dir)
  writeFileSync(join(dir, 'admin.token'), 'x\n', { mode: 0o600 })
  writeFileSync(join(dir, 'identity.pub'), `${cp.identityPub}\n`)
  const pinned = join(cp.dataDir, 'pinned.pub')
  writeFileSync(pinned, `${cp.identityPub}\n`)
  const ok = await runCli(['doctor', '--cp', cp.cp.url, '--token-file', tokenFile, '--data-dir', dir, '--cp-key-file', pinned, '--json'])
  t.equal(ok.code, 0, ok.out)
  const checks = JSON.parse(ok.out) as { check: string; status: string }[]
  const by = Object.fromEntries(checks.map((c) => [c.check, c.status]))
  t.match(by, { reachable: 'ok', transport: 'ok', store: 'ok', token: 'ok', disk: 'ok', 'permissions admin.token': 'ok', 'master key': 'ok', 'pinned key': 'ok' })
  t.notOk(ok.out.includes(cp.adminToken), 'the token is never printed')

  chmodSync(join(dir, 'admin.token'), 0o644)
  const pin = join(cp.dataDir, 'wrong.pub')
  writeFileSync(pin, 'not the key\n')
  writeFileSync(tokenFile, 'kmo_' + 'A'.repeat(43))
  const bad = await runCli(['doctor', '--cp', cp.cp.url, '--token-file', tokenFile, '--data-dir', dir, '--cp-key-file', pin])
  t.equal(bad.code, 1)
  t.match(bad.out, /fail\s+permissions admin\.token.*chmod 600/)
  t.match(bad.out, /fail\s+pinned key/)
  t.match(bad.out, /fail\s+token\s+.*not recognised/)

  // A master key in the data directory: from before custody, or a stray copy. Either way, say what to do.
  const key = join(dir, 'master.key')
  writeFileSync(key, 'x\n', { mode: 0o600 })
  chmodSync(join(dir, 'admin.token'), 0o600)
  const stray = await runCli(['doctor', '--data-dir', dir, '--json'])
  t.equal(stray.code, 0, 'a warning, not a failure')
  t.match((JSON.parse(stray.out) as { check: string }[]).find((c) => c.check === 'master key'), {
    status: 'warn',
    detail: `${key} (mode 600) is a master key in the data directory: whoever copies the directory can open the store`,
    fix: new RegExp(`start the control plane once \\(it moves the key out\\) or run keymesh control-plane init --data-dir ${dir} --from-key-file ${key} --shares 5 --threshold 3; if it already has custody, the file is a stray copy: destroy it \\(shred -u ${key}\\)`),
  })
  chmodSync(key, 0o644)
  const readable = await runCli(['doctor', '--data-dir', dir])
  t.equal(readable.code, 1)
  t.match(readable.out, /fail\s+master key\s+.*\(mode 644: others may read it\).*chmod 600/)

  const down = await runCli(['doctor', '--cp', 'http://127.0.0.1:1'])
  t.equal(down.code, 1)
  t.match(down.out, /fail\s+reachable\s+no answer/)
})

t.test('doctor reaches an https control plane with the CLI\'s trust, and says why when it does not', async (t) => {
  const cp = await startTestControlPlane(t, { madeTls: true })
  const tokenFile = join(cp.dataDir, 'admin.token.copy')
  writeFileSync(tokenFile, cp.adminToken, { mode: 0o600 })
  const ok = await runCli(['doctor', '--cp', cp.cp.url, '--ca-file', cp.caFile as string, '--token-file', tokenFile, '--json'])
  const by = Object.fromEntries((JSON.parse(ok.out) as { check: string; status: string }[]).map((c) => [c.check, c.status]))
  t.match(by, { reachable: 'ok', transport: 'ok', store: 'ok', token: 'ok' }, 'checked through --ca-file')
  const untrusted = await runCli(['doctor', '--cp', cp.cp.url])
  t.equal(untrusted.code, 1)
  t.match(untrusted.out, /fail\s+reachable\s+no answer .*CP_ERR_TLS|fail\s+reachable\s+no answer .*certificate/, 'the TLS refusal is named')
})
