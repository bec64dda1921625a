// Finding (issue 12): with write access to the database, drop the append-only
// triggers, delete the tail, rewrite an entry, recompute the unkeyed SHA-256
// hashes, update audit_head, recreate the triggers — and `audit verify` said ok.
// Here the attack is done exactly so, on a real SQLite store, and then checked
// by each kind of verifier:
//   - the master-key holder (offline, and the control plane through the API)
//     names the rewritten entry: its MAC no longer matches (mac-mismatch);
//   - the holder of audit.pub and a checkpoint exported before the attack
//     (no master key) finds that the log no longer passes through it;
//   - a verifier with neither still sees an intact chain, and says that it
//     checked no MAC: that is what the README promises, and no more.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'

import { Database, auditEntryHash } from '../../control-plane/src/index.js'
import { runCli } from '../kit/cli.js'
import { startTestControlPlane, testKeyDir } from '../kit/cp.js'
import { HOUR } from '../kit/fake-clock.js'

interface Installation {
  /** The control plane's data directory (keymesh.db, audit.pub; its master key beside it), stopped. */
  readonly dir: string
  /** What an auditor keeps away from the database: audit.pub and a checkpoint file. */
  readonly pub: string
  readonly checkpointFile: string
  /** The checkpoint's seq, and the head when the control plane stopped. */
  readonly checkpointSeq: number
  readonly headSeq: number
}

/** A real installation with keys made through the API, a checkpoint exported half-way, and more activity after it. */
async function installation(t: Test): Promise<Installation> {
  const base = t.testdir()
  const dir = join(base, 'cp')
  const h = await startTestControlPlane(t, { dataDir: dir })
  for (let i = 1; i <= 6; i++) t.equal((await h.api('POST', '/v1/keys', { name: `payroll-${i}`, type: 'aead' })).status, 201)
  h.clock.advance(2 * HOUR)
  await h.cp.scheduler.tick()
  const tokenFile = join(dir, 'cli.token')
  writeFileSync(tokenFile, h.adminToken, { mode: 0o600 })
  const exported = await runCli(['audit', 'checkpoint', '--json', '--cp', h.cp.url, '--token-file', tokenFile])
  t.equal(exported.code, 0, exported.err)
  const holder = join(base, 'auditor')
  mkdirSync(holder)
  const checkpointFile = join(holder, 'checkpoint.json')
  const pub = join(holder, 'audit.pub')
  writeFileSync(checkpointFile, exported.out)
  copyFileSync(join(dir, 'audit.pub'), pub)
  for (let i = 7; i <= 12; i++) t.equal((await h.api('POST', '/v1/keys', { name: `payroll-${i}`, type: 'aead' })).status, 201)
  const headSeq = (await h.cp.ctx.store.read((r) => r.getAuditHead())).seq
  await h.cp.close()
  return { dir, pub, checkpointFile, checkpointSeq: JSON.parse(exported.out).seq as number, headSeq }
}

type SqliteDatabase = InstanceType<typeof Database>

/** `keymesh audit verify`'s exit code for a broken chain (1 means it could not check). */
const EXIT_AUDIT_BROKEN = 3

const row = (db: SqliteDatabase, seq: number) => db.prepare('SELECT * FROM audit_log WHERE seq = ?').get(seq) as Record<string, any>

/**
 * The attack, as the reviewer did it, on the database file alone: drop the
 * triggers, delete the tail after `keepUpTo`, rewrite entry `seq`, recompute the
 * SHA-256 chain from it, move audit_head, recreate the triggers. The signed
 * checkpoints that would give the change away are deleted too, and with
 * `stripKeys` every MAC and the anchor as well (passing the log off as one from
 * before the keyed chain).
 */
function rewrite(t: Test, dir: string, o: { seq: number; keepUpTo: number; stripKeys?: boolean }): void {
  const db = new Database(join(dir, 'keymesh.db'))
  const triggers = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all() as { name: string; sql: string }[]
  for (const tr of triggers) db.exec(`DROP TRIGGER ${tr.name}`)
  db.prepare('DELETE FROM audit_log WHERE seq > ?').run(o.keepUpTo)
  db.prepare('DELETE FROM audit_checkpoints WHERE seq >= ?').run(o.seq)
  const target = row(db, o.seq)
  db.prepare("UPDATE audit_log SET actor = 'system:scheduler', reason = 'routine' WHERE seq = ?").run(o.seq)
  if (o.stripKeys) {
    db.exec("UPDATE audit_log SET mac = NULL; DELETE FROM meta WHERE key = 'audit-chain'")
  }
  let prev = o.stripKeys ? Buffer.alloc(32) : (row(db, o.seq - 1).hash as Buffer)
  for (let seq = o.stripKeys ? 1 : o.seq; seq <= o.keepUpTo; seq++) {
    const r = row(db, seq)
    const hash = Buffer.from(auditEntryHash({
      seq, at: r.at, actor: r.actor, action: r.action, target: r.target, outcome: r.outcome, reason: r.reason, detailsJson: r.details, prevHash: prev,
    }))
    db.prepare('UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?').run(prev, hash, seq)
    prev = hash
  }
  db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(o.keepUpTo, prev)
  for (const tr of triggers) db.exec(tr.sql)
  db.close()
  t.match(target, { action: 'key.create', actor: /^operator:/ }, 'the rewritten entry was an operator creating a key')
}

let copies = 0

/** A copy of the database alone (beside the data directory), as a public-key holder or a verifier with nothing would have it. */
function bareCopy(dir: string): string {
  // Apart from the installation's directory and the development key beside it.
  const copy = join(dir, '..', 'copies', `copy-${++copies}`)
  mkdirSync(copy, { recursive: true })
  copyFileSync(join(dir, 'keymesh.db'), join(copy, 'keymesh.db'))
  return copy
}

/** Offline, the master-key holder is whoever can read the installation's development key (beside its data directory). */
async function verify(...argv: string[]): Promise<{ code: number; view: any }> {
  const dir = argv[argv.indexOf('--data-dir') + 1] as string
  const r = await runCli(['audit', 'verify', '--json', ...argv], { KEYMESH_CONFIG_HOME: testKeyDir(dir) })
  return { code: r.code, view: r.out === '' ? r.err : JSON.parse(r.out) }
}

t.test('the rewrite is named at its entry by the master-key holder, and caught by the public-key holder’s checkpoint', async (t) => {
  const i = await installation(t)
  const seq = i.checkpointSeq - 3
  const keepUpTo = i.headSeq - 4
  t.ok(seq > 3 && keepUpTo > i.checkpointSeq, 'an entry before the checkpoint is rewritten; the tail after it is cut')
  rewrite(t, i.dir, { seq, keepUpTo })

  const nothing = await verify('--data-dir', bareCopy(i.dir))
  t.equal(nothing.code, 1, 'with neither key the rows still form a chain, which is no pass…')
  t.match(nothing.view, { ok: true, macs: 'unchecked', checkpoints: 0, head: { seq: keepUpTo } }, '…and the answer says no MAC was checked')

  const master = await verify('--data-dir', i.dir)
  t.equal(master.code, EXIT_AUDIT_BROKEN)
  t.same(master.view, { ok: false, count: seq - 1, firstBadSeq: seq, reason: 'mac-mismatch' }, 'the master-key holder names the rewritten entry')

  const pub = await verify('--data-dir', bareCopy(i.dir), '--public-key', i.pub, '--checkpoint', i.checkpointFile)
  t.equal(pub.code, EXIT_AUDIT_BROKEN)
  t.same(pub.view, { ok: false, count: i.checkpointSeq - 1, firstBadSeq: i.checkpointSeq, reason: 'checkpoint-mismatch' },
    'the public-key holder: the log no longer passes through the checkpoint, so an entry up to it was changed')

  // The control plane, started again with its master key, says the same through the API.
  const h = await startTestControlPlane(t, { dataDir: i.dir })
  const online = await h.api('GET', '/v1/audit/verify')
  t.match(online.body, { ok: false, firstBadSeq: seq, reason: 'mac-mismatch' })
})

t.test('a cut below the checkpoint is caught with the public key; the master key alone cannot see a clean cut', async (t) => {
  const i = await installation(t)
  const keepUpTo = i.checkpointSeq - 2
  rewrite(t, i.dir, { seq: keepUpTo, keepUpTo })

  const master = await verify('--data-dir', i.dir)
  t.same(master.view, { ok: false, count: keepUpTo - 1, firstBadSeq: keepUpTo, reason: 'mac-mismatch' }, 'the rewritten last entry')

  const pub = await verify('--data-dir', bareCopy(i.dir), '--public-key', i.pub, '--checkpoint', i.checkpointFile)
  t.same(pub.view, { ok: false, count: keepUpTo, firstBadSeq: keepUpTo + 1, reason: 'truncated' }, 'entries the checkpoint vouched for are gone')

  // A cut with no rewrite: every remaining MAC is genuine. Only a head held outside the database shows it.
  const j = await installation(t)
  const db = new Database(join(j.dir, 'keymesh.db'))
  const last = j.headSeq - 3
  db.exec('DROP TRIGGER audit_log_no_delete')
  db.prepare('DELETE FROM audit_log WHERE seq > ?').run(last)
  db.prepare('UPDATE audit_head SET seq = ?, hash = (SELECT hash FROM audit_log WHERE seq = ?) WHERE id = 1').run(last, last)
  db.close()
  t.match((await verify('--data-dir', j.dir)).view, { ok: true, macs: 'checked' }, 'the master key alone: nothing wrong with what is left')
  const held = await verify('--data-dir', j.dir, '--expect-head', `${j.headSeq}:${'0'.repeat(64)}`)
  t.match(held.view, { ok: false, firstBadSeq: last + 1, reason: 'truncated' }, 'a head recorded earlier: the log ends before it')
})

t.test('stripping every MAC and the anchor does not pass the log off as an old, unkeyed one', async (t) => {
  const i = await installation(t)
  const seq = i.checkpointSeq - 3
  rewrite(t, i.dir, { seq, keepUpTo: i.headSeq, stripKeys: true })
  t.same((await verify('--data-dir', i.dir)).view, { ok: false, count: 0, firstBadSeq: 1, reason: 'unkeyed' }, 'with the master key: no anchor, nothing to trust')
  const pub = await verify('--data-dir', bareCopy(i.dir), '--public-key', i.pub, '--checkpoint', i.checkpointFile)
  t.match(pub.view, { ok: false, firstBadSeq: i.checkpointSeq, reason: 'checkpoint-mismatch' })
})

t.test('a restart does not re-bless a log whose MACs, anchor, checkpoints and signing key were removed', async (t) => {
  // The rest of the attack: after stripping the keys, delete the signing key as well
  // and wait for a restart, hoping the control plane starts a fresh keyed chain over
  // the rewritten log and signs it with a fresh key. It refuses: audit.pub, written
  // outside the database when the chain started, says a chain was started here.
  const i = await installation(t)
  rewrite(t, i.dir, { seq: i.checkpointSeq - 3, keepUpTo: i.headSeq, stripKeys: true })
  const db = new Database(join(i.dir, 'keymesh.db'))
  db.exec("DROP TRIGGER IF EXISTS audit_checkpoints_no_delete; DELETE FROM audit_checkpoints; DELETE FROM meta WHERE key = 'audit-signing-key'")
  db.close()
  await t.rejects(startTestControlPlane(t, { dataDir: i.dir }), { code: 'CP_ERR_AUDIT_KEY', message: /started here before \(audit\.pub in the data directory[^)]*\).*anchor is gone/ })
  t.equal(readFileSync(join(i.dir, 'audit.pub'), 'utf8'), readFileSync(i.pub, 'utf8'), 'audit.pub is not overwritten with a new key')
})

t.test('a replaced signing key is refused at start: audit.pub names the installation\'s key', async (t) => {
  const i = await installation(t)
  writeFileSync(join(i.dir, 'audit.pub'), 'ed25519:' + 'A'.repeat(43) + '\n')
  await t.rejects(startTestControlPlane(t, { dataDir: i.dir }), { code: 'CP_ERR_AUDIT_KEY', message: /not the one in .*audit\.pub: it was replaced/ })
})

t.test('a first keyed start does not bridge an unkeyed chain that is already broken', async (t) => {
  // As an upgrade from before the keyed chain sees it: no anchor, no audit.pub, no
  // checkpoint; but an entry was edited without recomputing the chain.
  const i = await installation(t)
  const db = new Database(join(i.dir, 'keymesh.db'))
  const triggers = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all() as { name: string; sql: string }[]
  for (const tr of triggers) db.exec(`DROP TRIGGER ${tr.name}`)
  db.exec("UPDATE audit_log SET mac = NULL; DELETE FROM meta WHERE key IN ('audit-chain', 'audit-signing-key'); DELETE FROM audit_checkpoints")
  db.exec(`DELETE FROM audit_log WHERE action = 'audit.chain.start'`)
  db.prepare("UPDATE audit_log SET reason = 'edited' WHERE seq = 2").run()
  db.close()
  rmSync(join(i.dir, 'audit.pub'))
  await t.rejects(startTestControlPlane(t, { dataDir: i.dir }), { code: 'CP_ERR_AUDIT_KEY', message: /broken at entry/ })
})
