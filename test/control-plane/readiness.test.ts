// /readyz tells the truth about the SQLite store: each fault is made for real on
// the store's own connection or file — writes refused (query_only gives
// SQLITE_READONLY, max_page_count SQLITE_FULL), the file removed under it, a
// page overwritten with garbage, an audit entry edited — and /readyz, the
// metrics and the logs say so, and recover when the fault is undone.
import t from 'tap'
import { closeSync, copyFileSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { types } from 'node:util'

import { DEFAULT_SETTINGS } from '../../control-plane/src/context.js'
import { AuditWatch } from '../../control-plane/src/health/audit-watch.js'
import { WriteHealth } from '../../control-plane/src/health/write-health.js'
import { IntegrityWatch, SUSPECT_GAP_MS } from '../../control-plane/src/health/integrity-watch.js'
import { Database, type SqliteDatabase } from '../../control-plane/src/store/sqlite-driver.js'
import { quickCheck } from '../../control-plane/src/store/sqlite-integrity.js'
import { SQLITE_FILE, SqliteStore, openSqliteStore } from '../../control-plane/src/store/sqlite-store.js'
import type { IntegrityResult } from '../../control-plane/src/store/store.js'
import { startTestControlPlane, type TestControlPlane, type TestControlPlaneOptions } from '../kit/cp.js'
import { FakeClock, HOUR } from '../kit/fake-clock.js'
import { captureLogger } from '../kit/logs.js'
import { metric, scrape } from '../kit/metrics.js'
import { until } from '../kit/wait.js'

const PROBE_MS = DEFAULT_SETTINGS.writeProbeIntervalMs

async function readyz(h: TestControlPlane): Promise<{ status: number; body: any }> {
  const res = await fetch(`${h.cp.url}/readyz`)
  return { status: res.status, body: await res.json() }
}

/** A control plane on a SQLite store whose connection the test holds too, to set its pragmas. */
async function withOwnStore(t: Tap, settings?: TestControlPlaneOptions['settings']): Promise<{ h: TestControlPlane; db: SqliteDatabase; file: string }> {
  const dir = t.testdir()
  await (await openSqliteStore({ dir })).close() // created and migrated
  const file = join(dir, SQLITE_FILE)
  const db = new Database(file)
  for (const p of ['foreign_keys = ON', 'journal_mode = WAL', 'synchronous = FULL']) db.pragma(p)
  const h = await startTestControlPlane(t, { dataDir: dir, store: new SqliteStore(db, false), ...(settings ? { settings } : {}) })
  return { h, db, file }
}
type Tap = Parameters<typeof startTestControlPlane>[0]

const errorLines = (h: TestControlPlane, code: string): Array<Record<string, unknown>> =>
  h.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 50 && l['code'] === code)

/** Overwrites the root page of `table` in `file` with garbage. */
function corruptPage(file: string, table: string): void {
  const db = new Database(file, { readonly: true })
  const { rootpage } = db.prepare('SELECT rootpage FROM sqlite_master WHERE name = ?').get(table) as { rootpage: number }
  const size = Number(db.pragma('page_size', { simple: true }))
  db.close()
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.alloc(size, 0xa5), 0, size, (rootpage - 1) * size)
  closeSync(fd)
}

t.test('a store that refuses writes makes /readyz fail with a code until a write succeeds', async (t) => {
  const { h, db } = await withOwnStore(t)
  t.notOk(types.isProxy(h.cp.ctx.store), 'the control plane works on the store itself')
  t.equal((await readyz(h)).status, 200)

  // Read-only: reads work, every commit fails.
  db.pragma('query_only = ON')
  const refused = await h.api('POST', '/v1/keys', { name: 'refused', type: 'aead' })
  t.equal(refused.status, 503, 'the write is refused')
  let r = await readyz(h)
  t.equal(r.status, 503)
  t.match(r.body, { status: 'not-ready', code: 'CP_ERR_STORE_WRITE', reason: /^writes fail since 2026-.*: the database is read-only \(SQLITE_READONLY\)$/ })
  t.match(r.body.checks, { store: { status: 'ready' }, writes: { status: 'not-ready', code: 'CP_ERR_STORE_WRITE' } }, 'reads still work; writes do not')
  t.equal(errorLines(h, 'CP_ERR_STORE_WRITE').length, 1, 'logged once at error')
  let m = (await scrape(h.cp.url)).series
  t.equal(metric(m, 'keymesh_cp_store_writes_refused'), 1)
  const failures = metric(m, 'keymesh_cp_store_write_failures_total')
  t.ok(failures >= 1, 'the failed transactions are counted')

  // The probe writes while refused, and still fails: nothing changes, nothing more is counted or logged.
  h.clock.advance(PROBE_MS)
  await h.cp.health.writes.idle()
  t.equal((await readyz(h)).status, 503)
  t.equal(metric((await scrape(h.cp.url)).series, 'keymesh_cp_store_write_failures_total'), failures, 'the probe is not counted as a failed transaction')
  t.equal(errorLines(h, 'CP_ERR_STORE_WRITE').length, 1)

  // Writable again: the next probe clears it without any request.
  db.pragma('query_only = OFF')
  h.clock.advance(PROBE_MS)
  await h.cp.health.writes.idle()
  t.equal((await readyz(h)).status, 200, 'ready again after the probe')
  t.ok(h.logs.some((l) => l.includes('the store takes writes again')))
  t.equal(metric((await scrape(h.cp.url)).series, 'keymesh_cp_store_writes_refused'), 0)
  t.equal((await h.cp.ctx.store.read((r) => r.getMeta('write-probe')))?.length, 8, 'the probe keeps one row of eight bytes')

  // Disk full: the database may not grow by a page, and a write needs one.
  db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true }))}`)
  let full: unknown
  for (let i = 0; i < 50 && full === undefined; i++) {
    await h.cp.ctx.store.transaction((tx) => tx.putMeta(`filler-${i}`, new Uint8Array(3000))).catch((e: unknown) => (full = e))
  }
  t.match(full, { code: 'CP_ERR_STORE' }, 'a write that needs a new page is refused')
  r = await readyz(h)
  t.match(r.body, { code: 'CP_ERR_STORE_WRITE', reason: /disk full \(SQLITE_FULL\)/ })
  db.pragma('max_page_count = 1073741823')
  t.equal((await h.api('POST', '/v1/keys', { name: 'after', type: 'aead' })).status, 201, 'a real write succeeds')
  t.equal((await readyz(h)).status, 200, 'and clears it at once')
  m = (await scrape(h.cp.url)).series
  t.equal(metric(m, 'keymesh_cp_store_writes_refused'), 0)
})

t.test('the store itself tells the write health how each write went: no wrapper stands between', async (t) => {
  const dir = t.testdir()
  await (await openSqliteStore({ dir })).close()
  const db = new Database(join(dir, SQLITE_FILE))
  const store = new SqliteStore(db, false)
  t.teardown(() => store.close())
  const clock = new FakeClock()
  const writes = new WriteHealth({ clock, logger: captureLogger().logger, probeIntervalMs: PROBE_MS })
  t.teardown(() => writes.close())
  writes.watch(store)
  db.pragma('query_only = ON')
  await t.rejects(store.transaction((tx) => tx.putMeta('x', new Uint8Array(1))))
  t.match(writes.fault, { code: 'CP_ERR_STORE_WRITE', reason: 'the database is read-only (SQLITE_READONLY)' }, 'a write on the store object flips it')
  t.equal(writes.failures, 1)
  clock.advance(PROBE_MS)
  await writes.idle()
  t.equal(writes.failures, 1, 'the probe, told through the same store, is not counted')
  t.not(writes.fault, null)
  db.pragma('query_only = OFF')
  clock.advance(PROBE_MS)
  await writes.idle()
  t.equal(writes.fault, null, 'the probe that succeeds clears it')
  await writes.close()
  db.pragma('query_only = ON')
  await t.rejects(store.transaction((tx) => tx.putMeta('x', new Uint8Array(1))))
  t.equal(writes.fault, null, 'after close, nothing is told')
})

t.test('a database file removed or replaced under the control plane is not ready', async (t) => {
  const { h, file } = await withOwnStore(t)
  t.match(h.cp.ctx.settings, { integrityCheckIntervalMs: 0, auditVerifyIntervalMs: 0 }, 'a test control plane runs no scheduled check unless the test turns it on')
  renameSync(file, `${file}.moved`)
  let r = await readyz(h)
  t.equal(r.status, 503)
  t.match(r.body, { code: 'CP_ERR_STORE_WRITE', reason: `${file} was removed while the control plane had it open` })
  copyFileSync(`${file}.moved`, file)
  r = await readyz(h)
  t.match(r.body, { code: 'CP_ERR_STORE_WRITE', reason: `${file} was replaced while the control plane had it open` })
  renameSync(`${file}.moved`, file)
  t.equal((await readyz(h)).status, 200, 'the same file back in place')
  t.equal(errorLines(h, 'CP_ERR_STORE_WRITE').length, 2, 'each problem logged once')
})

t.test('a damaged page refuses the start, naming the file and the fix', async (t) => {
  const dir = t.testdir()
  const copy = join(dir, 'copy')
  await (await openSqliteStore({ dir: copy })).close() // created and migrated, no control plane needed
  const file = join(copy, SQLITE_FILE)
  corruptPage(file, 'keys')
  const err = await startTestControlPlane(t, { dataDir: copy }).then(() => null, (e: unknown) => e as Error & { code: string })
  t.equal(err?.code, 'CP_ERR_STORE_CORRUPT')
  t.match(err?.message, `${file} failed its integrity check (quick_check: `)
  t.match(err?.message, `keymesh backup restore FILE --data-dir DIR`)
  t.match(err?.message, `sqlite3 ${file} .recover`)

  // Garbage over the file's header: it does not even open, and says which file.
  const header = join(dir, 'header')
  mkdirSync(header)
  const bad = join(header, SQLITE_FILE)
  const fd = openSync(bad, 'w')
  writeSync(fd, Buffer.alloc(4096, 0x5a))
  closeSync(fd)
  const open = await openSqliteStore({ dir: header }).then(() => null, (e: unknown) => e as Error & { code: string })
  t.equal(open?.code, 'CP_ERR_STORE_CORRUPT')
  t.match(open?.message, `${bad} cannot be read (SQLITE_NOTADB)`)
})

t.test('a page damaged while running is checked as soon as a request meets it: /readyz fails, an error is logged', async (t) => {
  const { h, db, file } = await withOwnStore(t)
  const integrity = h.cp.health.integrity
  if (!integrity) return t.fail('a SQLite store has an integrity check')
  t.equal(integrity.state.status, 'ok', 'checked at start')
  db.pragma('wal_checkpoint(TRUNCATE)')
  corruptPage(file, 'operator_tokens')
  db.pragma('shrink_memory') // the connection reads the page from the file again
  t.equal((await h.api('GET', '/v1/keys')).status, 503, 'the read that meets the page (the token look-up) fails')
  t.equal(integrity.state.status, 'ok', 'the check at start passed less than a minute ago: the next waits for the minute')
  t.equal((await h.api('GET', '/v1/keys')).status, 503)
  h.clock.advance(SUSPECT_GAP_MS)
  t.equal(integrity.state.status, 'running', 'then it starts, not 6 h later')
  t.equal(h.logs.filter((l) => l.includes('reported a damaged page')).length, 1, 'asked for once')
  const verdict = await integrity.check() // the check under way
  t.equal(verdict.ok, false)
  const r = await readyz(h)
  t.equal(r.status, 503)
  t.match(r.body, { code: 'CP_ERR_STORE_CORRUPT', reason: `${file} failed its integrity check at 2026-`, checks: { integrity: { status: 'not-ready' } }, integrityCheck: { status: 'damaged' } })
  t.match(r.body.reason, 'keymesh backup restore')
  const logged = errorLines(h, 'CP_ERR_STORE_CORRUPT')
  t.equal(logged.length, 1)
  t.match(logged[0], { file, problems: [/./] })
  const m = (await scrape(h.cp.url)).series
  t.equal(metric(m, 'keymesh_cp_store_integrity_damaged'), 1)
  t.equal(metric(m, 'keymesh_cp_store_integrity_checked_timestamp_seconds'), h.clock.now() / 1000)
})

t.test('the scheduled audit verification goes on from the last verified head and reports a break', async (t) => {
  const { h, file } = await withOwnStore(t, { auditVerifyIntervalMs: DEFAULT_SETTINGS.auditVerifyIntervalMs })
  const watch = h.cp.health.audit
  t.equal(watch.state.status, 'pending')
  h.clock.advance(0) // the first pass, at start
  await until(() => watch.state.status !== 'pending', 'the first pass of the schedule, turned on here')
  const first = watch.state
  const head = (await h.cp.ctx.store.read((r) => r.getAuditHead())).seq
  t.match(first, { status: 'ok', verifiedSeq: head }, 'the first pass verifies the whole chain')
  t.equal((await h.api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).status, 201)
  t.equal((await h.api('POST', '/v1/keys', { name: 'billing', type: 'aead' })).status, 201)
  const last = (await h.cp.ctx.store.read((r) => r.getAuditHead())).seq

  // An entry not verified yet is changed behind the control plane's back.
  const other = new Database(file)
  t.teardown(() => other.close())
  const { reason } = other.prepare('SELECT reason FROM audit_log WHERE seq = ?').get(last) as { reason: string }
  other.exec(`DROP TRIGGER audit_log_no_update; UPDATE audit_log SET reason = 'nothing happened' WHERE seq = ${last}`)
  h.clock.advance(DEFAULT_SETTINGS.auditVerifyIntervalMs)
  const broken = await watch.verify()
  t.match(broken, { status: 'broken', firstBadSeq: last, reason: 'hash-mismatch', verifiedSeq: head })
  const logged = errorLines(h, 'CP_ERR_AUDIT_BROKEN')
  t.equal(logged.length, 1)
  t.match(logged[0], { firstBadSeq: last, reason: 'hash-mismatch', msg: /keymesh audit verify/ })
  let m = (await scrape(h.cp.url)).series
  t.equal(metric(m, 'keymesh_cp_audit_chain_broken'), 1)
  t.equal(metric(m, 'keymesh_cp_audit_chain_verified_seq'), head, 'verified up to the head before the break')
  const r = await readyz(h)
  t.equal(r.status, 200, 'the KMS goes on serving')
  t.match(r.body.auditChain, { status: 'broken', code: 'CP_ERR_AUDIT_BROKEN', firstBadSeq: last, reason: 'hash-mismatch' })
  h.clock.advance(DEFAULT_SETTINGS.auditVerifyIntervalMs)
  await watch.verify()
  t.equal(errorLines(h, 'CP_ERR_AUDIT_BROKEN').length, 1, 'the same break is logged once')

  // Put back: the chain verifies again, from the same head.
  other.prepare('UPDATE audit_log SET reason = ? WHERE seq = ?').run(reason, last)
  h.clock.advance(DEFAULT_SETTINGS.auditVerifyIntervalMs)
  t.match(await watch.verify(), { status: 'ok', verifiedSeq: last })
  m = (await scrape(h.cp.url)).series
  t.equal(metric(m, 'keymesh_cp_audit_chain_broken'), 0)
  t.equal(metric(m, 'keymesh_cp_audit_chain_verified_seq'), last)
  t.equal(metric(m, 'keymesh_cp_audit_chain_verified_timestamp_seconds'), h.clock.now() / 1000)

  // An entry already verified that changes is not seen by the passes that follow, but by a full one (a start).
  other.exec(`UPDATE audit_log SET reason = 'rewritten' WHERE seq = 2`)
  h.clock.advance(DEFAULT_SETTINGS.auditVerifyIntervalMs)
  t.match(await watch.verify(), { status: 'ok' }, 'incremental passes look only at what is new')
  const full = new AuditWatch({ store: h.cp.ctx.store, audit: () => h.cp.ctx.audit, clock: h.clock, logger: captureLogger().logger, intervalMs: 0 })
  t.match(await full.verify(), { status: 'broken', firstBadSeq: 2, reason: 'hash-mismatch' })
  // The head a pass stopped at must still be there as it was.
  other.exec(`UPDATE audit_log SET reason = 'moved' WHERE seq = ${last}`)
  h.clock.advance(DEFAULT_SETTINGS.auditVerifyIntervalMs)
  t.match(await watch.verify(), { status: 'broken', firstBadSeq: last, reason: 'checkpoint-mismatch' })
})

t.test('the integrity check at start is bounded in time, and one that cannot run changes nothing', async (t) => {
  const clock = new FakeClock()
  const { logger, logs } = captureLogger()
  let answer: ((r: IntegrityResult) => void) | undefined
  let stopped = 0
  const watch = new IntegrityWatch({
    file: '/data/keymesh.db',
    check: () => ({ result: new Promise<IntegrityResult>((resolve) => (answer = resolve)), stop: () => void stopped++ }),
    clock,
    logger,
    intervalMs: HOUR,
  })
  await watch.atStart(1) // the check has not answered: the start goes on
  t.match(logs.join(''), /still running; starting anyway/)
  t.equal(watch.state.status, 'running')
  t.same(watch.readiness(), { ready: true }, 'not knowing yet is not damage')
  t.same(watch.report(), { status: 'unchecked', running: true })
  answer?.({ ok: false, ran: true, problems: ['Tree 5 page 5: btreeInitPage() returns error code 11'], ms: 3 })
  await until(() => watch.state.status === 'damaged', 'the late verdict')
  t.match(watch.readiness(), { ready: false, code: 'CP_ERR_STORE_CORRUPT', reason: /Tree 5 page 5/ })
  watch.start()
  clock.advance(HOUR)
  answer?.({ ok: false, ran: false, problems: ['the check could not read the file: SQLITE_CANTOPEN'], ms: 1 })
  await until(() => watch.state.status === 'damaged' && logs.some((l) => l.includes('could not run')), 'the check that could not run')
  t.equal(watch.readiness().ready, false, 'the last verdict stands')
  clock.advance(HOUR)
  answer?.({ ok: true, ms: 2 })
  await until(() => watch.state.status === 'ok', 'a passing check')
  t.same(watch.readiness(), { ready: true })
  t.match(logs.join(''), /passed its integrity check again/)
  clock.advance(HOUR)
  watch.close()
  t.equal(stopped, 1, 'close stops the running check')
  t.equal(clock.pendingTimers, 0, 'and the schedule')
  t.throws(() => new IntegrityWatch({ file: 'x', check: () => ({ result: Promise.resolve({ ok: true, ms: 0 }), stop: () => undefined }), clock, logger, intervalMs: -1 }), RangeError)

  // quick_check itself: a file that is not there cannot be checked; stopping answers at once.
  const missing = await quickCheck(join(t.testdir(), 'none.db'), { busyTimeoutMs: 100 }).result
  t.match(missing, { ok: false, ran: false, problems: [/could not read the file: SQLITE_CANTOPEN/] })
  const run = quickCheck(join(t.testdir(), 'none.db'), { busyTimeoutMs: 100 })
  run.stop()
  t.match(await run.result, { ok: false, ran: false, problems: ['stopped'] })
})
