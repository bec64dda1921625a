// SoftHSM2 for tests: a token of the test's own, in a temp directory, for the
// PKCS#11 custody of the master key (control-plane/src/custody/pkcs11.ts).
//
// Each token gets its own softhsm2.conf (directories.tokendir in the temp dir)
// and SOFTHSM2_CONF points at it, in this process for the test's duration and
// in `env` for children. SoftHSM reads SOFTHSM2_CONF at every C_Initialize, and
// the custody module initialises and finalises at every call, so the tests of a
// file can each have a token while they run one after another.
//
// The module is KEYMESH_TEST_PKCS11_MODULE, or where Debian's softhsm2 puts it
// (.ci/run installs it). Where SoftHSM2 is missing, a test skips with a message
// saying so; under CI (CI set) it fails instead, because CI must run these tests.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { Pkcs11Config } from '../../control-plane/src/index.js'

const MODULE_PATHS = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
]

// The slice of a tap Test this helper uses (as in pg.ts).
interface Tap {
  teardown(fn: () => unknown): void
  plan(n: number, comment?: string): void
  fail(message: string): void
}

export interface SoftToken {
  /** The PKCS#11 module's path. */
  readonly module: string
  readonly tokenLabel: string
  /** The slot ID SoftHSM gave the token. */
  readonly slot: number
  readonly pin: string
  /** A 0600 file holding the PIN. */
  readonly pinFile: string
  /** The temp directory (token store, config, PIN file); removed at teardown. */
  readonly dir: string
  /** The environment a child needs to see this token. */
  readonly env: NodeJS.ProcessEnv
  /** A custody config for a key with this label on this token (by token label). */
  config(keyLabel: string): Pkcs11Config
}

/** The SoftHSM2 module's path, or null. */
export function softhsmModule(): string | null {
  const fromEnv = process.env.KEYMESH_TEST_PKCS11_MODULE
  if (fromEnv) return fromEnv
  return MODULE_PATHS.find((p) => existsSync(p)) ?? null
}

/**
 * A fresh, initialised token for this test, or null when SoftHSM2 is missing (the
 * test is then skipped; under CI it fails). Usage: `const tok = softToken(t); if (!tok) return`.
 */
export function softToken(t: Tap, o: { label?: string; pin?: string } = {}): SoftToken | null {
  const module = softhsmModule()
  const util = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' })
  if (module === null || util.error) {
    const message = `SoftHSM2 is not installed (${module === null ? 'no libsofthsm2.so' : 'no softhsm2-util'}); apt-get install softhsm2 to run these tests (KEYMESH_TEST_PKCS11_MODULE names another libsofthsm2.so)`
    if (process.env.CI) t.fail(`${message}. CI must run them.`)
    else t.plan(0, message)
    return null
  }
  const dir = mkdtempSync(join(tmpdir(), 'keymesh-softhsm-'))
  const tokens = join(dir, 'tokens')
  mkdirSync(tokens)
  const conf = join(dir, 'softhsm2.conf')
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`)
  const before = process.env.SOFTHSM2_CONF
  process.env.SOFTHSM2_CONF = conf
  t.teardown(() => {
    if (before === undefined) delete process.env.SOFTHSM2_CONF
    else process.env.SOFTHSM2_CONF = before
    rmSync(dir, { recursive: true, force: true })
  })
  const tokenLabel = o.label ?? `km-${randomBytes(4).toString('hex')}`
  const pin = o.pin ?? randomBytes(6).toString('hex')
  const env = { ...process.env, SOFTHSM2_CONF: conf }
  const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', `so-${pin}`], { encoding: 'utf8', env })
  const slot = /reassigned to slot (\d+)/.exec(init.stdout)?.[1]
  if (init.status !== 0 || slot === undefined) throw new Error(`softhsm2-util --init-token failed: ${init.stdout}${init.stderr}`)
  const pinFile = join(dir, 'pin')
  writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 })
  return {
    module,
    tokenLabel,
    slot: Number(slot),
    pin,
    pinFile,
    dir,
    env,
    config: (keyLabel) => ({ module, tokenLabel, pinFile, keyLabel }),
  }
}
