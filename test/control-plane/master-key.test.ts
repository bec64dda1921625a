import { chmodSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import {
  MASTER_KEY_FILE,
  createMasterKeyFile,
  decodeMasterKeyText,
  readMasterKeyFile,
} from '../../control-plane/src/master-key.js'

const key = new Uint8Array(32).map((_, i) => i + 1)
const b64 = Buffer.from(key).toString('base64')

t.test('a new key file is written 0600, raw, with no temp file left', async (t) => {
  const dir = join(t.testdir(), 'data')
  const { mkdirSync } = await import('node:fs')
  mkdirSync(dir)
  const path = join(dir, MASTER_KEY_FILE)
  const got = createMasterKeyFile(path, dir, (n) => new Uint8Array(n).fill(9))
  t.same(got, new Uint8Array(32).fill(9))
  t.equal(statSync(path).mode & 0o777, 0o600)
  t.same(readdirSync(dir), [MASTER_KEY_FILE], 'the temp file is gone')
  t.same(new Uint8Array(readFileSync(path)), got, 'stored raw')
  t.same(readMasterKeyFile(path), got, 'and read back')
})

t.test('creating never replaces a key another process wrote first', async (t) => {
  const dir = t.testdir({ [MASTER_KEY_FILE]: Buffer.from(key) })
  chmodSync(join(dir, MASTER_KEY_FILE), 0o600)
  t.equal(createMasterKeyFile(join(dir, MASTER_KEY_FILE), dir, (n) => new Uint8Array(n).fill(1)), null)
  t.same(new Uint8Array(readFileSync(join(dir, MASTER_KEY_FILE))), key, 'the existing key is untouched')
  t.same(readdirSync(dir), [MASTER_KEY_FILE])
})

t.test('creating into a directory that does not exist fails with CP_ERR_MASTER_KEY', async (t) => {
  const dir = t.testdir()
  t.throws(() => createMasterKeyFile(join(dir, 'missing', MASTER_KEY_FILE), dir), { code: 'CP_ERR_MASTER_KEY', message: /cannot create/ })
  t.same(readdirSync(dir), [], 'and leaves no temp file')
  t.throws(() => createMasterKeyFile(join(dir, MASTER_KEY_FILE), dir, (n) => new Uint8Array(n - 1)), { code: 'CP_ERR_MASTER_KEY' })
})

t.test('a key file is read raw or as base64 text', async (t) => {
  const dir = t.testdir({ raw: Buffer.from(key), text: `${b64}\n` })
  chmodSync(join(dir, 'raw'), 0o600)
  chmodSync(join(dir, 'text'), 0o400)
  t.same(readMasterKeyFile(join(dir, 'raw')), key)
  t.same(readMasterKeyFile(join(dir, 'text')), key)
})

t.test('a key file readable by group or others is refused, naming path and mode but not contents', async (t) => {
  const dir = t.testdir({ lax: b64, group: b64 })
  chmodSync(join(dir, 'lax'), 0o644)
  chmodSync(join(dir, 'group'), 0o640)
  const err = t.throws(() => readMasterKeyFile(join(dir, 'lax')), { code: 'CP_ERR_MASTER_KEY' }) as unknown as Error
  t.match(err.message, join(dir, 'lax'))
  t.match(err.message, /0644/)
  t.notMatch(err.message, b64)
  t.throws(() => readMasterKeyFile(join(dir, 'group')), { message: /0640/ })
})

t.test('key files of the wrong length or form are refused', async (t) => {
  const dir = t.testdir({
    short: Buffer.alloc(31, 1),
    long: Buffer.alloc(33, 1),
    short64: Buffer.alloc(16, 1).toString('base64'),
    notb64: '!'.repeat(44),
    empty: '',
  })
  for (const name of ['short', 'long', 'short64', 'notb64', 'empty']) {
    chmodSync(join(dir, name), 0o600)
    t.throws(() => readMasterKeyFile(join(dir, name)), { code: 'CP_ERR_MASTER_KEY' }, name)
  }
  t.throws(() => readMasterKeyFile(join(dir, 'short64')), { message: /decodes to 16 bytes, need 32/ })
  t.throws(() => readMasterKeyFile(join(dir, 'short')), { message: /holds 31 raw bytes, need 32/ }, 'raw bytes are not called "not base64"')
  t.throws(() => readMasterKeyFile(join(dir, 'notb64')), { message: /holds 44 raw bytes/ })
})

t.test('a missing path or a directory is refused with CP_ERR_MASTER_KEY', async (t) => {
  const dir = t.testdir({ sub: {} })
  t.throws(() => readMasterKeyFile(join(dir, 'nope')), { code: 'CP_ERR_MASTER_KEY', message: /cannot read/ })
  t.throws(() => readMasterKeyFile(join(dir, 'sub')), { code: 'CP_ERR_MASTER_KEY', message: /not a regular file/ })
})

t.test('an environment value is base64 of 32 bytes, and errors name the variable', async (t) => {
  t.same(decodeMasterKeyText(` ${b64} `, 'KEYMESH_MASTER_KEY'), key)
  t.throws(() => decodeMasterKeyText('abc', 'KEYMESH_MASTER_KEY'), { message: /KEYMESH_MASTER_KEY: not base64/ })
  t.throws(() => decodeMasterKeyText(Buffer.alloc(33).toString('base64'), 'KEYMESH_MASTER_KEY'), { message: /KEYMESH_MASTER_KEY: decodes to 33 bytes/ })
})

t.test('decodeMasterKeyText rejects padding in the wrong place', async (t) => {
  t.throws(() => decodeMasterKeyText(`=${b64.slice(1)}`, 'x'), { code: 'CP_ERR_MASTER_KEY' })
  t.throws(() => decodeMasterKeyText(b64.slice(0, -1), 'x'), { message: /not base64/ })
})
