// `keymesh key schedule-destroy --force --reason`, `key show`'s usage columns and
// `key import-params` / `key import`, in-process against a real control plane
// (kept apart from key.test.ts, whose help checks spawn children and take long).
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { DAY } from '../../kit/fake-clock.js'
import { operatorCli, runCli } from '../../kit/cli.js'

const setup = operatorCli

t.test('schedule-destroy refuses a recently used version; --force needs --reason; show prints the usage', async (t) => {
  const { cli, tcp } = await setup(t)
  await cli('key', 'create', 'k', '--type', 'aead')
  await cli('key', 'rotate', 'k')
  const usedAt = tcp.clock.now()
  await tcp.cp.ctx.store.transaction((tx) => tx.addKeyUsage([{ keyName: 'k', version: 1, service: 'billing', day: Math.floor(usedAt / DAY), uses: 4, lastUsedAt: usedAt }]))
  tcp.clock.advance(DAY)
  const shown = await cli('key', 'show', 'k')
  t.match(shown.out, /ORIGIN\s+LASTUSED\s+USES30D\s+USEDBY/)
  t.match(shown.out, new RegExp(`generated\\s+${new Date(usedAt).toISOString()}\\s+4\\s+billing`))
  t.match((await cli('key', 'show', 'k', '--json')).json().versions, [{ version: 1, lastUsedAt: new Date(usedAt).toISOString(), uses30d: 4, services: ['billing'] }, { version: 2, lastUsedAt: null }])
  const refused = await cli('key', 'schedule-destroy', 'k', '--version', '1')
  t.equal(refused.code, 1)
  t.match(refused.err, /^keymesh: .*k v1 was last used at .* by billing; .*--force --reason .*\(CP_ERR_KEY_IN_USE\)\n$/)
  const noReason = await cli('key', 'schedule-destroy', 'k', '--version', '1', '--force')
  t.equal(noReason.code, 2)
  t.match(noReason.err, /--force needs --reason/)
  t.match((await cli('key', 'schedule-destroy', 'k', '--version', '1', '--reason', 'x')).err, /--reason goes with --force/)
  const forced = await cli('key', 'schedule-destroy', 'k', '--version', '1', '--force', '--reason', 'rotated after INC-7', '--json')
  t.match(forced.json(), { version: 1, state: 'scheduled-destruction' })
  const [entry] = await tcp.cp.ctx.audit.query(tcp.cp.ctx.store, { action: 'key.state', outcome: 'ok' })
  t.match(entry?.details, { forced: true, forceReason: 'rotated after INC-7' })
  const badWindow = await runCli(['control-plane', '--data-dir', join(tcp.dataDir, 'cp2'), '--destroy-guard-window', 'soon'])
  t.equal(badWindow.code, 2)
  t.match(badWindow.err, /--destroy-guard-window must look like/)
})

t.test('import: wraps the material file to fresh params (or given ones) and sends only the wrapped blob', async (t) => {
  const { cli, dir } = await setup(t)
  const material = Buffer.alloc(32, 0x5a)
  const file = join(dir, 'orders.key')
  writeFileSync(file, material)
  const imported = await cli('key', 'import', 'orders', '--type', 'aead', '--material-file', file)
  t.equal(imported.code, 0, imported.err)
  t.match(imported.out, /imported:\s+v1/)
  t.notOk(imported.out.includes(material.toString('hex')) || imported.out.includes(material.toString('base64')))
  const params = await cli('key', 'import-params', 'orders', '--type', 'aead', '--json')
  const { importId, publicKey } = params.json()
  t.match(importId, /^import-/)
  t.match((await cli('key', 'import-params', 'orders', '--type', 'aead')).out, /expiresAt:\s+\d{4}-/)
  const again = await cli('key', 'import', 'orders', '--type', 'aead', '--material-file', file, '--import-id', importId, '--public-key', publicKey, '--json')
  t.match(again.json(), { primaryVersion: 2, versions: [{ origin: 'imported' }, { origin: 'imported' }] })
  t.match((await cli('key', 'show', 'orders')).out, /imported/)
  t.match((await cli('key', 'import', 'orders', '--type', 'aead', '--material-file', file, '--import-id', importId, '--public-key', publicKey)).err, /\(CP_ERR_KEY_IMPORT\)/, 'used once')
  t.equal((await cli('key', 'import', 'orders', '--type', 'aead', '--material-file', file, '--import-id', importId)).code, 2, '--import-id needs --public-key')
  t.match((await cli('key', 'import', 'orders', '--type', 'aead', '--material-file', join(dir, 'none'))).err, /cannot read .*ENOENT/)
  writeFileSync(file, Buffer.alloc(16, 1))
  t.match((await cli('key', 'import', 'orders', '--type', 'aead', '--material-file', file)).err, /must be 32 bytes, not 16 \(CP_ERR_KEY_IMPORT\)/)
})
