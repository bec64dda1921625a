// Backup files (store/backup.ts, backup-format.ts): every row round-trips byte
// for byte across pages and back-ends; a cut-off, damaged or forged file, a
// wrong master key, a non-empty target or another schema version is refused
// with its own code and the target is left as it was.
import { readFileSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'

import { createAuditLog } from '../../../control-plane/src/audit.js'
import { createSealer } from '../../../control-plane/src/seal.js'
import { auditChainKey, encodeAuditAnchor } from '../../../control-plane/src/audit-chain.js'
import { BackupChecker, LineSplitter, MAX_BACKUP_LINE } from '../../../control-plane/src/store/backup-format.js'
import { checkBackupFile, restoreBackup, writeBackup } from '../../../control-plane/src/store/backup.js'
import { STORE_TABLES } from '../../../control-plane/src/store/copy.js'
import { openPgStore, openSqliteStore, SQLITE_MIGRATIONS, LATEST_SCHEMA_VERSION, type Migration, type Store } from '../../../control-plane/src/store/index.js'
import { pgSchema } from '../../kit/pg.js'
import { aeadKey, bytes } from './fixtures.js'
import { EMPTY, contents, dump, populate, refusal, sqlite, tamper, type Tap } from './installation.js'

const MASTER = bytes(42)

/** Backs `store` up into `file`, as the CLI does but without the atomic rename. */
async function backUp(store: Store, file: string, pageSize?: number, sealed = false): Promise<void> {
  let text = ''
  await writeBackup(store, async (chunk) => void (text += chunk), { now: () => 1234, ...(pageSize ? { pageSize } : {}), ...(sealed ? { sealer: createSealer(MASTER) } : {}) })
  writeFileSync(file, text)
}

/** The file's lines changed by `edit`, with the trailer's checksum made to fit again (a forger's file). */
function forge(file: string, edit: (lines: unknown[]) => unknown[]): string {
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as unknown)
  const trailer = lines.pop() as Record<string, unknown>
  const edited = edit(lines)
  const body = edited.map((l) => `${JSON.stringify(l)}\n`).join('')
  const out = `${file}.forged`
  writeFileSync(out, `${body}${JSON.stringify({ ...trailer, rows: edited.length - 1, sha256: createHash('sha256').update(body).digest('hex') })}\n`)
  return out
}

/** An installation whose audit chain is keyed by MASTER from seq 1. */
async function keyed(t: Tap): Promise<{ store: Store; dir: string }> {
  const { store, dir } = await sqlite(t)
  const chainKey = auditChainKey(MASTER)
  await store.transaction((tx) => tx.putMeta('audit-chain', encodeAuditAnchor(chainKey, 1)))
  await populate(store, 0)
  const audit = createAuditLog({ now: () => 9000, chainKey })
  for (let i = 0; i < 4; i++) await store.transaction((tx) => audit.append(tx, { actor: 'system:test', action: 'keyed', target: `n:${i}`, outcome: 'ok', reason: 'r' }))
  return { store, dir }
}

t.test('every row round-trips byte for byte across pages: SQLite to PostgreSQL and back', async (t) => {
  const { store: source, dir } = await sqlite(t)
  await populate(source, 7)
  const before = await dump(source)
  const file = join(dir, 'a.jsonl')
  await backUp(source, file, 2)
  const checked = await checkBackupFile(file)
  t.same(checked.header.tables, Object.fromEntries(STORE_TABLES.map((x) => [x.name, before[x.name]?.length])), 'the header counts every table')
  t.match(checked, { rows: Object.values(before).flat().length, audit: { count: 7, macs: 'unchecked' }, header: { createdAt: 1234, identity: null, auditHead: { seq: 7 } } })
  t.equal(checked.header.schemaVersion, LATEST_SCHEMA_VERSION)

  const { store: lite } = await sqlite(t)
  const r = await restoreBackup(file, lite, { pageSize: 3 })
  t.same(r.restored, { count: 7, head: await source.read((x) => x.getAuditHead()) })
  t.same(await dump(lite), before, 'SQLite holds the same rows')

  const db = await pgSchema(t)
  if (!db) return
  const pg = await openPgStore({ url: db.url, poolSize: 2 })
  t.teardown(() => pg.close())
  await restoreBackup(file, pg)
  t.same(await dump(pg), before, 'PostgreSQL holds the same rows')
  const again = join(dir, 'b.jsonl')
  await backUp(pg, again)
  t.equal(readFileSync(again, 'utf8'), readFileSync(join(dir, 'a.jsonl'), 'utf8'), 'and backs up to the same bytes')
})

t.test('a cut-off or damaged file is refused before anything is written', async (t) => {
  const { store: source, dir } = await sqlite(t)
  await populate(source, 5)
  const file = join(dir, 'good.jsonl')
  await backUp(source, file)
  const good = readFileSync(file)
  const lines = good.toString('utf8').split('\n')
  const flip = Buffer.from(good)
  const at = good.indexOf('"reason":"ünïcode') + 12
  flip[at] = (flip[at] as number) ^ 1
  const cases: [string, Uint8Array, RegExp][] = [
    ['empty', new Uint8Array(0), /the file is empty/],
    ['cut mid-line', good.subarray(0, Math.floor(good.length / 2)), /truncated: it ends after \d+ rows without its trailer/],
    ['cut at a line end', Buffer.from(`${lines.slice(0, 5).join('\n')}\n`), /truncated/],
    ['without its last newline', good.subarray(0, good.length - 1), /truncated/],
    ['one flipped bit in a value', flip, /the checksum does not match/],
    ['a broken line', Buffer.from(good.toString('utf8').replace('{"t":"keys"', '{"t":keys"')), /line \d+ is not JSON/],
    ['not a backup', Buffer.from('{"hello":"world"}\n'), /the first line is not a keymesh backup header/],
    ['lines after the trailer', Buffer.concat([good, good.subarray(0, 10), Buffer.from('\n')]), /follows the trailer/],
  ]
  for (const [name, bytes_, message] of cases) {
    const bad = join(dir, 'bad.jsonl')
    writeFileSync(bad, bytes_)
    const { store: target } = await sqlite(t)
    t.match(await refusal(restoreBackup(bad, target)), { code: 'CP_ERR_BACKUP_CORRUPT', message }, name)
    t.same(await contents(target), EMPTY, `${name}: nothing written`)
  }
  t.match(await refusal(checkBackupFile(join(dir, 'absent.jsonl'))), { code: 'CP_ERR_BACKUP_CORRUPT', message: /cannot read .*absent\.jsonl \(ENOENT\)/ })
})

t.test('a forged file with a fitting checksum is still refused by its form or its audit chain', async (t) => {
  const { store: source, dir } = await sqlite(t)
  await populate(source, 5)
  const file = join(dir, 'good.jsonl')
  await backUp(source, file)
  type L = Record<string, any>
  const cases: [string, (l: L[]) => L[], string, RegExp][] = [
    ['an audit entry rewritten', (l) => l.map((x) => (x.t === 'audit_log' && x.r.seq === 3 ? { ...x, r: { ...x.r, reason: 'forged' } } : x)), 'CP_ERR_BACKUP_CHAIN', /breaks at seq 3 \(hash-mismatch\)/],
    ['the last entry dropped', (l) => l.filter((x) => !(x.t === 'audit_log' && x.r.seq === 5)).map((x, i) => (i === 0 ? { ...x, tables: { ...x.tables, audit_log: 4 } } : x)), 'CP_ERR_BACKUP_CHAIN', /head-mismatch/],
    ['a stored head that is not the header\'s', (l) => l.map((x) => (x.t === 'audit_head' ? { ...x, r: { ...x.r, seq: 4 } } : x)), 'CP_ERR_BACKUP_CHAIN', /stored audit head is not the header's/],
    ['a stored head without its hash', (l) => l.map((x) => (x.t === 'audit_head' ? { ...x, r: { ...x.r, hash: 'x' } } : x)), 'CP_ERR_BACKUP_CORRUPT', /is not a well-formed audit_head row/],
    ['a row the header does not count', (l) => [...l, { t: 'audit_head', r: l.find((x) => x.t === 'audit_head')?.r }], 'CP_ERR_BACKUP_CORRUPT', /more rows of audit_head than the header counts/],
    ['a row fewer than counted', (l) => l.filter((x) => x.t !== 'intentions'), 'CP_ERR_BACKUP_CORRUPT', /holds 0 rows of intentions, the header counts 1/],
    ['an unknown table', (l) => [l[0] as L, { t: 'schema_migrations', r: { version: 99 } }, ...l.slice(1)], 'CP_ERR_BACKUP_CORRUPT', /unknown table "schema_migrations"/],
    ['tables out of order', (l) => [l[0] as L, ...l.slice(1).reverse()], 'CP_ERR_BACKUP_CORRUPT', /table \w+ comes after/],
    ['rows of one table with other columns', (l) => l.map((x) => (x.t === 'grants' && x.r.service === 'ops' ? { ...x, r: { ...x.r, extra: 1 } } : x)), 'CP_ERR_BACKUP_CORRUPT', /a row of grants with other columns/],
    ['a value that is not a column value', (l) => l.map((x) => (x.t === 'keys' ? { ...x, r: { ...x.r, type: [1] } } : x)), 'CP_ERR_BACKUP_CORRUPT', /neither a number, a string, null nor bytes/],
    ['a row that is not a row', (l) => [l[0] as L, [1, 2], ...l.slice(1)], 'CP_ERR_BACKUP_CORRUPT', /line 2 is not a row/],
    ['a malformed header', (l) => [{ ...l[0], auditHead: { seq: -1, hash: 'x' } }, ...l.slice(1)], 'CP_ERR_BACKUP_CORRUPT', /the header is malformed/],
    ['a later format version', (l) => [{ ...l[0], version: 2 }, ...l.slice(1)], 'CP_ERR_BACKUP_VERSION', /format version 2; this keymesh reads version 1/],
    ['a trailer that miscounts', (l) => l, 'CP_ERR_BACKUP_CORRUPT', /the trailer counts 0 rows/],
  ]
  for (const [name, edit, code, message] of cases) {
    const forged = forge(file, edit as (l: unknown[]) => unknown[])
    if (name === 'a trailer that miscounts') writeFileSync(forged, readFileSync(forged, 'utf8').replace(/"rows":\d+/, '"rows":0'))
    const { store: target } = await sqlite(t)
    t.match(await refusal(restoreBackup(forged, target)), { code, message }, name)
    t.same(await contents(target), EMPTY, `${name}: nothing written`)
  }
})

t.test('with the master key every audit MAC is checked, and a wrong key is named as such', async (t) => {
  const { store: source, dir } = await keyed(t)
  const file = join(dir, 'keyed.jsonl')
  await backUp(source, file)
  t.match(await checkBackupFile(file, { chainKey: auditChainKey(MASTER) }), { audit: { count: 4, macs: 'checked' } })
  t.match(await refusal(checkBackupFile(file, { chainKey: auditChainKey(bytes(7)) })), { code: 'CP_ERR_MASTER_KEY', message: /not the one of the backed-up installation/ })
  const stripped = forge(file, (l) => l.map((x: any) => (x.t === 'audit_log' && x.r.seq === 2 ? { ...x, r: { ...x.r, mac: null } } : x)))
  t.match(await checkBackupFile(stripped), { audit: { macs: 'unchecked' } }, 'without the key a stripped MAC goes unseen')
  const { store: target } = await sqlite(t)
  t.match(await refusal(restoreBackup(stripped, target, { chainKey: auditChainKey(MASTER) })), { code: 'CP_ERR_BACKUP_CHAIN', message: /breaks at seq 2 \(mac-mismatch\)/ })
  t.same(await contents(target), EMPTY)
  const ok = await restoreBackup(file, target, { chainKey: auditChainKey(MASTER) })
  t.equal(ok.audit.macs, 'checked')
  t.same(await dump(target), await dump(source))
})

t.test('a sealed backup opens only with its master key; a forged one does not, even with a fitting checksum', async (t) => {
  const { store: source, dir } = await keyed(t)
  const file = join(dir, 'sealed.jsonl')
  await backUp(source, file, undefined, true)
  t.match(await checkBackupFile(file, { sealer: createSealer(MASTER) }), { seal: 'verified' })
  t.match(await checkBackupFile(file), { seal: 'unchecked' }, 'without the key the seal is reported, not opened')
  t.match(await refusal(checkBackupFile(file, { sealer: createSealer(bytes(7)) })), { code: 'CP_ERR_BACKUP_SEAL', message: /not made with this master key/ })
  // An operator token's role raised: nothing sealed or MAC'd covers that row, the seal does.
  const forged = forge(file, (l: any[]) => l.map((x) => (x.t === 'operator_tokens' ? { ...x, r: { ...x.r, role: 'admin', name: 'mallory' } } : x)))
  t.match(await checkBackupFile(forged, { chainKey: auditChainKey(MASTER) }), { seal: 'unchecked', audit: { macs: 'checked' } }, 'the MACs alone do not see it')
  const { store: target } = await sqlite(t)
  t.match(await refusal(restoreBackup(forged, target, { sealer: createSealer(MASTER) })), { code: 'CP_ERR_BACKUP_SEAL' })
  t.same(await contents(target), EMPTY)
  const unsealed = join(dir, 'unsealed.jsonl')
  await backUp(source, unsealed)
  t.match(await checkBackupFile(unsealed, { sealer: createSealer(MASTER) }), { seal: 'absent' })
  const badSeal = forge(file, (l) => l)
  writeFileSync(badSeal, readFileSync(badSeal, 'utf8').replace(/"seal":"[^"]*"/, '"seal":1'))
  t.match(await refusal(checkBackupFile(badSeal)), { code: 'CP_ERR_BACKUP_CORRUPT', message: /the trailer is malformed/ })
})

t.test('a target that holds an installation, or is at another schema version, is refused and left as it was', async (t) => {
  const { store: source, dir } = await sqlite(t)
  await populate(source)
  const file = join(dir, 'a.jsonl')
  await backUp(source, file)
  const { store: used } = await sqlite(t)
  await used.transaction((tx) => tx.insertKey(aeadKey('theirs')))
  const before = await dump(used)
  t.match(await refusal(restoreBackup(file, used)), { code: 'CP_ERR_STORE_NOT_EMPTY', message: /rows in keys\); restore into an empty database or schema/ })
  t.same(await dump(used), before)

  const L = SQLITE_MIGRATIONS.reduce((m, x) => Math.max(m, x.version), 0)
  const newer: Migration[] = [...SQLITE_MIGRATIONS, { version: L + 1, name: 'extra', sql: 'CREATE TABLE extra (x INTEGER)' }]
  const { store: ahead } = await sqlite(t, newer)
  t.match(await refusal(restoreBackup(file, ahead)), { code: 'CP_ERR_BACKUP_VERSION', message: new RegExp(`schema version ${L} and the target ${L + 1}; restore it with the keymesh that made it`) })
  t.same(await contents(ahead), EMPTY)
  const older = forge(file, (l: any[]) => [{ ...l[0], schemaVersion: L + 1 }, ...l.slice(1)])
  const { store: plain } = await sqlite(t)
  t.match(await refusal(restoreBackup(older, plain)), { code: 'CP_ERR_BACKUP_VERSION', message: /restore it with a newer keymesh/ })

  const ro = await openSqliteStore({ dir, readOnly: true })
  t.teardown(() => ro.close())
  t.match(await refusal(restoreBackup(file, ro)), { code: 'CP_ERR_STORE', message: /opened read-only/ })
})

t.test('a file that changes between the check and the restore writes nothing', async (t) => {
  const { store: source, dir } = await sqlite(t)
  await populate(source)
  const file = join(dir, 'a.jsonl')
  await backUp(source, file)
  const checked = await checkBackupFile(file)
  await source.transaction((tx) => tx.insertKey(aeadKey('later')))
  await backUp(source, file)
  const { store: target } = await sqlite(t)
  t.match(await refusal(restoreBackup(file, target, { checked })), { code: 'CP_ERR_BACKUP_CORRUPT', message: /the file changed while it was being restored/ })
  t.same(await contents(target), EMPTY)
})

t.test('a store whose audit chain is broken is not backed up', async (t) => {
  const { store, dir } = await sqlite(t)
  await populate(store, 4)
  await store.close()
  tamper(dir, "UPDATE audit_log SET reason = 'forged' WHERE seq = 2")
  const broken = await openSqliteStore({ dir, readOnly: true })
  t.teardown(() => broken.close())
  t.match(await refusal(backUp(broken, join(dir, 'x.jsonl'))), { code: 'CP_ERR_STORE', message: /audit chain is broken at seq 2 \(hash-mismatch\); no backup was made/ })
})

t.test('lines are cut as bytes arrive, and an endless line is refused', async (t) => {
  const s = new LineSplitter(8)
  t.same(s.push(Buffer.from('ab')), [])
  t.same(s.push(Buffer.from('c\nde\nf')).map((b) => Buffer.from(b).toString()), ['abc', 'de'])
  t.notOk(s.end(), 'a cut-off line is pending')
  t.same(s.push(Buffer.from('\n')).map((b) => Buffer.from(b).toString()), ['f'])
  t.ok(s.end())
  t.throws(() => s.push(Buffer.from('123456789')), { code: 'CP_ERR_BACKUP_CORRUPT', message: /a line is longer than 8 bytes/ })
  t.ok(MAX_BACKUP_LINE >= 1024 * 1024, 'the default leaves room for any row')
  t.throws(() => new BackupChecker().push(Buffer.from([0xff, 0xfe])), { code: 'CP_ERR_BACKUP_CORRUPT', message: /line 1 is not JSON/ }, 'invalid UTF-8')
})
