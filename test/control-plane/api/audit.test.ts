import t from 'tap'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { pino } from 'pino'

import { createHttpServer } from '../../../control-plane/src/http/server.js'
import { route } from '../../../control-plane/src/http/router.js'
import { newToken, hashTokenBytes } from '../../../control-plane/src/policy.js'
import { Database, type SqliteDatabase } from '../../../control-plane/src/store/sqlite-driver.js'
import { newTokenId } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FAKE_EPOCH, MINUTE } from '../../kit/fake-clock.js'

/** Appends `n` entries straight through the audit log, one minute apart (faster than n requests). */
async function fill(h: TestControlPlane, n: number, make: (i: number) => { actor: string; action: string; target: string; outcome: 'ok' | 'deny' | 'error' | 'allow' } ) {
  for (let i = 1; i <= n; i++) {
    h.clock.advance(MINUTE)
    await h.cp.ctx.store.transaction((tx) => h.cp.ctx.audit.append(tx, { ...make(i), reason: `entry ${i}`, details: { n: i } }))
  }
}

async function tokenFor(h: TestControlPlane, role: 'operator' | 'auditor'): Promise<string> {
  const token = newToken(h.cp.ctx.suite, role === 'auditor' ? 'operator' : role)
  await h.cp.ctx.store.transaction((tx) => tx.insertOperatorToken({
    id: newTokenId(h.cp.ctx.suite.randomBytes), name: role, tokenHash: hashTokenBytes(h.cp.ctx.suite, token), role,
    createdAt: h.clock.now(), expiresAt: null, revokedAt: null,
  }))
  return token
}

async function exportText(h: TestControlPlane, query = '', token = h.adminToken): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${h.cp.url}/v1/audit/export${query}`, { headers: { authorization: `Bearer ${token}` } })
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() }
}

/** Raw SQL on the live database file, as an attacker with the file would: the append-only triggers dropped first. */
function tamper(h: TestControlPlane, sql: (db: SqliteDatabase) => void): void {
  const db = new Database(join(h.dataDir, 'keymesh.db'))
  db.exec('DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete')
  sql(db)
  db.close()
}

const seqs = (entries: Array<{ seq: number }>) => entries.map((e) => e.seq)

t.test('GET /v1/audit without a filter is a tail: the newest entries, oldest first', async (t) => {
  const h = await startTestControlPlane(t)
  await fill(h, 10, (i) => ({ actor: 'system:test', action: 'test.fill', target: `thing:${i}`, outcome: 'ok' }))
  const head = (await h.cp.ctx.audit.verify(h.cp.ctx.store)) as { head: { seq: number } }
  const n = head.head.seq
  const res = await h.api('GET', '/v1/audit?limit=3')
  t.equal(res.status, 200)
  t.same(seqs(res.body.entries), [n - 2, n - 1, n])
  t.match(res.body.entries[2], { actor: 'system:test', action: 'test.fill', target: 'thing:10', outcome: 'ok', reason: 'entry 10', details: { n: 10 }, hash: /^[0-9a-f]{64}$/, prevHash: /^[0-9a-f]{64}$/ })
  t.equal((await h.api('GET', '/v1/audit')).body.entries.length, n, 'default limit covers a short log')
})

t.test('GET /v1/audit filters by time, actor, action, target and outcome', async (t) => {
  const h = await startTestControlPlane(t)
  await fill(h, 12, (i) => ({
    actor: i % 2 ? 'operator:tok_a' : 'agent:agt_b',
    action: i % 3 ? 'key.create' : 'key.rotate',
    target: `key:k${i % 4}`,
    outcome: i === 7 ? 'deny' : 'ok',
  }))
  const q = async (qs: string) => {
    const res = await h.api('GET', `/v1/audit?${qs}`)
    t.equal(res.status, 200, qs)
    return (res.body.entries as Array<{ reason: string }>).map((e) => Number(e.reason.split(' ')[1]))
  }
  t.same(await q('actor=agent:agt_b'), [2, 4, 6, 8, 10, 12])
  t.same(await q('action=key.rotate'), [3, 6, 9, 12])
  t.same(await q('target=key:k1'), [1, 5, 9])
  t.same(await q('outcome=deny'), [7])
  t.same(await q('action=key.rotate&actor=operator:tok_a'), [3, 9])
  const t3 = FAKE_EPOCH + 3 * MINUTE
  t.same(await q(`from=${t3}&to=${t3 + 3 * MINUTE}&actor=operator:tok_a`), [3, 5], 'from inclusive, to exclusive (ms)')
  t.same(await q(`from=${new Date(t3).toISOString()}&to=${new Date(t3 + 3 * MINUTE).toISOString()}&action=key.create`), [4, 5], 'ISO 8601 bounds')
  t.same(await q('action=key.create&limit=2'), [1, 2], 'a filtered query pages forward from the oldest match')
})

t.test('bad audit queries are refused with typed errors', async (t) => {
  const h = await startTestControlPlane(t)
  const cases: Array<[string, number, string]> = [
    ['limit=0', 400, 'CP_ERR_INVALID_FIELD'],
    ['limit=1001', 400, 'CP_ERR_INVALID_FIELD'],
    ['limit=ten', 400, 'CP_ERR_INVALID_FIELD'],
    ['outcome=maybe', 400, 'CP_ERR_INVALID_FIELD'],
    ['from=yesterday', 400, 'CP_ERR_AUDIT_TIME'],
    ['to=2026-13-45T00:00:00Z', 400, 'CP_ERR_AUDIT_TIME'],
    ['seq=1', 400, 'CP_ERR_UNKNOWN_FIELD'],
    ['actor=a&actor=b', 400, 'CP_ERR_BAD_REQUEST'],
  ]
  for (const [qs, status, code] of cases) {
    const res = await h.api('GET', `/v1/audit?${qs}`)
    t.equal(res.status, status, qs)
    t.equal(res.body.error.code, code, qs)
  }
  t.equal((await exportText(h, '?limit=5')).status, 400, 'export takes no limit')
  t.equal((await h.api('GET', '/v1/audit/verify?x=1')).status, 400)
  for (const qs of ['expectSeq=3', `expectHash=${'a'.repeat(64)}`, 'expectSeq=0&expectHash=00', `expectSeq=1&expectHash=${'A'.repeat(64)}`]) {
    const res = await h.api('GET', `/v1/audit/verify?${qs}`)
    t.match(res, { status: 400, body: { error: { code: 'CP_ERR_INVALID_FIELD' } } }, qs)
  }
})

t.test('GET /v1/audit/checkpoint answers the newest signed checkpoint; verify takes a head to pass through', async (t) => {
  const h = await startTestControlPlane(t)
  const first = await h.api('GET', '/v1/audit/checkpoint')
  t.equal(first.status, 200)
  const [bridge] = await h.cp.ctx.audit.query(h.cp.ctx.store, { action: 'audit.chain.start' })
  t.match(first.body, { format: 'keymesh-audit-checkpoint-v1', seq: bridge?.seq, hash: bridge?.hash }, 'the bridge entry is signed at start')
  await fill(h, 2, (i) => ({ actor: 'system:test', action: 'a', target: `t${i}`, outcome: 'ok' }))
  const through = await h.api('GET', `/v1/audit/verify?expectSeq=${first.body.seq}&expectHash=${first.body.hash}`)
  t.match(through.body, { ok: true, macs: 'checked', checkpoints: 1 }, 'one point checked: the stored checkpoint is the given head')
  const past = await h.api('GET', `/v1/audit/verify?expectSeq=1000&expectHash=${first.body.hash}`)
  t.match(past.body, { ok: false, reason: 'truncated' }, 'a head the log never reached')
})

t.test('GET /v1/audit/checkpoint is a 404 with its own code while there is none', async (t) => {
  const h = await startTestControlPlane(t)
  const inner = h.cp.ctx.audit
  const none = { ...inner, latestCheckpoint: async () => null }
  Object.assign(h.cp.ctx, { audit: none })
  t.teardown(() => Object.assign(h.cp.ctx, { audit: inner }))
  const res = await h.api('GET', '/v1/audit/checkpoint')
  t.match(res, { status: 404, body: { error: { code: 'CP_ERR_NO_CHECKPOINT' } } })
})

t.test('the audit routes are open to admin, operator and auditor, and closed without a token', async (t) => {
  const h = await startTestControlPlane(t)
  for (const token of [h.adminToken, await tokenFor(h, 'operator'), await tokenFor(h, 'auditor')]) {
    t.equal((await h.api('GET', '/v1/audit?limit=1', undefined, token)).status, 200)
    t.equal((await h.api('GET', '/v1/audit/verify', undefined, token)).status, 200)
    t.equal((await h.api('GET', '/v1/audit/checkpoint', undefined, token)).status, 200)
    t.equal((await exportText(h, '', token)).status, 200)
  }
  const anon = await h.api('GET', '/v1/audit', undefined, null)
  t.equal(anon.status, 401)
  const [last] = await h.cp.ctx.audit.tail(h.cp.ctx.store, 1)
  t.match(last, { action: 'audit.read', outcome: 'deny', actor: /^anonymous/ })
})

t.test('export streams every entry as JSON lines, across page boundaries, and records itself', async (t) => {
  const h = await startTestControlPlane(t)
  await fill(h, 1234, (i) => ({ actor: 'system:test', action: i % 2 ? 'odd' : 'even', target: 't', outcome: 'ok' }))
  const before = await h.cp.ctx.audit.verify(h.cp.ctx.store)
  const res = await exportText(h)
  t.equal(res.status, 200)
  t.match(res.type, /^application\/x-ndjson/)
  t.ok(res.text.endsWith('\n'))
  const lines = res.text.split('\n').slice(0, -1).map((l) => JSON.parse(l) as { seq: number; action: string; prevHash: string; hash: string })
  t.equal(lines.length, before.count + 1, 'every entry, plus the export’s own record')
  t.same(seqs(lines), Array.from({ length: lines.length }, (_, i) => i + 1), 'contiguous from 1, oldest first')
  for (let i = 1; i < lines.length; i++) if (lines[i]!.prevHash !== lines[i - 1]!.hash) t.fail(`chain link ${i}`)
  t.match(lines[lines.length - 1], { action: 'audit.export', outcome: 'ok', actor: /^operator:tok_/ })
  const even = await exportText(h, '?action=even')
  t.equal(even.text.trim().split('\n').length, 617, 'filters apply to the export')
})

t.test('an export the client abandons part-way leaves the server serving', async (t) => {
  const h = await startTestControlPlane(t)
  await fill(h, 2000, () => ({ actor: 'system:test', action: 'bulk', target: 'x'.repeat(500), outcome: 'ok' }))
  const url = new URL(`${h.cp.url}/v1/audit/export`)
  await new Promise<void>((resolve, reject) => {
    const req = httpRequest(url, { headers: { authorization: `Bearer ${h.adminToken}` } }, (res) => {
      res.once('data', () => { req.destroy(); resolve() })
    })
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)))
    req.end()
  })
  t.equal((await h.api('GET', '/v1/audit/verify')).body.ok, true, 'the server still answers')
})

t.test('a streamed answer that fails part-way is cut off, never passed off as complete', async (t) => {
  const logs: string[] = []
  const http = createHttpServer({
    routes: [route({
      method: 'GET', path: '/stream', operation: 'audit.export', auth: 'none',
      handler: async () => ({
        status: 200,
        headers: { 'content-type': 'application/x-ndjson' },
        stream: (async function* () { yield '{"seq":1}\n'; throw new Error('store went away') })(),
      }),
    })],
    authenticate: async () => null,
    authorize: async () => ({ allow: true, reason: 'test' }),
    logger: pino({ level: 'info' }, { write: (s: string) => { logs.push(s) } }),
  })
  const addr = await http.listen('127.0.0.1', 0)
  t.teardown(() => http.close())
  // Whether the headers got out before the connection dropped is a race; either way
  // the client cannot read a complete answer.
  await t.rejects(fetch(`http://127.0.0.1:${addr.port}/stream`).then((res) => res.text()), 'the connection was dropped mid-answer')
  t.match(logs.join(''), /streamed answer failed part-way/)
})

t.test('verify reports an intact chain and names the first bad entry after raw SQL tampering', async (t) => {
  const cases: Array<[string, (db: SqliteDatabase) => void, object]> = [
    ['an edited row', (db) => db.exec("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 5"), { firstBadSeq: 5, reason: 'hash-mismatch', count: 4 }],
    ['a deleted row', (db) => db.exec('DELETE FROM audit_log WHERE seq = 6'), { firstBadSeq: 6, reason: 'seq-gap', count: 5 }],
    ['two reordered rows', (db) => db.exec('UPDATE audit_log SET seq = 1000000 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 1000000'), { firstBadSeq: 3, reason: 'prev-mismatch', count: 2 }],
  ]
  for (const [name, edit, expected] of cases) {
    await t.test(name, async (t) => {
      const h = await startTestControlPlane(t)
      await fill(h, 8, (i) => ({ actor: 'system:test', action: 'a', target: `t${i}`, outcome: 'ok' }))
      const ok = await h.api('GET', '/v1/audit/verify')
      t.equal(ok.status, 200)
      t.match(ok.body, { ok: true, count: Number, head: { seq: ok.body.count, hash: /^[0-9a-f]{64}$/ } })
      t.notOk('firstBadSeq' in ok.body)
      tamper(h, edit)
      const bad = await h.api('GET', '/v1/audit/verify')
      t.equal(bad.status, 200)
      t.match(bad.body, { ok: false, ...expected })
      t.notOk('head' in bad.body)
      const [last] = await h.cp.ctx.audit.tail(h.cp.ctx.store, 1)
      t.match(last, { action: 'audit.verify', outcome: 'ok', details: { ok: false, ...expected } }, 'the finding is itself recorded')
    })
  }
})
