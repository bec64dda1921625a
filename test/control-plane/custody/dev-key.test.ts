// Custody kind "file" and the start-up key stories: the development key outside the
// data directory, a copied data directory that opens nothing, an installation from
// before custody moving out of DIR/master.key, lost and malformed keys, and a start
// that cannot listen leaving no secret behind.
import t, { type Test } from 'tap'
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'

import { ADMIN_TOKEN_FILE, initCustody, openSqliteStore, storeKeyFromMaster, startControlPlane } from '../../../control-plane/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { captureLogger } from '../../kit/logs.js'
import { startTestControlPlane, testKeyDir } from '../../kit/cp.js'

const start = (dataDir: string, o: { keyDir?: string; masterKeyFile?: string; port?: number } = {}) =>
  startControlPlane({ host: '127.0.0.1', port: o.port ?? 0, dataDir, logger: captureLogger().logger, runScheduler: false, ...o })

t.test('a development installation: the key is beside, never in, the data directory; the directory alone opens nothing', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'cp')
  const h = await startTestControlPlane(t, { dataDir: dir })
  await h.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })
  const keyFile = h.masterKeyFile()
  t.ok(keyFile.startsWith(testKeyDir(dir)), 'in the key directory')
  t.match(readdirSync(testKeyDir(dir)), [`${h.cp.keyring.status().installation}.key`], 'named by installation')
  t.match(h.logs.join(''), new RegExp(`created the master key in ${keyFile.replace(/[.]/g, '\\.')}: a development setting`))
  await h.cp.close()

  const copy = join(base, 'copy')
  cpSync(dir, copy, { recursive: true })
  const err = await start(copy, { keyDir: join(base, 'elsewhere') }).catch((e: unknown) => e)
  t.match(err, { code: 'CP_ERR_MASTER_KEY', message: /the key that opens this store is missing: looked for .*elsewhere/ }, 'a copy elsewhere opens nothing')
  const noDir = await start(copy).catch((e: unknown) => e)
  t.match(noDir, { code: 'CP_ERR_MASTER_KEY', message: /missing/ }, 'nor with no key directory at all')
  const db = readFileSync(join(copy, 'keymesh.db'))
  t.equal(db.indexOf(readFileSync(keyFile)), -1, 'the master key is not in the database')

  const withKey = await start(copy, { masterKeyFile: keyFile })
  t.notOk(withKey.keyring.sealed, 'with its key file it opens')
  await withKey.close()
  const again = await startTestControlPlane(t, { dataDir: dir })
  t.equal((await again.api('GET', '/v1/keys/orders')).status, 200, 'and the original starts again with its development key')
  t.notMatch(again.logs.join(''), /created the master key/)
  t.match(again.logs.join(''), /master key read from .*: a development setting/)
})

t.test('a wrong key file names the replica mismatch; a lost one says where it was looked for', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'cp')
  const h = await startTestControlPlane(t, { dataDir: dir })
  const keyFile = h.masterKeyFile()
  await h.cp.close()
  const wrong = join(base, 'wrong.key')
  writeFileSync(wrong, Buffer.alloc(32, 3), { mode: 0o600 })
  t.match(await start(dir, { masterKeyFile: wrong }).catch((e: unknown) => e), { code: 'CP_ERR_MASTER_KEY', message: /does not open this store/ })
  const short = join(base, 'short.key')
  writeFileSync(short, Buffer.alloc(16, 3), { mode: 0o600 })
  t.match(await start(dir, { masterKeyFile: short }).catch((e: unknown) => e), { code: 'CP_ERR_MASTER_KEY', message: /holds 16 raw bytes, need 32/ }, 'a 16-byte key says so, not "not base64"')
  writeFileSync(short, Buffer.alloc(16, 3).toString('base64'), { mode: 0o600 })
  t.match(await start(dir, { masterKeyFile: short }).catch((e: unknown) => e), { message: /decodes to 16 bytes, need 32/ })
  const { unlinkSync } = await import('node:fs')
  unlinkSync(keyFile)
  t.match(await start(dir, { keyDir: testKeyDir(dir) }).catch((e: unknown) => e), { code: 'CP_ERR_MASTER_KEY', message: `the key that opens this store is missing: looked for ${keyFile}; give it with --master-key-file (or KEYMESH_MASTER_KEY), or restore the file` })
})

/** Turns a fresh development installation into one from before custody: its store key in DIR/master.key, no custody row. */
async function legacyInstallation(t: Test, dir: string): Promise<{ storeKey: Uint8Array; adminToken: string }> {
  const h = await startTestControlPlane(t, { dataDir: dir })
  await h.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })
  const keyFile = h.masterKeyFile()
  await h.cp.close()
  const store = await openSqliteStore({ dir })
  const storeKey = await storeKeyFromMaster(store, new Uint8Array(readFileSync(keyFile)), nodeSuite)
  await store.transaction(async (tx) => {
    await tx.deleteMeta('custody')
    await tx.deleteMeta('custody-event')
  })
  await store.close()
  writeFileSync(join(dir, 'master.key'), storeKey, { mode: 0o600 })
  return { storeKey, adminToken: h.adminToken }
}

t.test('an installation from before custody moves its DIR/master.key out on its first start', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'cp')
  const { adminToken } = await legacyInstallation(t, dir)
  const keyDir = join(base, 'keys')
  const { logger, logs } = captureLogger()
  const cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: dir, logger, keyDir, runScheduler: false })
  t.teardown(() => cp.close())
  t.notOk(existsSync(join(dir, 'master.key')), 'DIR/master.key is gone')
  const installation = cp.keyring.status().installation
  t.ok(existsSync(join(keyDir, `${installation}.key`)), 'a development key wraps the old key now')
  t.match(logs.join(''), /moved the master key out of the data directory/)
  const res = await fetch(`${cp.url}/v1/keys/orders`, { headers: { authorization: `Bearer ${adminToken}` } })
  t.equal(res.status, 200, 'everything sealed under the old key still opens')
  const audit = (await (await fetch(`${cp.url}/v1/audit?action=custody.migrate`, { headers: { authorization: `Bearer ${adminToken}` } })).json()) as { entries: unknown[] }
  t.match(audit.entries, [{ outcome: 'ok', details: { kind: 'file', installation } }])
})

t.test('before custody, a lost DIR/master.key is named as missing, not as a replica mismatch', async (t) => {
  const dir = join(t.testdir(), 'cp')
  await legacyInstallation(t, dir)
  const { unlinkSync } = await import('node:fs')
  unlinkSync(join(dir, 'master.key'))
  const err = await start(dir, { keyDir: testKeyDir(dir) }).catch((e: unknown) => e)
  t.match(err, { code: 'CP_ERR_MASTER_KEY', message: /the key that opens this store is missing: looked for .*master\.key \(this store was made before key custody/ })
  t.notMatch((err as Error).message, /does not open/)
})

t.test('init --from-key-file moves an installation from before custody to shares', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const { adminToken } = await legacyInstallation(t, dir)
  const logger = captureLogger().logger
  await t.rejects(initCustody({ dataDir: dir, shares: 3, threshold: 2, logger }), { code: 'CP_ERR_USAGE', message: /--from-key-file/ })
  const wrong = join(dir, '..', 'wrong.key')
  writeFileSync(wrong, Buffer.alloc(32, 1), { mode: 0o600 })
  await t.rejects(initCustody({ dataDir: dir, shares: 3, threshold: 2, fromKeyFile: wrong, logger }), { code: 'CP_ERR_MASTER_KEY' })
  const made = await initCustody({ dataDir: dir, shares: 3, threshold: 2, fromKeyFile: join(dir, 'master.key'), logger })
  t.match(made, { kind: 'shares', removed: true })
  t.notOk(existsSync(join(dir, 'master.key')), 'the old key left the data directory')
  await t.rejects(initCustody({ dataDir: dir, keyFile: wrong, logger }), { code: 'CP_ERR_CONFLICT', message: /initialised already/ })
  const h = await startTestControlPlane(t, { dataDir: dir, adminToken })
  t.ok(h.cp.keyring.sealed)
  for (const s of (made.shares as string[]).slice(0, 2)) await h.api('POST', '/v1/sys/unseal', { share: s }, null)
  t.equal((await h.api('GET', '/v1/keys/orders')).status, 200, 'the old material opens')
})

t.test('init --key-file: outside the data directory only; the control plane starts with it', async (t) => {
  const base = t.testdir()
  const dir = join(base, 'cp')
  const logger = captureLogger().logger
  await t.rejects(initCustody({ dataDir: dir, keyFile: join(dir, 'k'), logger }), { code: 'CP_ERR_USAGE', message: /inside the data directory/ })
  await t.rejects(initCustody({ dataDir: dir, logger }), { code: 'CP_ERR_USAGE' })
  await t.rejects(initCustody({ dataDir: dir, shares: 3, threshold: 4, logger }), { code: 'CP_ERR_USAGE', message: /--threshold/ })
  await t.rejects(initCustody({ dataDir: dir, shares: 3, threshold: 2, fromKeyFile: join(base, 'x'), logger }), { code: 'CP_ERR_USAGE', message: /new/ })
  const keyFile = join(base, 'master.key')
  t.match(await initCustody({ dataDir: dir, keyFile, logger }), { kind: 'file', created: true })
  chmodSync(keyFile, 0o600)
  const cp = await start(dir, { masterKeyFile: keyFile })
  t.teardown(() => cp.close())
  t.notOk(cp.keyring.sealed)
  t.match(cp.keyring.status(), { kind: 'file' })
})

t.test('a start that cannot listen writes no secret', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const port = (busy.address() as { port: number }).port
  const keyDir = join(dir, '..', 'keys')
  t.match(await start(dir, { keyDir, port }).catch((e: unknown) => e), { code: 'CP_ERR_LISTEN' })
  t.notOk(existsSync(join(dir, ADMIN_TOKEN_FILE)), 'no admin token')
  t.notOk(existsSync(keyDir), 'no master key')
  t.notOk(existsSync(dir), 'no data directory: the port is bound before the store is made')
})
