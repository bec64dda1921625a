// GET /v1/sys/backup (api/backup.ts) and the round trip it exists for: an
// installation with keys, grants, intentions, pair keys, tokens, agents and
// audit is backed up while it runs, restored into an empty SQLite or
// PostgreSQL store, and a control plane started there with the same master key
// opens the ciphertexts made before the backup.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'

import { checkBackupFile, openPgStore, openSqliteStore, restoreBackup, type Store } from '../../../control-plane/src/index.js'
import { Database, createSealer, destroyDueVersions, readMasterKeyFile, storeKeyFromMaster } from '../../../control-plane/src/index.js'
import { SECOND } from '../../../platform/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { bytes, createKey, kmsAgent, text } from '../../kit/kms.js'
import { pgSchema } from '../../kit/pg.js'

type Tap = Test

/** The backup as the admin API sends it. */
async function download(h: TestControlPlane, token = h.adminToken): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`${h.cp.url}/v1/sys/backup`, { headers: { authorization: `Bearer ${token}` } })
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') }
}

interface Made {
  readonly ciphertexts: { readonly ciphertext: string; readonly plaintext: string; readonly context: Record<string, string> }[]
  readonly operatorToken: string
}

/** Keys (several versions, one destroyed), grants, intentions and pair keys, tokens, agents, audit; ciphertexts under each live version. */
async function populate(h: TestControlPlane, t: Tap): Promise<Made> {
  await createKey(h, 'orders', 'aead', { app: ['encrypt', 'decrypt'], ops: ['rotate'] })
  const app = await kmsAgent(h, t, 'app')
  const ciphertexts: Made['ciphertexts'] = []
  const context = { tenant: 't1' }
  const encrypt = async (plaintext: string): Promise<void> => {
    const r = await app.request({ op: 'encrypt', key: 'orders', plaintext: bytes(plaintext), context })
    ciphertexts.push({ ciphertext: r.result?.ciphertext as string, plaintext, context })
  }
  await encrypt('under version 1')
  t.equal((await h.api('POST', '/v1/keys/orders/rotate')).status, 200)
  await encrypt('under version 2')
  t.equal((await h.api('POST', '/v1/keys/orders/rotate')).status, 200)
  await encrypt('under version 3')
  // Version 1 is destroyed: its ciphertext is dropped from what must open.
  t.equal((await h.api('POST', '/v1/keys/orders/versions/1/state', { state: 'scheduled-destruction', windowMs: SECOND, force: true, reason: 'test: destroy a version used moments ago' })).status, 200)
  h.clock.advance(SECOND)
  await destroyDueVersions(h.cp.ctx, h.clock.now())
  ciphertexts.shift()
  t.equal((await h.api('POST', '/v1/intentions', { src: 'app', dst: 'billing' })).status, 201)
  const op = await h.api('POST', '/v1/tokens', { name: 'night-shift', role: 'operator' })
  t.equal(op.status, 201)
  return { ciphertexts, operatorToken: op.body.token }
}

/** What the store's reader shows, for comparing two stores (the head moves with the backup's own audit entry). */
async function picture(store: Store): Promise<unknown> {
  return store.read(async (r) => ({
    keys: await r.listKeys(),
    versions: await r.listKeyVersions(),
    grants: await r.listGrants(),
    intentions: await r.listIntentions(),
    agents: await r.listAgents({ includeRevoked: true }),
    tokens: await r.listOperatorTokens({ includeRevoked: true }),
    identity: await r.getMeta('cp-identity'),
  }))
}

/** Restores `file` into `target`, starts a control plane there with the source's master key, and opens every ciphertext. */
async function reopen(t: Tap, source: TestControlPlane, made: Made, file: string, target: { store: Store; storeUrl?: string; dataDir: string }, masterKeyFile = source.masterKeyFile()): Promise<void> {
  const before = await picture(source.cp.ctx.store)
  const result = await restoreBackup(file, target.store, { chainKey: undefined })
  t.equal(result.restored.head.seq, result.header.auditHead.seq, 'the restored chain ends at the backup head')
  t.same(await picture(target.store), before, 'the restored store shows what the source did at the backup')
  await target.store.close()
  const restored = await startTestControlPlane(t, {
    dataDir: target.dataDir,
    masterKeyFile,
    adminToken: source.adminToken,
    ...(target.storeUrl ? { storeUrl: target.storeUrl } : {}),
  })
  t.equal(restored.identityPub, source.identityPub, 'the same control plane identity')
  const verify = await restored.api('GET', '/v1/audit/verify')
  t.match(verify.body, { ok: true, macs: 'checked' }, 'audit verify passes on the restored store, MACs and all')
  t.equal((await restored.api('GET', '/v1/tokens', undefined, made.operatorToken)).status, 403, 'the operator token still authenticates (and is still an operator)')
  t.same((await restored.api('GET', '/v1/intentions')).body.map((i: { src: string; dst: string }) => `${i.src}>${i.dst}`), ['app>billing'])
  const app = await kmsAgent(restored, t, 'app')
  for (const c of made.ciphertexts) {
    const r = await app.request({ op: 'decrypt', ciphertext: c.ciphertext, context: c.context })
    t.equal(text(r.result?.plaintext), c.plaintext, `${c.plaintext}: made before the backup, opens after the restore`)
  }
}

t.test('a backup restores into SQLite and a control plane there opens the old ciphertexts', async (t) => {
  // t.testdir() empties its directory on every call: taken once, shared by subdirectories.
  const dir = t.testdir()
  const source = await startTestControlPlane(t, { dataDir: join(dir, 'source') })
  const made = await populate(source, t)
  const got = await download(source)
  t.equal(got.status, 200)
  t.match(got.type, /^application\/x-ndjson/)
  const file = join(dir, 'backup.jsonl')
  writeFileSync(file, got.body)
  // The seal is made with the store key, which the master key unwraps (custody/record.ts).
  const storeKey = await storeKeyFromMaster(source.cp.ctx.store, readMasterKeyFile(source.masterKeyFile()), source.cp.ctx.suite)
  const summary = await checkBackupFile(file, { sealer: createSealer(storeKey) })
  t.equal(summary.seal, 'verified', 'an online backup is sealed with the master key')
  t.equal(summary.header.identity, Buffer.from(source.cp.ctx.identity.publicKey).toString('hex'), 'the header names the identity')
  t.equal(summary.header.tables['key_versions'], 4, 'three versions of orders (one destroyed) and the pair key\'s')
  const audit = (await source.api('GET', '/v1/audit?action=backup.create')).body.entries
  t.match(audit, [{ actor: /^operator:tok_/, outcome: 'ok', details: { rows: summary.rows, auditSeq: summary.header.auditHead.seq, sha256: summary.sha256 } }], 'the backup is audited with its checksum')
  const dataDir = join(dir, 'restored')
  await reopen(t, source, made, file, { store: await openSqliteStore({ dir: dataDir }), dataDir })
})

t.test('SQLite → PostgreSQL → SQLite: backups move between the back-ends', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const dir = t.testdir()
  const source = await startTestControlPlane(t, { dataDir: join(dir, 'source') })
  const made = await populate(source, t)
  const file = join(dir, 'lite.jsonl')
  writeFileSync(file, (await download(source)).body)
  const pgDir = join(dir, 'pg-cp')
  await reopen(t, source, made, file, { store: await openPgStore({ url: db.url, poolSize: 2 }), storeUrl: db.url, dataDir: pgDir })

  // The control plane on PostgreSQL backs itself up; that file goes back to SQLite.
  const onPg = await startTestControlPlane(t, { dataDir: join(dir, 'pg-cp-2'), storeUrl: db.url, masterKeyFile: source.masterKeyFile(), adminToken: source.adminToken })
  const back = join(dir, 'pg.jsonl')
  writeFileSync(back, (await download(onPg)).body)
  const liteDir = join(dir, 'lite-again')
  await reopen(t, onPg, made, back, { store: await openSqliteStore({ dir: liteDir }), dataDir: liteDir }, source.masterKeyFile())
})

t.test('only an admin may take a backup; a refusal is audited and sends nothing', async (t) => {
  const h = await startTestControlPlane(t)
  for (const role of ['operator', 'auditor']) {
    const token = (await h.api('POST', '/v1/tokens', { name: role, role })).body.token
    const got = await download(h, token)
    t.equal(got.status, 403, role)
    t.match(JSON.parse(got.body), { error: { code: 'CP_ERR_FORBIDDEN', message: /backups are admin-only|auditors are read-only/ } })
  }
  const entries = (await h.api('GET', '/v1/audit?action=backup.create')).body.entries
  t.match(entries, [{ outcome: 'deny', reason: /backups are admin-only/ }, { outcome: 'deny', reason: /auditors are read-only/ }], 'both refusals are in the log')
  t.equal((await download(h, 'kmo_not-a-token')).status, 401)
})

for (const backend of ['sqlite', 'postgres'] as const) {
  t.test(`${backend}: a backup taken while writes go on is one consistent snapshot`, async (t) => {
    const db = backend === 'postgres' ? await pgSchema(t) : null
    if (backend === 'postgres' && !db) return
    const dir = t.testdir()
    const h = await startTestControlPlane(t, { dataDir: join(dir, 'cp'), ...(db ? { storeUrl: db.url } : {}) })
    let writes = 0
    let stop = false
    const writer = (async () => {
      while (!stop) {
        const r = await h.api('POST', '/v1/keys', { name: `k-${writes}`, type: 'aead' })
        if (r.status !== 201) throw new Error(`write ${writes}: ${r.status}`)
        writes++
      }
    })()
    const files: string[] = []
    for (let i = 0; i < 3; i++) {
      const got = await download(h)
      t.equal(got.status, 200)
      const file = join(dir, `b${i}.jsonl`)
      writeFileSync(file, got.body)
      files.push(file)
    }
    stop = true
    await writer
    t.ok(writes > 0, 'writes ran beside the backups')
    for (const file of files) {
      const s = await checkBackupFile(file)
      // Every key has its version 1 and its key.create entry: rows and chain from one moment.
      const created = readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{"t":"audit_log"') && l.includes('"action":"key.create"')).length
      t.equal(s.header.tables['keys'], s.header.tables['key_versions'], `backup ${file.slice(-8)}: every key with its version`)
      t.equal(s.header.tables['keys'], created, `backup ${file.slice(-8)}: every key with its audit entry`)
      const target = await openSqliteStore({ dir: join(dir, `r-${s.sha256.slice(0, 8)}`) })
      t.teardown(() => target.close())
      const r = await restoreBackup(file, target)
      t.equal(r.restored.count, s.header.auditHead.seq, 'the chain verifies to the head')
    }
  })
}

t.test('the spooled snapshot is gone from disk before it is sent; a store that cannot be backed up answers 503, audited', async (t) => {
  const dir = t.testdir()
  const spool = join(dir, 'spool')
  mkdirSync(spool)
  const h = await startTestControlPlane(t, { dataDir: join(dir, 'cp'), backupSpoolDir: spool })
  t.equal((await download(h)).status, 200)
  t.same(readdirSync(spool), [], 'sent, nothing left')
  const res = await fetch(`${h.cp.url}/v1/sys/backup`, { headers: { authorization: `Bearer ${h.adminToken}` } })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  t.ok((await reader.read()).value, 'the first bytes arrived')
  t.same(readdirSync(spool), [], 'nothing on disk by name while it is sent')
  await reader.cancel()
  t.equal((await download(h)).status, 200, 'an abandoned download holds nothing up')

  // An entry changed behind the control plane's back: the chain no longer verifies.
  const db = new Database(join(h.dataDir, 'keymesh.db'))
  db.exec("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET reason = 'forged' WHERE seq = 2")
  db.close()
  const broken = await download(h)
  t.equal(broken.status, 503)
  t.match(JSON.parse(broken.body), { error: { code: 'CP_ERR_STORE', message: /audit chain is broken at seq 2 \(hash-mismatch\); no backup was made/ } })
  t.same(readdirSync(spool), [], 'nothing left in the spool')
  const entries = (await h.api('GET', '/v1/audit?action=backup.create')).body.entries
  t.match(entries[entries.length - 1], { outcome: 'error', details: { code: 'CP_ERR_STORE' } }, 'the failure is audited')
})
