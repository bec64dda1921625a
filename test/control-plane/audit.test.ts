import { join } from 'node:path'
import t from 'tap'

import { auditEntryHash, canonicalDetails, verifyAuditChain, ZERO_HASH } from '../../control-plane/src/audit-chain.js'
import { createAuditLog, toAuditEntry } from '../../control-plane/src/audit.js'
import { Database, type SqliteDatabase } from '../../control-plane/src/store/sqlite-driver.js'
import { openSqliteStore, type AuditRow, type Store } from '../../control-plane/src/store/index.js'
import { aeadKey } from './store/fixtures.js'

let clock = 1_000
const log = createAuditLog({ now: () => clock++, pageSize: 3 })

async function storeWith(dir: string, n: number): Promise<Store> {
  const store = await openSqliteStore({ dir })
  for (let i = 1; i <= n; i++) {
    await store.transaction((tx) =>
      log.append(tx, {
        actor: i % 2 ? 'operator:admin' : 'agent:ag1',
        action: i % 3 ? 'key.create' : 'key.rotate',
        target: `key:k${i}`,
        outcome: i === 4 ? 'deny' : 'ok',
        reason: i === 4 ? 'missing right: manage' : 'allowed',
        details: { n: i, keyName: `k${i}`, nested: { b: [1, 'two', null, true], a: 0.5 } },
      }),
    )
  }
  return store
}

/** Raw access to the file, as an attacker with the database would have: the append-only triggers dropped first. */
async function tamper(dir: string, store: Store, sql: (db: SqliteDatabase) => void): Promise<Store> {
  await store.close()
  const db = new Database(join(dir, 'keymesh.db'))
  db.exec('DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete')
  sql(db)
  db.close()
  return openSqliteStore({ dir, readOnly: true })
}

const rowOf = (db: SqliteDatabase, seq: number) => db.prepare('SELECT * FROM audit_log WHERE seq = ?').get(seq) as Record<string, unknown>

t.test('appended entries chain from the zero hash and verify', async (t) => {
  const store = await storeWith(t.testdir(), 7)
  const all = await log.tail(store, 100)
  t.equal(all.length, 7)
  t.equal(all[0]?.prevHash, Buffer.from(ZERO_HASH).toString('hex'), 'the first entry links to 32 zero bytes')
  for (let i = 1; i < all.length; i++) t.equal(all[i]?.prevHash, all[i - 1]?.hash)
  t.same(all[0]?.details, { keyName: 'k1', n: 1, nested: { a: 0.5, b: [1, 'two', null, true] } })
  const v = await log.verify(store)
  t.match(v, { ok: true, count: 7, head: { seq: 7 } })
  await store.close()
})

t.test('an empty log verifies with count 0', async (t) => {
  const store = await openSqliteStore({ dir: t.testdir() })
  t.same(await createAuditLog().verify(store), { ok: true, count: 0, head: { seq: 0, hash: ZERO_HASH }, macs: 'unchecked', checkpoints: 0 })
  await store.close()
})

t.test('verification streams over exact page boundaries', async (t) => {
  const store = await storeWith(t.testdir(), 6)
  t.match(await log.verify(store), { ok: true, count: 6 }, 'six entries in pages of three')
  await store.close()
})

t.test('the hash covers every field through an unambiguous encoding', async (t) => {
  const base = { seq: 1, at: 5, actor: 'ab', action: 'c', target: 't', outcome: 'ok' as const, reason: 'r', detailsJson: '{}', prevHash: ZERO_HASH }
  const h = Buffer.from(auditEntryHash(base)).toString('hex')
  const variants = [
    { ...base, seq: 2 }, { ...base, at: 6 }, { ...base, actor: 'a', action: 'bc' }, { ...base, target: 'u' },
    { ...base, outcome: 'error' as const }, { ...base, reason: 's' }, { ...base, detailsJson: '{"a":1}' },
    { ...base, prevHash: new Uint8Array(32).fill(1) },
  ]
  for (const v of variants) t.not(Buffer.from(auditEntryHash(v)).toString('hex'), h)
})

t.test('details are canonical JSON with sorted keys at every level', async (t) => {
  t.equal(canonicalDetails({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: 'x' }, skip: undefined as unknown as null }),
    '{"a":{"c":"x","d":[2,{"y":2,"z":1}]},"b":1}')
})

t.test('the details guard rejects secrets, bytes and anything not plain JSON', async (t) => {
  const bad: Record<string, unknown>[] = [
    { key: 'orders' }, { dataKey: 'x' }, { private_key: 'x' }, { secret: 1 }, { clientSecretName: 'x' },
    { token: 'x' }, { joinToken: 'x' }, { keyMaterial: 'x' }, { psk: 'x' }, { nested: { password: 'x' } },
    { list: [{ apiKey: 1 }] }, { blob: new Uint8Array(4) }, { buf: Buffer.alloc(2) }, { ab: new ArrayBuffer(2) },
    { when: new Date(0) }, { n: Number.NaN }, { n: Infinity }, { big: 1n }, { f: () => 1 },
  ]
  for (const d of bad) t.throws(() => canonicalDetails(d as never), { code: 'CP_ERR_AUDIT' }, JSON.stringify(Object.keys(d)))
  for (const d of [[], null, 'x']) t.throws(() => canonicalDetails(d as never), { code: 'CP_ERR_AUDIT', message: /JSON object/ })
  t.equal(canonicalDetails({ keyName: 'k', keyVersion: 3, tokenId: 't1', rights: ['encrypt'] }),
    '{"keyName":"k","keyVersion":3,"rights":["encrypt"],"tokenId":"t1"}', 'names that only mention key or token are fine')
  const err = t.throws(() => canonicalDetails({ blob: new Uint8Array([1, 2, 3]) } as never)) as unknown as Error
  t.notMatch(err.message, /1,2,3|010203/, 'the error does not echo the bytes')
})

t.test('a rejected details object fails the caller’s whole transaction', async (t) => {
  const store = await openSqliteStore({ dir: t.testdir() })
  await t.rejects(store.transaction(async (tx) => {
    await tx.insertKey(aeadKey('orders'))
    await log.append(tx, { actor: 'a', action: 'key.create', target: 'key:orders', outcome: 'ok', reason: 'r', details: { material: 'x' } })
  }), { code: 'CP_ERR_AUDIT' })
  t.equal(await store.read((tx) => tx.getKey('orders')), null)
  await store.close()
})

t.test('an audit write that fails in the store rolls back the caller’s change (fail closed)', async (t) => {
  const dir = t.testdir()
  const store = await storeWith(dir, 1)
  // A second connection makes every audit insert fail, as a full disk or a broken table would.
  const db = new Database(join(dir, 'keymesh.db'))
  db.exec("CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
  db.close()
  const err = await store.transaction(async (tx) => {
    await tx.insertKey(aeadKey('orders'))
    await log.append(tx, { actor: 'a', action: 'key.create', target: 'key:orders', outcome: 'ok', reason: 'r' })
  }).catch((e: unknown) => e)
  t.match(err, { code: 'CP_ERR_AUDIT', cause: { code: 'CP_ERR_STORE', message: /disk on fire/ } })
  t.equal(await store.read((tx) => tx.getKey('orders')), null, 'the key was not created')
  t.match(await log.verify(store), { ok: true, count: 1 }, 'and the chain is unchanged')
  await store.close()
})

t.test('concurrent appenders queue on the head and never fork the chain', async (t) => {
  const store = await openSqliteStore({ dir: t.testdir() })
  await Promise.all(Array.from({ length: 20 }, (_, i) =>
    store.transaction((tx) => log.append(tx, { actor: `w${i}`, action: 'a', target: 't', outcome: 'ok', reason: 'r' }))))
  t.match(await log.verify(store), { ok: true, count: 20 })
  await store.close()
})

t.test('tail, query and export read the log oldest first', async (t) => {
  const store = await storeWith(t.testdir(), 7)
  t.same((await log.tail(store, 2)).map((e) => e.seq), [6, 7])
  t.same((await log.query(store, { actor: 'agent:ag1' })).map((e) => e.seq), [2, 4, 6])
  t.same((await log.query(store, { action: 'key.rotate', limit: 10 })).map((e) => e.seq), [3, 6])
  t.same((await log.query(store, { target: 'key:k4', outcome: 'deny' })).map((e) => e.reason), ['missing right: manage'])
  const first = (await log.tail(store, 7))[0]!
  t.same((await log.query(store, { from: first.at + 1, to: first.at + 3, limit: 10 })).map((e) => e.seq), [2, 3])
  const seqs: number[] = []
  for await (const e of log.export(store)) seqs.push(e.seq)
  t.same(seqs, [1, 2, 3, 4, 5, 6, 7], 'export pages through everything')
  const odd: number[] = []
  for await (const e of log.export(store, { actor: 'operator:admin' })) odd.push(e.seq)
  t.same(odd, [1, 3, 5, 7])
  await store.close()
})

t.test('a tampered row whose details are not JSON is still shown', async (t) => {
  const row: AuditRow = { seq: 1, at: 1, actor: 'a', action: 'b', target: 'c', outcome: 'ok', reason: 'r', detailsJson: '{oops', prevHash: ZERO_HASH, hash: ZERO_HASH, mac: null }
  t.same(toAuditEntry(row).details, { unparseable: '{oops' })
})

t.test('tampering is detected and the first bad entry named', async (t) => {
  const cases: [string, (db: SqliteDatabase) => void, object][] = [
    ['an edited field', (db) => db.exec("UPDATE audit_log SET reason = 'allowed after all' WHERE seq = 4"), { firstBadSeq: 4, reason: 'hash-mismatch', count: 3 }],
    ['edited details', (db) => db.exec(`UPDATE audit_log SET details = '{"n":5}' WHERE seq = 5`), { firstBadSeq: 5, reason: 'hash-mismatch' }],
    ['an edited time', (db) => db.exec('UPDATE audit_log SET at = at + 1 WHERE seq = 2'), { firstBadSeq: 2, reason: 'hash-mismatch' }],
    ['a deleted middle row', (db) => db.exec('DELETE FROM audit_log WHERE seq = 3'), { firstBadSeq: 3, reason: 'seq-gap', count: 2 }],
    ['a deleted first row', (db) => db.exec('DELETE FROM audit_log WHERE seq = 1'), { firstBadSeq: 1, reason: 'seq-gap', count: 0 }],
    ['a deleted last row', (db) => db.exec('DELETE FROM audit_log WHERE seq = 7'), { firstBadSeq: 7, reason: 'head-mismatch', count: 6 }],
    ['a row appended without the head', (db) => {
      const r = rowOf(db, 7)
      const next = { seq: 8, at: r.at as number, actor: 'x', action: 'x', target: 'x', outcome: 'ok' as const, reason: 'x', detailsJson: '{}', prevHash: new Uint8Array(r.hash as Buffer) }
      db.prepare('INSERT INTO audit_log (seq, at, actor, action, target, outcome, reason, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(8, next.at, 'x', 'x', 'x', 'ok', 'x', '{}', r.hash as Buffer, Buffer.from(auditEntryHash(next)))
    }, { firstBadSeq: 8, reason: 'head-mismatch', count: 8 }],
    ['two rows with swapped contents', (db) => {
      const a = rowOf(db, 3)
      const b = rowOf(db, 5)
      const put = db.prepare('UPDATE audit_log SET at = ?, actor = ?, action = ?, target = ?, outcome = ?, reason = ?, details = ?, prev_hash = ?, hash = ? WHERE seq = ?')
      const vals = (r: Record<string, unknown>) => [r.at, r.actor, r.action, r.target, r.outcome, r.reason, r.details, r.prev_hash, r.hash] as never[]
      put.run(...vals(b), 3)
      put.run(...vals(a), 5)
    }, { firstBadSeq: 3, reason: 'prev-mismatch' }],
    ['a forged hash on the edited row only', (db) => {
      const r = rowOf(db, 4)
      const forged = { seq: 4, at: r.at as number, actor: r.actor as string, action: r.action as string, target: r.target as string, outcome: 'ok' as const, reason: 'allowed', detailsJson: r.details as string, prevHash: new Uint8Array(r.prev_hash as Buffer) }
      db.prepare("UPDATE audit_log SET outcome = 'ok', reason = 'allowed', hash = ? WHERE seq = 4").run(Buffer.from(auditEntryHash(forged)))
    }, { firstBadSeq: 5, reason: 'prev-mismatch', count: 4 }],
    ['the rest of the chain forged, but not the head', (db) => {
      let prev: Uint8Array = new Uint8Array(rowOf(db, 3).hash as Buffer)
      for (let seq = 4; seq <= 7; seq++) {
        const r = rowOf(db, seq)
        const forged = { seq, at: r.at as number, actor: r.actor as string, action: r.action as string, target: r.target as string, outcome: 'ok' as const, reason: 'allowed', detailsJson: r.details as string, prevHash: prev }
        const hash = auditEntryHash(forged)
        db.prepare("UPDATE audit_log SET outcome = 'ok', reason = 'allowed', prev_hash = ?, hash = ? WHERE seq = ?").run(Buffer.from(prev), Buffer.from(hash), seq)
        prev = hash
      }
    }, { firstBadSeq: 7, reason: 'head-mismatch', count: 7 }],
    ['a moved head', (db) => db.exec('UPDATE audit_head SET seq = 5'), { firstBadSeq: 6, reason: 'head-mismatch' }],
  ]
  for (const [name, edit, expected] of cases) {
    await t.test(`detects ${name}`, async (t) => {
      const dir = t.testdir()
      const store = await tamper(dir, await storeWith(dir, 7), edit)
      t.match(await log.verify(store), { ok: false, ...expected })
      await store.close()
    })
  }
})

t.test('verifyAuditChain takes any iterable of rows and checks the head when given one', async (t) => {
  const dir = t.testdir()
  const store = await storeWith(dir, 4)
  const rows = await store.read((tx) => tx.listAuditEntries({ limit: 10 }))
  const head = await store.read((tx) => tx.getAuditHead())
  t.match(await verifyAuditChain(rows), { ok: true, count: 4 })
  t.match(await verifyAuditChain(rows, head), { ok: true, count: 4 })
  t.match(await verifyAuditChain(rows, { seq: 4, hash: ZERO_HASH }), { ok: false, firstBadSeq: 4, reason: 'head-mismatch' })
  t.match(await verifyAuditChain(rows.slice(0, 3), head), { ok: false, firstBadSeq: 4, reason: 'head-mismatch' })
  async function* gen() { yield* [rows[0]!, rows[2]!, rows[1]!] }
  t.match(await verifyAuditChain(gen()), { ok: false, firstBadSeq: 2, reason: 'seq-gap', count: 1 })
  await store.close()
})

t.test('the verifier stops at the first break and judges a short prev hash a mismatch', async (t) => {
  const { AuditChainVerifier } = await import('../../control-plane/src/audit-chain.js')
  const v = new AuditChainVerifier()
  const row: AuditRow = { seq: 1, at: 1, actor: 'a', action: 'b', target: 'c', outcome: 'ok', reason: 'r', detailsJson: '{}', prevHash: new Uint8Array(31), hash: ZERO_HASH, mac: null }
  t.equal(v.push(row), false)
  t.equal(v.push({ ...row, prevHash: ZERO_HASH }), false, 'nothing after a break is looked at')
  t.same(v.finish({ seq: 9, hash: ZERO_HASH }), { ok: false, firstBadSeq: 1, reason: 'prev-mismatch', count: 0 })
})

t.test('with the chain key every entry gets a MAC, and a signer signs a checkpoint every N entries', async (t) => {
  const { auditChainKey, auditEntryMac, encodeAuditAnchor } = await import('../../control-plane/src/audit-chain.js')
  const { auditSignerFromSeed, checkpointSignedBy } = await import('../../control-plane/src/audit-checkpoint.js')
  const chainKey = auditChainKey(new Uint8Array(32).fill(7))
  const signer = auditSignerFromSeed(new Uint8Array(32).fill(9))
  const keyed = createAuditLog({ now: () => clock++, pageSize: 2, chainKey, signer, checkpointEvery: 3 })
  const dir = t.testdir()
  const store = await openSqliteStore({ dir })
  await store.transaction((tx) => keyed.startKeyedChain(tx))
  t.equal(await store.transaction((tx) => keyed.startKeyedChain(tx)), null, 'the chain starts once')
  for (let i = 0; i < 6; i++) await store.transaction((tx) => keyed.append(tx, { actor: 'a', action: 'b', target: 'c', outcome: 'ok', reason: `r${i}` }))
  const rows = await store.read((tx) => tx.listAuditEntries({ limit: 100 }))
  for (const r of rows) t.same(r.mac, auditEntryMac(chainKey, r.seq, r.hash), `seq ${r.seq} has its MAC`)
  const cps = await store.read((tx) => tx.listAuditCheckpoints({ limit: 10 }))
  t.same(cps.map((c) => c.seq), [1, 3, 6], 'the bridge, then every third entry')
  for (const c of cps) t.ok(checkpointSignedBy(signer.publicKey, c))
  t.match(await keyed.verify(store), { ok: true, count: 7, macs: 'checked', checkpoints: 3 })
  t.same(await store.read((tx) => tx.getMeta('audit-chain')), encodeAuditAnchor(chainKey, 1))

  const otherKey = createAuditLog({ chainKey: auditChainKey(new Uint8Array(32).fill(8)) })
  t.match(await otherKey.verify(store), { ok: false, firstBadSeq: 1, reason: 'unkeyed' }, 'another master key: the anchor does not open')
  const otherSigner = createAuditLog({ publicKey: auditSignerFromSeed(new Uint8Array(32).fill(1)).publicKey })
  t.match(await otherSigner.verify(store), { ok: false, firstBadSeq: 1, reason: 'checkpoint-signature' }, 'another public key: no checkpoint verifies')
  t.match(await keyed.checkpointIfDue(store, 0), { seq: 7 }, 'an interval of zero signs the head at once')
  t.equal(await keyed.checkpointIfDue(store, 0), null, 'but not twice')
  t.equal(await createAuditLog().checkpointIfDue(store, 0), null, 'without a signer, none')
  await t.rejects(store.transaction((tx) => createAuditLog().startKeyedChain(tx)), { code: 'CP_ERR_AUDIT' })
  await store.close()

  await t.test('a forged or missing stored checkpoint, and a MAC removed', async (t) => {
    const broken = await tamper(dir, await openSqliteStore({ dir }), (db) => {
      db.exec('DROP TRIGGER audit_checkpoints_no_update')
      db.exec('UPDATE audit_checkpoints SET at = at + 1 WHERE seq = 6')
    })
    t.match(await keyed.verify(broken), { ok: false, firstBadSeq: 6, reason: 'checkpoint-signature', count: 5 })
    await broken.close()
    const stripped = await tamper(dir, await openSqliteStore({ dir }), (db) => db.exec('UPDATE audit_log SET mac = NULL WHERE seq = 4'))
    t.match(await keyed.verify(stripped), { ok: false, firstBadSeq: 4, reason: 'mac-mismatch' })
    t.match(await createAuditLog({ publicKey: signer.publicKey }).verify(stripped), { ok: false, firstBadSeq: 6, reason: 'checkpoint-signature' },
      'without the chain key the forged checkpoint at 6 is still found')
    await stripped.close()
  })

  await t.test('a forged checkpoint beyond the last entry', async (t) => {
    const store = await storeWith(t.testdir(), 3)
    await store.transaction((tx) => tx.insertAuditCheckpoint({ seq: 100, hash: ZERO_HASH, at: 1, signature: new Uint8Array(64) }))
    t.match(await createAuditLog({ publicKey: signer.publicKey }).verify(store), { ok: false, firstBadSeq: 100, reason: 'checkpoint-signature', count: 3 })
    await store.close()
  })
})

t.test('trusted heads: passed through, contradicted, or beyond the end', async (t) => {
  const store = await storeWith(t.testdir(), 5)
  const rows = await store.read((tx) => tx.listAuditEntries({ limit: 10 }))
  const at = (seq: number) => ({ seq, hash: rows[seq - 1]!.hash })
  t.match(await log.verify(store, { expect: [at(2), at(5)] }), { ok: true, checkpoints: 2 })
  t.match(await log.verify(store, { expect: [{ seq: 3, hash: ZERO_HASH }] }), { ok: false, firstBadSeq: 3, reason: 'checkpoint-mismatch', count: 2 })
  t.match(await log.verify(store, { expect: [{ seq: 9, hash: ZERO_HASH }] }), { ok: false, firstBadSeq: 6, reason: 'truncated', count: 5 })
  const { AuditChainVerifier } = await import('../../control-plane/src/audit-chain.js')
  const v = new AuditChainVerifier()
  for (const r of rows.slice(0, 3)) v.push(r)
  t.equal(v.expect(at(3)), true, 'the last checked entry can still be compared')
  t.equal(v.expect(at(2)), false, 'an earlier one cannot: only the last link is kept')
  const w = new AuditChainVerifier()
  t.equal(w.expect(at(4)), true)
  t.equal(w.expect({ seq: 4, hash: ZERO_HASH }), false, 'two trusted heads that disagree')
  t.equal(w.expect(at(1)), false, 'nothing is looked at after a break')
  t.equal(w.fail(1, 'seq-gap'), false)
  t.match(w.finish(), { ok: false, firstBadSeq: 4, reason: 'checkpoint-mismatch' })
  await store.close()
})

t.test('an unkeyed log from before the upgrade is bridged at the first start with the master key', async (t) => {
  const { SQLITE_MIGRATIONS } = await import('../../control-plane/src/store/index.js')
  const { startTestControlPlane } = await import('../kit/cp.js')
  const dir = join(t.testdir(), 'cp')
  await (await openSqliteStore({ dir, migrations: SQLITE_MIGRATIONS.slice(0, 1) })).close()
  // Rows as the old code wrote them: schema version 1, no MAC column.
  const db = new Database(join(dir, 'keymesh.db'))
  let prev: Uint8Array = ZERO_HASH
  for (let seq = 1; seq <= 5; seq++) {
    const r = { seq, at: seq, actor: 'operator:old', action: 'key.create', target: `key:k${seq}`, outcome: 'ok' as const, reason: 'r', detailsJson: '{}', prevHash: prev }
    const hash = auditEntryHash(r)
    db.prepare('INSERT INTO audit_log (seq, at, actor, action, target, outcome, reason, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(seq, r.at, r.actor, r.action, r.target, r.outcome, r.reason, r.detailsJson, Buffer.from(prev), Buffer.from(hash))
    prev = hash
  }
  db.prepare('UPDATE audit_head SET seq = 5, hash = ?').run(Buffer.from(prev))
  db.close()

  const h = await startTestControlPlane(t, { dataDir: dir })
  const [bridge] = await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'audit.chain.start' })
  t.match(bridge, { actor: 'system:bootstrap', mac: /^[0-9a-f]{64}$/, details: { previousSeq: Number, checkpointSigner: /^ed25519:/ } })
  t.ok(bridge!.seq > 5, 'after the old entries (and the identity the old store lacked)')
  const before = await h.cp.ctx.audit.query(h.cp.ctx.store, { from: 0, limit: 5 })
  t.same(before.map((e) => e.mac), [null, null, null, null, null], 'the old entries keep their rows')
  t.match(await h.cp.ctx.audit.verify(h.cp.ctx.store), { ok: true, macs: 'checked', checkpoints: 1 })
  t.match(await h.cp.ctx.audit.latestCheckpoint(h.cp.ctx.store), { seq: bridge!.seq })
  await h.cp.close()

  const again = await startTestControlPlane(t, { dataDir: dir })
  t.equal((await again.cp.ctx.audit.query(again.cp.ctx.store, { action: 'audit.chain.start' })).length, 1, 'bridged once')
  await again.cp.close()

  // An old entry rewritten afterwards, its unkeyed chain recomputed: the bridge's MAC covers it.
  const file = new Database(join(dir, 'keymesh.db'))
  file.exec('DROP TRIGGER audit_log_no_update')
  file.exec("UPDATE audit_log SET actor = 'operator:someone-else' WHERE seq = 2")
  let p: Buffer = rowOf(file, 1).hash as Buffer
  const end = (file.prepare('SELECT MAX(seq) AS s FROM audit_log').get() as { s: number }).s
  for (let seq = 2; seq <= end; seq++) {
    const r = rowOf(file, seq)
    const hash = Buffer.from(auditEntryHash({ seq, at: r.at as number, actor: r.actor as string, action: r.action as string, target: r.target as string, outcome: r.outcome as 'ok', reason: r.reason as string, detailsJson: r.details as string, prevHash: p }))
    file.prepare('UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?').run(p, hash, seq)
    p = hash
  }
  file.prepare('UPDATE audit_head SET hash = ?').run(p)
  file.close()
  const third = await startTestControlPlane(t, { dataDir: dir })
  const [firstMac] = await third.cp.ctx.audit.query(third.cp.ctx.store, { from: 0, limit: 1, action: 'identity.create' })
  t.match(await third.cp.ctx.audit.verify(third.cp.ctx.store), { ok: false, reason: 'mac-mismatch', firstBadSeq: bridge!.seq },
    'named at the bridge, the first entry with a MAC to check')
  t.ok(firstMac, 'the old store had no identity; the first start made one')
  await third.cp.close()

  // The signing key removed behind the control plane's back: it refuses to make a new one.
  const raw = new Database(join(dir, 'keymesh.db'))
  raw.exec("DELETE FROM meta WHERE key = 'audit-signing-key'")
  raw.close()
  await t.rejects(startTestControlPlane(t, { dataDir: dir }), { code: 'CP_ERR_AUDIT_KEY', message: /restore the meta row audit-signing-key/ })
})
