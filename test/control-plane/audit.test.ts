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
  db.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete')
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
