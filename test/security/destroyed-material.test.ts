// Finding (issue 12): a destroyed key version's sealed material survived in the
// SQLite -wal file (three copies) until its frames happened to be overwritten.
// The attack: after destruction, read the raw files of the data directory and
// look for the material. Destroyed means gone: from keymesh.db (secure_delete
// zeroes the freed cell), from keymesh.db-wal (checkpointed and truncated after
// the erasure) and keymesh.db-shm. On PostgreSQL the table file is checked the
// same way after the VACUUM that follows a destruction (that needs a superuser
// for pg_read_binary_file; WAL segments and backups are out of reach by design,
// see docs/operations.md).
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'

import { SECOND } from '../kit/fake-clock.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import { pgExec, pgSchema } from '../kit/pg.js'

const FILES = ['keymesh.db', 'keymesh.db-wal', 'keymesh.db-shm']

/** Every 16-byte window of the sealed value: a partial copy is found too (a chance match is ~2^-128 per offset). */
function windows(sealed: Uint8Array): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i + 16 <= sealed.length; i++) out.push(Buffer.from(sealed.subarray(i, i + 16)))
  return out
}

/** The files (of FILES) in `dir` that hold any window of `sealed`. */
function filesHolding(dir: string, sealed: Uint8Array): string[] {
  const found: string[] = []
  for (const name of FILES) {
    const path = join(dir, name)
    if (!existsSync(path)) continue
    const bytes = readFileSync(path)
    if (windows(sealed).some((w) => bytes.includes(w))) found.push(name)
  }
  return found
}

/** A key with two versions; v1 (not primary) is scheduled for destruction in one second. Resolves to v1's sealed material. */
async function keyWithDoomedVersion(t: Tap, h: TestControlPlane, name: string): Promise<Uint8Array> {
  t.equal((await h.api('POST', '/v1/keys', { name, type: 'aead' })).status, 201)
  t.equal((await h.api('POST', `/v1/keys/${name}/rotate`)).status, 200)
  const v1 = await h.cp.ctx.store.read((r) => r.getKeyVersion(name, 1))
  const sealed = v1?.sealedMaterial
  if (!sealed) throw new Error('version 1 has no material')
  t.equal((await h.api('POST', `/v1/keys/${name}/versions/1/state`, { state: 'scheduled-destruction', windowMs: SECOND })).status, 200)
  return sealed
}

async function destroyDue(t: Tap, h: TestControlPlane, name: string): Promise<void> {
  h.clock.advance(2 * SECOND)
  await h.cp.scheduler.tick()
  t.match(await h.cp.ctx.store.read((r) => r.getKeyVersion(name, 1)), { state: 'destroyed', sealedMaterial: null })
}

type Tap = Test

t.test('SQLite: no byte run of a destroyed version is left in keymesh.db, -wal or -shm', async (t) => {
  const h = await startTestControlPlane(t)
  const sealed = await keyWithDoomedVersion(t, h, 'orders')
  t.ok(sealed.length >= 32, 'sealed material is nonce, ciphertext and tag')
  t.not(filesHolding(h.dataDir, sealed).length, 0, 'before destruction the search finds it (the search works)')

  await destroyDue(t, h, 'orders')
  t.same(filesHolding(h.dataDir, sealed), [], 'while the control plane runs: in none of the files')
  t.equal(readFileSync(join(h.dataDir, 'keymesh.db-wal')).length, 0, 'the WAL was checkpointed and truncated')

  // Later writes must not bring it back (a WAL frame of the old page, a page from the freelist).
  for (let i = 0; i < 20; i++) t.equal((await h.api('POST', '/v1/keys', { name: `later-${i}`, type: 'aead' })).status, 201)
  t.same(filesHolding(h.dataDir, sealed), [], 'after more writes: still none')
  await h.cp.close()
  t.same(filesHolding(h.dataDir, sealed), [], 'after shutdown: none')
})

t.test('PostgreSQL: after the destruction, the table file of key_versions holds no byte run of it', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const [role] = await pgExec<{ super: boolean }>('SELECT rolsuper AS super FROM pg_roles WHERE rolname = current_user')
  if (!role?.super) return void t.plan(0, 'reading the table file needs a superuser (pg_read_binary_file)')
  const h = await startTestControlPlane(t, { storeUrl: db.url })
  const sealed = await keyWithDoomedVersion(t, h, 'orders')
  const pathNow = async (): Promise<string> =>
    (await pgExec<{ path: string }>(`SELECT pg_relation_filepath('${db.schema}.key_versions') AS path`))[0]!.path
  const fileHolds = async (path: string): Promise<boolean> => {
    await pgExec('CHECKPOINT')
    const [row] = await pgExec<{ bytes: Buffer | null }>('SELECT pg_read_binary_file($1::text, 0, 104857600, true) AS bytes', [path])
    return row?.bytes != null && windows(sealed).some((w) => row.bytes!.includes(w))
  }
  const before = await pathNow()
  t.equal(await fileHolds(before), true, 'before destruction the search finds it (the search works)')
  await destroyDue(t, h, 'orders')
  t.equal(await fileHolds(await pathNow()), false, 'the table file holds no copy: the rewrite left the dead row version behind')
  t.equal(await fileHolds(before), false, 'and the file it replaced is emptied')
})
