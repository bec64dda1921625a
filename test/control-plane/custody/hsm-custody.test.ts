// Custody kind "pkcs11" wired into start-up: `init --pkcs11-…` wraps the master key
// with a SoftHSM2 key; the control plane unseals itself at every start, and stays
// sealed, saying why, when the HSM cannot be used.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { initCustody } from '../../../control-plane/src/index.js'
import { captureLogger } from '../../kit/logs.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { runCli } from '../../kit/cli.js'
import { softToken } from '../../kit/softhsm.js'

t.test('an HSM unseals the control plane at every start; an unusable one leaves it sealed with the reason', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const dir = join(t.testdir(), 'cp')
  const made = await initCustody({ dataDir: dir, pkcs11: { ...tok.config('keymesh-master'), createKey: true }, logger: captureLogger().logger })
  t.equal(made.kind, 'pkcs11')
  const first = await startTestControlPlane(t, { dataDir: dir })
  t.notOk(first.cp.keyring.sealed, 'unsealed without anyone')
  t.match(first.cp.keyring.status(), { kind: 'pkcs11' })
  t.equal((await first.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).status, 201)
  t.match((await first.api('POST', '/v1/sys/seal')).body, { error: { code: 'CP_ERR_CONFLICT', message: /HSM/ } }, 'no shares to unseal it by hand: seal is refused')
  const audit = (await first.api('GET', '/v1/audit?action=custody.init')).body.entries
  t.match(audit, [{ details: { kind: 'pkcs11', keyLabel: 'keymesh-master' } }])
  t.notMatch(JSON.stringify(audit), new RegExp(tok.pin), 'the PIN is not audited')
  await first.cp.close()

  const again = await startTestControlPlane(t, { dataDir: dir, adminToken: first.adminToken })
  t.equal((await again.api('GET', '/v1/keys/orders')).status, 200, 'a restart unseals again')
  await again.cp.close()

  writeFileSync(tok.pinFile, 'not-the-pin\n', { mode: 0o600 })
  const refused = await startTestControlPlane(t, { dataDir: dir, adminToken: first.adminToken })
  t.ok(refused.cp.keyring.sealed, 'a refused PIN leaves it sealed')
  t.match(refused.logs.join(''), /the HSM did not unwrap the master key; staying sealed: .*PIN/)
  t.match((await refused.api('GET', '/readyz', undefined, null)).body, { status: 'sealed', kind: 'pkcs11' })
  t.notMatch(refused.logs.join(''), new RegExp(tok.pin))
})

t.test('init through the CLI checks the PKCS#11 flags', async (t) => {
  const dir = join(t.testdir(), 'cp')
  t.match(await runCli(['control-plane', 'init', '--data-dir', dir, '--pkcs11-module', '/nowhere.so', '--pkcs11-key-label', 'k', '--pkcs11-pin-file', '/p']), { code: 1, err: /exactly one of --pkcs11-slot and --pkcs11-token-label/ })
  t.match(await runCli(['control-plane', 'init', '--data-dir', dir, '--pkcs11-module', '/nowhere.so', '--shares', '3', '--threshold', '2']), { code: 2, err: /mutually exclusive|conflict/i })
})
