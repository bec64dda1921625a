// PKCS#11 custody of the master key, against SoftHSM2: each test has a token of
// its own (test/kit/softhsm.ts). The tests that need no token (config, PIN file,
// blob format) run everywhere.
import { execFile, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

import {
  PKCS11_BLOB_BYTES,
  decodePkcs11Blob,
  pkcs11Config,
  pkcs11CreateKey,
  pkcs11Unwrap,
  pkcs11Wrap,
  readPinFile,
  type Pkcs11Config,
} from '../../../control-plane/src/custody/pkcs11.js'
import { isKeymeshError } from '../../../protocol/src/index.js'
import { codeOf } from '../../kit/errors.js'
import { softToken, type SoftToken } from '../../kit/softhsm.js'

const run = promisify(execFile)
const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof import('pkcs11js')
const masterKey = new Uint8Array(32).map((_, i) => 0xa0 + i)

/** The error a promise rejects with: its code and message, or a marker. */
async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p
    return { code: 'no error', message: '' }
  } catch (e) {
    return isKeymeshError(e) ? { code: e.code, message: e.message } : { code: `untyped: ${String(e)}`, message: '' }
  }
}

/** A raw, logged-in session on the token, for what the module under test must not do itself. */
function rawSession<T>(tok: SoftToken, f: (p: InstanceType<typeof pkcs11js.PKCS11>, s: Buffer) => T): { result: T; close: () => void } {
  const p = new pkcs11js.PKCS11()
  p.load(tok.module)
  p.C_Initialize()
  const slot = p.C_GetSlotList(true).find((h) => p.C_GetTokenInfo(h).label.trimEnd() === tok.tokenLabel) as Buffer
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION)
  p.C_Login(s, pkcs11js.CKU_USER, tok.pin)
  const result = f(p, s)
  return {
    result,
    close: () => {
      p.C_Logout(s)
      p.C_CloseSession(s)
      p.C_Finalize()
      p.close()
    },
  }
}

function aesKey(label: string, o: { extractable?: boolean; bytes?: number } = {}): Array<{ type: number; value: number | boolean | string }> {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: o.bytes ?? 32 },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: !o.extractable },
    { type: pkcs11js.CKA_EXTRACTABLE, value: o.extractable ?? false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
  ]
}

t.test('a config needs a module, one of slot and token label, a PIN file and a key label', async (t) => {
  const good = { module: '/m.so', tokenLabel: 'tok', pinFile: '/pin', keyLabel: 'km' }
  const cfg = pkcs11Config(good)
  t.same(cfg, good)
  t.ok(Object.isFrozen(cfg))
  t.same(pkcs11Config({ module: '/m.so', slot: 0, pinFile: '/pin', keyLabel: 'km' }).slot, 0)
  const bad: Array<[Partial<Pkcs11Config>, RegExp]> = [
    [{ module: '' }, /--pkcs11-module/],
    [{ slot: 3 }, /exactly one of --pkcs11-slot and --pkcs11-token-label/],
    [{ tokenLabel: undefined }, /exactly one of/],
    [{ tokenLabel: undefined, slot: -1 }, /--pkcs11-slot must be a slot ID/],
    [{ tokenLabel: undefined, slot: 1.5 }, /--pkcs11-slot must be a slot ID/],
    [{ tokenLabel: ' tok' }, /--pkcs11-token-label must be a non-empty label/],
    [{ tokenLabel: 'x'.repeat(33) }, /--pkcs11-token-label is longer than 32 bytes/],
    [{ pinFile: '' }, /--pkcs11-pin-file/],
    [{ keyLabel: '' }, /--pkcs11-key-label must be a non-empty label/],
    [{ keyLabel: 'k'.repeat(129) }, /--pkcs11-key-label is longer than 128 bytes/],
  ]
  for (const [change, why] of bad) {
    const config = { ...good, ...change } as Pkcs11Config
    t.equal(codeOf(() => pkcs11Config(config)), 'CP_ERR_PKCS11', JSON.stringify(change))
    t.throws(() => pkcs11Config(config), why)
  }
})

t.test('the PIN file must be a small, non-empty regular file only its owner can read', async (t) => {
  const dir = t.testdir({ crlf: '1234\r\n', plain: '1234', lax: '1234\n', empty: '', big: 'x'.repeat(257), sub: {} })
  for (const f of ['crlf', 'plain', 'lax', 'empty', 'big']) chmodSync(join(dir, f), 0o600)
  t.equal(readPinFile(join(dir, 'crlf')), '1234', 'one trailing newline is not part of the PIN')
  t.equal(readPinFile(join(dir, 'plain')), '1234')
  chmodSync(join(dir, 'lax'), 0o640)
  t.throws(() => readPinFile(join(dir, 'lax')), { code: 'CP_ERR_PKCS11', message: /mode 0640; .*chmod 600/ })
  t.throws(() => readPinFile(join(dir, 'empty')), { code: 'CP_ERR_PKCS11', message: /is empty/ })
  t.throws(() => readPinFile(join(dir, 'big')), { code: 'CP_ERR_PKCS11', message: /larger than 256 bytes/ })
  t.throws(() => readPinFile(join(dir, 'sub')), { code: 'CP_ERR_PKCS11', message: /not a regular file/ })
  t.throws(() => readPinFile(join(dir, 'missing')), { code: 'CP_ERR_PKCS11', message: /cannot read the PIN file .*missing/ })
})

t.test('a blob of another length or version is refused before any HSM call', async (t) => {
  t.throws(() => decodePkcs11Blob(new Uint8Array(PKCS11_BLOB_BYTES - 1)), { code: 'CP_ERR_UNSEAL', message: /60 bytes, expected 61/ })
  const v2 = new Uint8Array(PKCS11_BLOB_BYTES)
  v2[0] = 2
  t.throws(() => decodePkcs11Blob(v2), { code: 'CP_ERR_UNSEAL', message: /version 2/ })
  const cfg = pkcs11Config({ module: '/nonexistent.so', tokenLabel: 't', pinFile: '/nonexistent', keyLabel: 'k' })
  t.equal((await failure(pkcs11Unwrap(cfg, v2))).code, 'CP_ERR_UNSEAL')
  t.match(await failure(pkcs11Wrap(cfg, new Uint8Array(16))), { code: 'CP_ERR_PKCS11', message: /only a 32-byte master key, not 16/ })
})

t.test('a created key wraps the master key, and unwrapping gives the same bytes', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const cfg = pkcs11Config(tok.config('keymesh-master'))
  await pkcs11CreateKey(cfg)
  const iv = new Uint8Array(12).fill(7)
  const blob = await pkcs11Wrap(cfg, masterKey, (n) => iv.subarray(0, n))
  t.equal(blob.length, PKCS11_BLOB_BYTES)
  t.equal(blob[0], 1, 'version 1')
  t.same(blob.subarray(1, 13), iv, 'the IV is stored after the version byte')
  t.notOk(Buffer.from(blob).includes(Buffer.from(masterKey)), 'the key is not in the blob')
  t.same(await pkcs11Unwrap(cfg, blob), masterKey)

  const again = await pkcs11Wrap(cfg, masterKey)
  t.not(Buffer.from(again).toString('hex'), Buffer.from(blob).toString('hex'), 'a fresh IV per wrap')
  const bySlot = pkcs11Config({ module: tok.module, slot: tok.slot, pinFile: tok.pinFile, keyLabel: 'keymesh-master' })
  t.same(await pkcs11Unwrap(bySlot, again), masterKey, 'the slot ID finds the same token')

  const { result: attrs, close } = rawSession(tok, (p, s) => {
    p.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_LABEL, value: 'keymesh-master' }])
    const [key] = p.C_FindObjects(s, 2)
    p.C_FindObjectsFinal(s)
    return p.C_GetAttributeValue(s, key as Buffer, [{ type: pkcs11js.CKA_SENSITIVE }, { type: pkcs11js.CKA_EXTRACTABLE }, { type: pkcs11js.CKA_TOKEN }])
  })
  close()
  t.same(attrs.map((a) => (a.value as Buffer)[0]), [1, 0, 1], 'sensitive, not extractable, kept on the token')
})

t.test('creating a key refuses a label already on the token', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const cfg = pkcs11Config(tok.config('taken'))
  await pkcs11CreateKey(cfg)
  const blob = await pkcs11Wrap(cfg, masterKey)
  t.match(await failure(pkcs11CreateKey(cfg)), { code: 'CP_ERR_PKCS11', message: /a key labelled "taken" already exists.*--pkcs11-key-label/ })
  t.same(await pkcs11Unwrap(cfg, blob), masterKey, 'the existing key still opens what it wrapped')
})

t.test('a wrong PIN is refused with the file to fix, never the PIN', async (t) => {
  const tok = softToken(t, { pin: '246813579' })
  if (!tok) return
  await pkcs11CreateKey(pkcs11Config(tok.config('km')))
  const blob = await pkcs11Wrap(pkcs11Config(tok.config('km')), masterKey)
  const wrong = join(tok.dir, 'wrong-pin')
  writeFileSync(wrong, '975318642\n', { mode: 0o600 })
  const f = await failure(pkcs11Unwrap({ ...tok.config('km'), pinFile: wrong }, blob))
  t.equal(f.code, 'CP_ERR_PKCS11')
  t.match(f.message, /refused the PIN in .*wrong-pin \(CKR_PIN_INCORRECT\)/)
  t.notMatch(f.message, /975318642|246813579/, 'neither PIN is in the message')

  t.same(await pkcs11Unwrap(pkcs11Config(tok.config('km')), blob), masterKey, 'the right PIN still works')
})

t.test('a token whose user PIN was never set refuses the login, and the message says to check the PIN', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  // A second token initialised by its security officer only: no C_InitPIN.
  const p = new pkcs11js.PKCS11()
  p.load(tok.module)
  p.C_Initialize()
  const free = p.C_GetSlotList(false).find((h) => (p.C_GetTokenInfo(h).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) as Buffer
  p.C_InitToken(free, `so-${tok.pin}`, 'no-user-pin'.padEnd(32)) // a label is 32 blank-padded bytes
  p.C_Finalize()
  p.close()
  t.match(await failure(pkcs11CreateKey({ ...tok.config('km'), tokenLabel: 'no-user-pin' })), {
    code: 'CP_ERR_PKCS11',
    message: /C_Login on the token labelled "no-user-pin" failed: CKR_USER_PIN_NOT_INITIALIZED; check the PIN file/,
  })
})

t.test('a wrong key label, another key, or an altered blob does not give a key', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const cfg = pkcs11Config(tok.config('km'))
  await pkcs11CreateKey(cfg)
  await pkcs11CreateKey(pkcs11Config(tok.config('other')))
  const blob = await pkcs11Wrap(cfg, masterKey)
  t.match(await failure(pkcs11Unwrap(pkcs11Config(tok.config('kn')), blob)), { code: 'CP_ERR_PKCS11', message: /no key labelled "kn" on the token labelled .*--pkcs11-key-label/ })
  t.match(await failure(pkcs11Unwrap(pkcs11Config(tok.config('other')), blob)), { code: 'CP_ERR_UNSEAL', message: /does not open with the HSM key labelled "other"/ })
  for (const [at, part] of [[1, 'IV'], [20, 'ciphertext'], [PKCS11_BLOB_BYTES - 1, 'tag']] as const) {
    const altered = blob.slice()
    altered[at] = (altered[at] as number) ^ 1
    t.equal((await failure(pkcs11Unwrap(cfg, altered))).code, 'CP_ERR_UNSEAL', `a flipped bit in the ${part}`)
  }
  t.same(await pkcs11Unwrap(cfg, blob), masterKey, 'the untouched blob still opens')
})

t.test('a key that could leave the HSM, is not AES-256, or shares its label is refused', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const { close } = rawSession(tok, (p, s) => {
    p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aesKey('loose', { extractable: true }))
    p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aesKey('short', { bytes: 16 }))
    p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aesKey('twice'))
    p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aesKey('twice'))
  })
  close()
  t.match(await failure(pkcs11Wrap(pkcs11Config(tok.config('loose')), masterKey)), { code: 'CP_ERR_PKCS11', message: /"loose" .* is extractable or not sensitive/ })
  t.match(await failure(pkcs11Wrap(pkcs11Config(tok.config('short')), masterKey)), { code: 'CP_ERR_PKCS11', message: /"short" .* is not an AES-256 key/ })
  t.match(await failure(pkcs11Wrap(pkcs11Config(tok.config('twice')), masterKey)), { code: 'CP_ERR_PKCS11', message: /several keys are labelled "twice"/ })
})

t.test('a missing module, token or slot, or an unreadable token store, names what to fix', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const cfg = tok.config('km')
  t.match(await failure(pkcs11CreateKey({ ...cfg, module: join(tok.dir, 'nope.so') })), { code: 'CP_ERR_PKCS11', message: /cannot load the PKCS#11 module .*nope\.so \(--pkcs11-module\)/ })
  t.match(await failure(pkcs11CreateKey({ ...cfg, tokenLabel: 'absent' })), { code: 'CP_ERR_PKCS11', message: /no token labelled "absent" in .*; is the HSM reachable\? if so, fix --pkcs11-token-label/ })
  const bySlot = { module: tok.module, slot: tok.slot + 1, pinFile: tok.pinFile, keyLabel: 'km' }
  t.match(await failure(pkcs11CreateKey(bySlot)), { code: 'CP_ERR_PKCS11', message: new RegExp(`no initialised token in slot ${tok.slot + 1} .*slots with one: ${tok.slot}\\); is the HSM reachable\\? if so, fix --pkcs11-slot`) })
  // SoftHSM with no configuration it can read: what an unreachable HSM looks like at start.
  process.env.SOFTHSM2_CONF = join(tok.dir, 'missing.conf')
  t.match(await failure(pkcs11CreateKey(cfg)), { code: 'CP_ERR_PKCS11', message: /C_Initialize of .* failed: CKR_/ })
})

t.test('two tokens with the same label are ambiguous', async (t) => {
  const tok = softToken(t, { label: 'same' })
  if (!tok) return
  const second = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'same', '--pin', tok.pin, '--so-pin', `so-${tok.pin}`], { env: tok.env })
  t.equal(second.status, 0, 'softhsm2-util made a second token')
  t.match(await failure(pkcs11CreateKey(tok.config('km'))), { code: 'CP_ERR_PKCS11', message: /2 tokens are labelled "same"; name one with --pkcs11-slot/ })
  t.same(await failure(pkcs11CreateKey({ module: tok.module, slot: tok.slot, pinFile: tok.pinFile, keyLabel: 'km' })), { code: 'no error', message: '' }, 'the slot ID still picks one')
})

t.test('the module works beside another user of the token in the same process, and leaves its login alone', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const cfg = pkcs11Config(tok.config('km'))
  await pkcs11CreateKey(cfg)
  const blob = await pkcs11Wrap(cfg, masterKey)
  const { result: slotCount, close } = rawSession(tok, (p) => p.C_GetSlotList(true).length)
  t.ok(slotCount >= 1)
  try {
    t.same(await pkcs11Unwrap(cfg, blob), masterKey, 'C_Initialize already done and the user already logged in')
  } finally {
    t.doesNotThrow(close, 'the other user still holds its session and login')
  }
})

t.test('a second process unwraps the same blob with only the config and the file: an unattended restart', async (t) => {
  const tok = softToken(t)
  if (!tok) return
  const cfg = pkcs11Config(tok.config('km'))
  await pkcs11CreateKey(cfg)
  const dir = join(tok.dir, 'data')
  mkdirSync(dir)
  const blobFile = join(dir, 'master.key.pkcs11')
  writeFileSync(blobFile, await pkcs11Wrap(cfg, masterKey), { mode: 0o600 })
  const child = join(import.meta.dirname, 'unwrap-child.js')
  const ok = await run(process.execPath, [child, JSON.stringify(cfg), blobFile], { env: tok.env })
  t.same(JSON.parse(ok.stdout), { keySha256: createHash('sha256').update(masterKey).digest('hex') })
  const refused = await run(process.execPath, [child, JSON.stringify({ ...cfg, keyLabel: 'gone' }), blobFile], { env: tok.env })
  t.match(JSON.parse(refused.stdout), { code: 'CP_ERR_PKCS11', message: /no key labelled "gone"/ })
})
