// keymesh control-plane init, unseal, seal and rekey, as an operator types them.
import t from 'tap'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { ADMIN_TOKEN_FILE } from '../../../control-plane/src/index.js'
import { configHome } from '../../../cli/commands/custody.js'
import { runCli } from '../../kit/cli.js'
import { startTestControlPlane } from '../../kit/cp.js'

t.test('init --shares 5 --threshold 3 -o DIR; unseal one share at a time; seal; rekey', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'cp')
  const out = join(base, 'shares')
  const init = await runCli(['control-plane', 'init', '--data-dir', dir, '--shares', '5', '--threshold', '3', '-o', out])
  t.equal(init.code, 0, init.err)
  t.match(init.out, /custody:\s+shares/)
  t.match(init.err, /starts sealed/)
  const files = [1, 2, 3, 4, 5].map((i) => join(out, `share-${i}.txt`))
  for (const f of files) t.equal(statSync(f).mode & 0o777, 0o600, `${f} is 0600`)
  t.notMatch(init.out, /kms1-/, 'written to files, not printed')
  const again = await runCli(['control-plane', 'init', '--data-dir', dir, '--shares', '5', '--threshold', '3'])
  t.match(again, { code: 1, err: /initialised already .*keymesh rekey/ })

  const h = await startTestControlPlane(t, { dataDir: dir, adminToken: 'kmo_none' })
  const cp = ['--cp', h.cp.url]
  t.match(await runCli(['unseal', '--status', ...cp]), { code: 0, out: 'sealed (custody shares, 0 of 3 shares given)\n' })
  t.match(await runCli(['unseal', '--share-file', files[0] as string, ...cp]), { code: 0, out: /sealed \(custody shares, 1 of 3/ })
  t.match(await runCli(['unseal', '--share-file', files[1] as string, ...cp]), { code: 0, out: /2 of 3/ })
  t.match(await runCli(['unseal', '--reset', ...cp]), { code: 0, out: /0 of 3/ })
  t.match(await runCli(['unseal', '--share-file', join(base, 'none'), ...cp]), { code: 2, err: /cannot read the share file/ })
  for (const f of files.slice(2)) await runCli(['unseal', '--share-file', f, ...cp])
  t.notOk(h.cp.keyring.sealed, 'three shares unsealed it')
  t.match(await runCli(['unseal', '--status', '--json', ...cp]), { out: /"sealed": false/ })

  const tokenFile = join(dir, ADMIN_TOKEN_FILE)
  const rekey = await runCli(['rekey', '--shares', '3', '--threshold', '2', '--token-file', tokenFile, ...cp])
  t.equal(rekey.code, 0, rekey.err)
  const newShares = rekey.out.split('\n').filter((l) => l.startsWith('kms1-'))
  t.equal(newShares.length, 3, 'printed one a line')
  t.match(rekey.err, /not shown again/)

  t.match(await runCli(['seal', ...cp]), { code: 2, err: /token/ }, 'seal needs a token')
  t.match(await runCli(['seal', '--token-file', tokenFile, ...cp]), { code: 0, out: /^sealed/ })
  t.ok(h.cp.keyring.sealed)
  const shareFile = join(base, 'new-share')
  writeFileSync(shareFile, `${newShares[0]}\n`)
  await runCli(['unseal', '--share-file', shareFile, ...cp])
  writeFileSync(shareFile, `${newShares[2]}\n`)
  t.match(await runCli(['unseal', '--share-file', shareFile, ...cp]), { code: 0, out: /^unsealed/ })
})

t.test('init refuses what it cannot do, before touching anything', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'cp')
  t.match(await runCli(['control-plane', 'init', '--data-dir', dir, '--shares', '5']), { code: 2, err: /--threshold/ })
  t.match(await runCli(['control-plane', 'init', '--data-dir', dir, '--shares', '1', '--threshold', '1']), { code: 2, err: /--shares must be an integer from 2/ })
  t.match(await runCli(['control-plane', 'init', '--data-dir', dir, '--key-file', join(dir, 'k')]), { code: 2, err: /inside the data directory/ })
  t.notOk(existsSync(join(dir, 'keymesh.db')))
  const keyFile = join(base, 'master.key')
  const made = await runCli(['control-plane', 'init', '--data-dir', dir, '--key-file', keyFile])
  t.equal(made.code, 0, made.err)
  t.match(made.err, /--master-key-file/)
  t.equal(readFileSync(keyFile).length, 32)
})

t.test('the development key directory: KEYMESH_CONFIG_HOME, XDG_CONFIG_HOME/keymesh, ~/.config/keymesh', async (t) => {
  t.equal(configHome({ KEYMESH_CONFIG_HOME: '/a', XDG_CONFIG_HOME: '/b', HOME: '/c' }), '/a')
  t.equal(configHome({ XDG_CONFIG_HOME: '/b', HOME: '/c' }), '/b/keymesh')
  t.equal(configHome({ HOME: '/c' }), '/c/.config/keymesh')
  t.equal(configHome({}), undefined)
})
