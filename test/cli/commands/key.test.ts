// `keymesh key …` in-process against a real control plane: the operator contract's
// spellings, --json shapes, readable tables and one-line errors.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { main } from '../../../cli/main.js'
import { destroyDueVersions } from '../../../control-plane/src/index.js'
import { DAY, SECOND } from '../../kit/fake-clock.js'
import { cliChild, operatorCli } from '../../kit/cli.js'

const setup = operatorCli

t.test('the operator contract: key create --type aead, key rotate, key list --json', async (t) => {
  const { cli } = await setup(t)
  const created = await cli('key', 'create', 'orders', '--type', 'aead')
  t.equal(created.code, 0, created.err)
  t.match(created.out, /name:\s+orders/)
  t.match(created.out, /type:\s+aead/)
  const rotated = await cli('key', 'rotate', 'orders')
  t.equal(rotated.code, 0)
  t.match(rotated.out, /version:\s+2/)
  const list = await cli('key', 'list', '--json')
  t.equal(list.code, 0)
  t.match(list.json(), { keys: [{ name: 'orders', type: 'aead', primaryVersion: 2, versions: [{ version: 1 }, { version: 2 }] }] })
  const table = await cli('key', 'list')
  t.match(table.out, /^NAME\s+TYPE\s+PRIMARY/)
  t.match(table.out, /orders\s+aead\s+2/)
})

t.test('create with a schedule, show, set, and the --json shapes', async (t) => {
  const { cli, tcp } = await setup(t)
  const created = await cli('key', 'create', 'agree', '--type', 'x25519', '--rotate-every', '30d', '--json')
  t.match(created.json(), { name: 'agree', type: 'x25519', rotationPeriodMs: 30 * DAY, nextRotationAt: new Date(tcp.clock.now() + 30 * DAY).toISOString() })
  const shown = await cli('key', 'show', 'agree')
  t.match(shown.out, /rotateEvery:\s+30d/)
  t.match(shown.out, /VERSION\s+STATE\s+PRIMARY/)
  t.match(shown.out, /1\s+enabled\s+yes/)
  t.match((await cli('key', 'show', 'agree', '--json')).json(), { name: 'agree', versions: [{ version: 1, state: 'enabled' }] })
  const set = await cli('key', 'set', 'agree', '--no-rotation', '--json')
  t.match(set.json(), { rotationPeriodMs: null, nextRotationAt: null })
  t.match((await cli('key', 'set', 'agree', '--rotate-every', '1w')).out, /rotateEvery:\s+1w/)
  await cli('key', 'rotate', 'agree')
  t.equal((await cli('key', 'set', 'agree', '--min-decrypt-version', '2', '--json')).json().minDecryptVersion, 2)
  const nothing = await cli('key', 'set', 'agree')
  t.equal(nothing.code, 2)
  t.match(nothing.err, /^keymesh: .*nothing to change.*\(CP_ERR_USAGE\)\n$/)
  t.equal((await cli('key', 'set', 'agree', '--rotation')).code, 2)
  t.not((await cli('key', 'set', 'agree', '--rotate-every', '1d', '--no-rotation')).code, 0, 'the two conflict')
})

t.test('version states: decrypt-only, disable, enable, schedule-destroy, cancel-destroy', async (t) => {
  const { cli, tcp } = await setup(t)
  await cli('key', 'create', 'k', '--type', 'aead')
  await cli('key', 'rotate', 'k')
  t.match((await cli('key', 'decrypt-only', 'k', '--version', '1', '--json')).json(), { version: 1, state: 'decrypt-only' })
  t.match((await cli('key', 'disable', 'k', '--version', '1')).out, /state:\s+disabled/)
  t.match((await cli('key', 'enable', 'k', '--version', '1', '--json')).json(), { state: 'enabled' })
  const scheduled = await cli('key', 'schedule-destroy', 'k', '--version', '1', '--in', '2d', '--json')
  t.match(scheduled.json(), { state: 'scheduled-destruction', destroyAt: new Date(tcp.clock.now() + 2 * DAY).toISOString() })
  t.match((await cli('key', 'cancel-destroy', 'k', '--version', '1', '--json')).json(), { state: 'enabled', destroyAt: null })
  const primary = await cli('key', 'schedule-destroy', 'k', '--version', '2')
  t.equal(primary.code, 1)
  t.match(primary.err, /^keymesh: .*primary.*\(CP_ERR_KEY_PRIMARY\)\n$/)
  t.equal(primary.err.split('\n').length, 2, 'one line')
  const refused = await cli('key', 'cancel-destroy', 'k', '--version', '1')
  t.match(refused.err, /\(CP_ERR_KEY_STATE\)/)
  const badVersion = await cli('key', 'disable', 'k', '--version', '0')
  t.equal(badVersion.code, 2)
  t.match(badVersion.err, /--version must be a whole number/)
  t.equal((await cli('key', 'schedule-destroy', 'k', '--version', '1', '--in', 'soon')).code, 2)
  t.equal((await cli('key', 'disable', 'k')).code, 2, '--version is required')
})

t.test('grants: grant, revoke-grant, grants', async (t) => {
  const { cli } = await setup(t)
  await cli('key', 'create', 'k', '--type', 'aead')
  const g = await cli('key', 'grant', 'k', '--service', 'billing', '--allow', 'encrypt,decrypt', '--json')
  t.same(g.json(), { name: 'k', service: 'billing', rights: ['encrypt', 'decrypt'] })
  await cli('key', 'grant', 'k', '--service', 'reports', '--allow', 'decrypt')
  t.same((await cli('key', 'revoke-grant', 'k', '--service', 'billing', '--allow', 'encrypt', '--json')).json().rights, ['decrypt'])
  const table = await cli('key', 'grants', 'k')
  t.match(table.out, /^SERVICE\s+RIGHTS\n/)
  t.match(table.out, /billing\s+decrypt\n/)
  t.same((await cli('key', 'grants', 'k', '--json')).json(), { name: 'k', grants: [{ service: 'billing', rights: ['decrypt'] }, { service: 'reports', rights: ['decrypt'] }] })
  const unknown = await cli('key', 'grant', 'k', '--service', 'billing', '--allow', 'fly')
  t.equal(unknown.code, 1)
  t.match(unknown.err, /unknown right "fly".*\(CP_ERR_BAD_REQUEST\)/)
  t.match((await cli('key', 'grant', 'k', '--service', 'Bad', '--allow', 'decrypt')).err, /\(CP_ERR_GRANT\)/)
})

t.test('public: prints, saves, refuses to overwrite unless --force', async (t) => {
  const { cli, tcp, dir } = await setup(t)
  await cli('key', 'create', 'agree', '--type', 'x25519')
  const printed = await cli('key', 'public', 'agree')
  t.match(printed.out, /^x25519:[A-Za-z0-9_-]{43}\n$/)
  const file = join(dir, 'agree.pub')
  const saved = await cli('key', 'public', 'agree', '-o', file)
  t.equal(saved.code, 0)
  t.same(JSON.parse(readFileSync(file, 'utf8')), { name: 'agree', version: 1, publicKey: printed.out.trim() }, 'the file names the key and version for drop headers')
  await cli('key', 'rotate', 'agree')
  const again = await cli('key', 'public', 'agree', '-o', file)
  t.equal(again.code, 1)
  t.match(again.err, /\(CP_ERR_FILE_EXISTS\)/)
  t.equal(JSON.parse(readFileSync(file, 'utf8')).version, 1, 'not overwritten')
  t.equal((await cli('key', 'public', 'agree', '-o', file, '--force')).code, 0)
  t.equal(JSON.parse(readFileSync(file, 'utf8')).version, 2)
  t.match((await cli('key', 'public', 'agree', '--version', '1', '--json')).json(), { name: 'agree', version: 1, publicKey: printed.out.trim() })
  await cli('key', 'create', 'sym', '--type', 'aead')
  t.match((await cli('key', 'public', 'sym')).err, /only x25519, ed25519 and ecdsa-p256 keys have a public key.*\(CP_ERR_KEY_TYPE\)/)
  await cli('key', 'schedule-destroy', 'agree', '--version', '1', '--in', '1s')
  tcp.clock.advance(SECOND)
  await destroyDueVersions(tcp.cp.ctx, tcp.clock.now())
  t.match((await cli('key', 'public', 'agree', '--version', '1')).err, /\(CP_ERR_VERSION_DESTROYED\)/)
})

t.test('errors are one line with a non-zero exit; help has examples', async (t) => {
  const { cli } = await setup(t)
  const missing = await cli('key', 'show', 'nope')
  t.equal(missing.code, 1)
  t.equal(missing.err, 'keymesh: no such key: nope (CP_ERR_KEY_NOT_FOUND)\n')
  const badName = await cli('key', 'create', 'Bad:Name', '--type', 'aead')
  t.match(badName.err, /^keymesh: key name breaks the naming rules.*\(CP_ERR_KEY_NAME\)\n$/)
  t.not((await cli('key', 'create', 'x', '--type', 'rsa')).code, 0)
  t.match((await cli('key', 'create', 'x', '--type', 'pair')).err, /invalid values|Choices/)
  const dup = await cli('key', 'create', 'x', '--type', 'aead')
  t.equal(dup.code, 0)
  t.match((await cli('key', 'create', 'x', '--type', 'aead')).err, /\(CP_ERR_KEY_EXISTS\)/)
  t.match((await cli('key', 'create', 'y', '--type', 'aead', '--rotate-every', 'monthly')).err, /--rotate-every must look like/)
  const unreachable = await main(['key', 'list', '--cp', 'http://127.0.0.1:1', '--token-file', '/nonexistent'], { stdout: { write: () => true }, stderr: { write: () => true }, env: {} })
  t.not(unreachable, 0)
})

// yargs prints help to the process's stdout and exits, so help runs in a child process.
t.test('help lists every key subcommand, with examples', async (t) => {
  const help = (...argv: string[]): string => cliChild(argv)
  t.match(help('key', 'create', '--help'), /Examples:\n  keymesh key create orders --type aead .*\n.*\n  --rotate-every 30d/)
  t.match(help('key', 'disable', '--help'), /--version\s+Key version number/)
  const top = help('key', '--help')
  for (const c of ['create', 'list', 'show', 'rotate', 'set', 'enable', 'decrypt-only', 'disable', 'schedule-destroy', 'cancel-destroy', 'grant', 'revoke-grant', 'grants', 'public', 'import-params', 'import']) {
    t.match(top, new RegExp(`key ${c}[ \\n]`), `help lists key ${c}`)
  }
})
