// `keymesh key create --type ed25519|ecdsa-p256|hmac-sha256`, grants of the
// signature rights, and `key public` printing the signing keys' PEM (readable by
// node:crypto as the right kind of key), saving it with -o, refusing hmac keys.
import t from 'tap'
import { createPublicKey } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { startTestControlPlane } from '../../kit/cp.js'
import { cliChild, runCli } from '../../kit/cli.js'

const tcp = await startTestControlPlane(t)
const tokenFile = join(tcp.dataDir, 'cli.token')
writeFileSync(tokenFile, tcp.adminToken, { mode: 0o600 })
const cli = (...argv: string[]) => runCli([...argv, '--cp', tcp.cp.url, '--token-file', tokenFile])

t.test('create each signing type, grant its rights, list by type', async (t) => {
  for (const type of ['ed25519', 'ecdsa-p256', 'hmac-sha256']) {
    const made = await cli('key', 'create', `k-${type}`, '--type', type)
    t.equal(made.code, 0, made.err)
    t.match(made.out, new RegExp(`type:\\s+${type}`))
  }
  const granted = await cli('key', 'grant', 'k-ed25519', '--service', 'web', '--allow', 'sign,verify', '--json')
  t.equal(granted.code, 0, granted.err)
  t.same(JSON.parse(granted.out).rights, ['sign', 'verify'])
  t.equal((await cli('key', 'grant', 'k-hmac-sha256', '--service', 'web', '--allow', 'hmac,verify')).code, 0)
  const listed = await cli('key', 'list', '--type', 'ecdsa-p256', '--json')
  t.same(JSON.parse(listed.out).keys.map((k: { name: string }) => k.name), ['k-ecdsa-p256'])
  const bad = await cli('key', 'create', 'k-rsa', '--type', 'rsa')
  t.not(bad.code, 0, 'an unknown type is refused by the CLI')
})

t.test('public: PEM for ed25519 and ecdsa-p256, JSON with -o, a clear refusal for hmac', async (t) => {
  const ed = await cli('key', 'public', 'k-ed25519')
  t.equal(ed.code, 0, ed.err)
  t.match(ed.out, /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=]+\n-----END PUBLIC KEY-----\n$/)
  t.equal(createPublicKey(ed.out).asymmetricKeyType, 'ed25519')
  const ec = await cli('key', 'public', 'k-ecdsa-p256')
  const ecKey = createPublicKey(ec.out)
  t.same([ecKey.asymmetricKeyType, ecKey.asymmetricKeyDetails?.namedCurve], ['ec', 'prime256v1'])
  const file = join(tcp.dataDir, 'ed.pub.json')
  t.equal((await cli('key', 'public', 'k-ed25519', '-o', file)).code, 0)
  t.same(JSON.parse(readFileSync(file, 'utf8')), { name: 'k-ed25519', version: 1, publicKey: ed.out })
  const mac = await cli('key', 'public', 'k-hmac-sha256')
  t.equal(mac.code, 1)
  t.match(mac.err, /hmac-sha256 key; only x25519, ed25519 and ecdsa-p256 keys have a public key.*\(CP_ERR_KEY_TYPE\)/)
})

t.test('help names the new types and rights', async (t) => {
  t.match(cliChild(['key', 'create', '--help']), /ed25519,\s+ecdsa-p256:\s+signatures;\s+hmac-sha256:\s+MACs/)
  t.match(cliChild(['key', 'grant', '--help']), /sign,\s+verify,\s+hmac/)
})
