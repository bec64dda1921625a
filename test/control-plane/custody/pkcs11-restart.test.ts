// Unattended restart with the master key in PKCS#11 custody, end to end at the
// level of the custody module: an "init" wraps a fresh master key under a key in
// SoftHSM2, seals a record under the master key and keeps only the blob and the
// sealed record on disk; a new process — with the config, the files and the
// token, and no person typing anything — gets the master key back and opens the
// record. While the HSM cannot be reached, the new process gets no key and says
// why; once it is back, the same restart succeeds.
//
// When `keymesh control-plane init --pkcs11-…` lands (the seal work), the parent's
// half becomes that command and the child becomes startChildControlPlane on the
// same data directory; the assertions stay: the child opens what the first run
// sealed, and with the HSM away it stays sealed with CP_ERR_PKCS11 in its log.
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

import { pkcs11Config, pkcs11CreateKey, pkcs11Wrap } from '../../../control-plane/src/custody/pkcs11.js'
import { seal, sealIdentity } from '../../../control-plane/src/seal.js'
import { softToken, type SoftToken } from '../../kit/softhsm.js'

const run = promisify(execFile)
const CHILD = join(import.meta.dirname, 'unwrap-child.js')
const IDENTITY = sealIdentity.meta('restart-probe')

interface Installation {
  readonly configJson: string
  readonly blobFile: string
  readonly sealedFile: string
  readonly keySha256: string
}

/** What `init` does with PKCS#11 custody, at module level: key on the token, blob and a sealed record in DIR. */
async function init(tok: SoftToken, dir: string): Promise<Installation> {
  const cfg = pkcs11Config(tok.config('keymesh-master'))
  await pkcs11CreateKey(cfg)
  const masterKey = new Uint8Array(randomBytes(32))
  const keySha256 = createHash('sha256').update(masterKey).digest('hex')
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const blobFile = join(dir, 'master.key.pkcs11')
  writeFileSync(blobFile, await pkcs11Wrap(cfg, masterKey), { mode: 0o600 })
  const sealedFile = join(dir, 'probe.sealed')
  writeFileSync(sealedFile, seal(masterKey, IDENTITY, new TextEncoder().encode('sealed before the restart')))
  masterKey.fill(0) // the first run ends: nothing of the key is left but the blob
  return { configJson: JSON.stringify(cfg), blobFile, sealedFile, keySha256 }
}

/** A new process starting from the files alone. */
async function restart(inst: Installation, env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  const { stdout } = await run(process.execPath, [CHILD, inst.configJson, inst.blobFile, inst.sealedFile, IDENTITY], { env })
  return JSON.parse(stdout) as Record<string, string>
}

t.test('a SoftHSM2-wrapped installation restarts unattended and opens what it sealed', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const inst = await init(tok, join(tok.dir, 'data'))
  t.equal(statSync(inst.blobFile).size, 61, 'the data directory holds the 61-byte blob, not the key')

  t.same(await restart(inst, tok.env), { keySha256: inst.keySha256, record: 'sealed before the restart' }, 'first restart')
  t.same(await restart(inst, tok.env), { keySha256: inst.keySha256, record: 'sealed before the restart' }, 'and the next: nothing was used up')
})

t.test('with the HSM unreachable the restart gets no key and says why; when it is back, the restart succeeds', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const inst = await init(tok, join(tok.dir, 'data'))

  // SoftHSM's token store gone (a network HSM down looks the same to us: no token).
  const tokens = join(tok.dir, 'tokens')
  renameSync(tokens, `${tokens}.away`)
  mkdirSync(tokens)
  const away = await restart(inst, tok.env)
  t.equal(away.code, 'CP_ERR_PKCS11')
  t.match(away.message, /no token labelled "km-[0-9a-f]+" in .*; is the HSM reachable\? if so, fix --pkcs11-token-label/)
  t.notOk('keySha256' in away, 'no key')

  // The module itself unusable.
  const noConf = await restart(inst, { ...tok.env, SOFTHSM2_CONF: join(tok.dir, 'missing.conf') })
  t.match(noConf, { code: 'CP_ERR_PKCS11', message: /C_Initialize of .* failed/ })

  renameSync(tokens, `${tokens}.empty`)
  renameSync(`${tokens}.away`, tokens)
  t.same(await restart(inst, tok.env), { keySha256: inst.keySha256, record: 'sealed before the restart' }, 'the HSM is back')
})
