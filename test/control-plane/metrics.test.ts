// GET /metrics, /healthz, /readyz and /v1/identity on the control plane: scraped after real
// actions (admin requests, KMS calls through an agent session, refusals,
// rotations, failed agent handshakes), answered without a token, never audited.
import t from 'tap'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { pino } from 'pino'
import WebSocket from 'ws'

import { PROTO_ERRORS } from '../../protocol/src/index.js'
import { createXkInitiator, nodeSuite, parsePublicKey, publicKeyFingerprint } from '../../protocol/src/index.js'
import { createAgentEndpoint } from '../../control-plane/src/agent-endpoint/endpoint.js'
import { cpError } from '../../control-plane/src/errors.js'
import { probeRoutes } from '../../control-plane/src/http/probes.js'
import { createHttpServer } from '../../control-plane/src/http/server.js'
import { auditFacts, CpMetrics } from '../../control-plane/src/metrics.js'
import { storeReadiness } from '../../control-plane/src/readiness.js'
import type { AuditLog } from '../../control-plane/src/audit.js'
import { openSqliteStore } from '../../control-plane/src/store/sqlite-store.js'
import type { Store, StoreTx } from '../../control-plane/src/store/store.js'
import { LabelCap } from '../../platform/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import { until } from '../kit/wait.js'
import { FakeAgent } from '../kit/fake-agent.js'
import { HOUR, SECOND } from '../kit/fake-clock.js'
import { bytes, kmsAgent } from '../kit/kms.js'
import { hasSeries, metric, scrape } from '../kit/metrics.js'

const auditHead = async (h: TestControlPlane): Promise<number> => (await h.cp.ctx.store.read((r) => r.getAuditHead())).seq

async function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: any; type: string | null }> {
  const res = await fetch(url, { method, headers })
  const text = await res.text()
  const type = res.headers.get('content-type')
  return { status: res.status, type, body: type?.startsWith('application/json') ? JSON.parse(text) : text }
}

t.test('healthz, readyz and metrics answer without a token and write nothing to the audit log', async (t) => {
  const h = await startTestControlPlane(t)
  const before = await auditHead(h)
  t.same((await get(`${h.cp.url}/healthz`)).body, { status: 'ok' })
  const ready = await get(`${h.cp.url}/readyz`)
  t.equal(ready.status, 200)
  const readyCheck = { status: 'ready' }
  t.same(ready.body.checks, { store: readyCheck, writes: readyCheck, integrity: readyCheck, replicas: readyCheck }, 'every check is listed')
  t.match(ready.body, { status: 'ready', auditChain: { status: 'pending' }, integrityCheck: { status: 'ok', checkedAt: /^2026-/ } })
  t.notOk('reason' in ready.body || 'code' in ready.body, 'no reason or code while ready')
  const m = await scrape(h.cp.url)
  t.equal(m.status, 200)
  t.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  t.ok(hasSeries(m.series, 'keymesh_process_cpu_user_seconds_total'), 'process metrics carry the keymesh_ prefix')
  t.equal(metric(m.series, 'keymesh_cp_agents_connected'), 0)
  t.match(m.text, /# TYPE keymesh_cp_operations_total counter/)
  // A bearer token, good or not, changes nothing: these routes do not look at it.
  t.equal((await get(`${h.cp.url}/metrics`, { authorization: 'Bearer km_op_bogus' })).status, 200)
  // Refusals of a probe are not audited either.
  const odd = await get(`${h.cp.url}/metrics?name=x`)
  t.equal(odd.status, 400)
  t.equal(odd.body.error.code, 'CP_ERR_UNKNOWN_FIELD')
  t.equal((await get(`${h.cp.url}/readyz`, {}, 'POST')).status, 405)
  const identity = await get(`${h.cp.url}/v1/identity`)
  t.same(identity.body, { publicKey: h.identityPub, fingerprint: publicKeyFingerprint(nodeSuite, parsePublicKey(h.identityPub)) }, 'the key agents pin, as DIR/identity.pub has it')
  t.equal(await auditHead(h), before, 'no audit entry for any of these requests')

  const after = await scrape(h.cp.url)
  t.equal(metric(after.series, 'keymesh_cp_http_requests_total', { operation: 'healthz', status: '200' }), 1)
  t.equal(metric(after.series, 'keymesh_cp_http_requests_total', { operation: 'probe.metrics', status: '200' }), 2, 'a scrape is counted once answered: this one shows the two before it')
  t.equal(metric(after.series, 'keymesh_cp_http_requests_total', { operation: 'probe.metrics', status: '400' }), 1)
  t.equal(metric(after.series, 'keymesh_cp_http_requests_total', { operation: '(unmatched)', status: '405' }), 1)
  t.ok(metric(after.series, 'keymesh_cp_http_request_duration_seconds_count', { operation: 'probe.ready' }) >= 1)
  const lines = h.logs.map((l) => JSON.parse(l) as { msg: string; path?: string; status?: number; level: number })
  const scrapes = lines.filter((l) => l.msg === 'request' && l.path === '/metrics')
  t.same(scrapes.map((l) => [l.status, l.level]), [[200, 20], [200, 20], [400, 30], [200, 20]], 'successful scrapes are logged at debug, refusals at info')
})

t.test('admin requests, refusals, KMS calls and rotations move their series', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/keys', { name: 'orders-data', type: 'aead', rotationPeriodMs: HOUR })).status, 201)
  t.equal((await h.api('POST', '/v1/keys/orders-data/grants', { service: 'writer', rights: ['encrypt'] })).status, 200)
  // Refused: no token (401), and an auditor creating a key (403).
  t.equal((await h.api('GET', '/v1/keys', undefined, null)).status, 401)
  const auditor = (await h.api('POST', '/v1/tokens', { name: 'eve', role: 'auditor' })).body.token as string
  t.equal((await h.api('POST', '/v1/keys', { name: 'nope', type: 'aead' }, auditor)).status, 403)

  const writer = await kmsAgent(h, t, 'writer')
  const sealed = await writer.request({ op: 'encrypt', key: 'orders-data', plaintext: bytes('one') })
  t.equal(sealed.ok, true)
  t.equal((await writer.request({ op: 'encrypt', key: 'orders-data', plaintext: bytes('two') })).ok, true)
  t.equal((await writer.request({ op: 'decrypt', ciphertext: sealed.result?.ciphertext as string })).ok, false, 'writer may not decrypt')
  const batch = await writer.requestBatch([
    { op: 'encrypt', key: 'orders-data', plaintext: bytes('a') },
    { op: 'encrypt', key: 'orders-data', plaintext: bytes('b') },
    { op: 'encrypt', key: 'orders-data', plaintext: bytes('c') },
  ])
  t.same(batch.items.map((i) => i.ok), [true, true, true])

  t.equal((await h.api('POST', '/v1/keys/orders-data/rotate')).status, 200)
  h.clock.advance(HOUR + SECOND)
  await h.cp.scheduler.tick()
  t.equal((await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  t.equal((await h.api('POST', '/v1/pairs/web/api/rotate')).status, 200)

  const { series } = await scrape(h.cp.url)
  const op = (operation: string, outcome: string): number => metric(series, 'keymesh_cp_operations_total', { operation, outcome })
  const keyOp = (operation: string, outcome: string): number => metric(series, 'keymesh_cp_key_operations_total', { key: 'orders-data', operation, outcome })
  t.equal(op('key.create', 'ok'), 1)
  t.equal(op('key.create', 'deny'), 1, 'the auditor was denied key.create')
  t.equal(metric(series, 'keymesh_cp_operations_total', { outcome: 'deny' }), 3, 'the 401, the 403 and the KMS refusal')
  t.equal(keyOp('key.create', 'ok'), 1)
  t.equal(keyOp('kms.encrypt', 'ok'), 5, 'every call counts, the three of the batch included')
  t.equal(keyOp('kms.decrypt', 'deny'), 1)
  t.equal(op('kms.encrypt', 'ok'), 5)
  t.equal(metric(series, 'keymesh_cp_rotations_total', { kind: 'key', trigger: 'manual' }), 1)
  t.equal(metric(series, 'keymesh_cp_rotations_total', { kind: 'key', trigger: 'scheduled' }), 1)
  t.equal(metric(series, 'keymesh_cp_rotations_total', { kind: 'pair', trigger: 'manual' }), 1)
  t.equal(metric(series, 'keymesh_cp_rotations_total', { kind: 'pair', trigger: 'scheduled' }), 0)
  t.equal(metric(series, 'keymesh_cp_agents_connected'), 1)
  t.equal(metric(series, 'keymesh_cp_http_requests_total', { operation: 'key.create', status: '201' }), 1)
  t.equal(metric(series, 'keymesh_cp_http_requests_total', { operation: 'key.create', status: '403' }), 1)
  t.equal(metric(series, 'keymesh_cp_http_requests_total', { status: '401' }), 1)
  const entries = (await auditHead(h))
  const appended = metric(series, 'keymesh_cp_audit_append_duration_seconds_count')
  // Bootstrap's four entries (identity, admin token, start of the keyed chain, custody) were written before the metrics existed.
  t.equal(appended, entries - 4, 'every audit append since start is timed')
  t.equal(metric(series, 'keymesh_cp_audit_append_failures_total'), 0)

  await writer.close()
  await until(() => h.cp.endpoint.connectedCount() === 0, 'the session to end')
  const later = await scrape(h.cp.url)
  t.equal(metric(later.series, 'keymesh_cp_agents_connected'), 0, 'a closed session is no longer counted')
})

t.test('agent handshake failures are counted by code', async (t) => {
  const h = await startTestControlPlane(t)
  const ws = new WebSocket(h.cp.url.replace('http', 'ws') + '/v1/agent')
  ws.on('error', () => {})
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
  await new Promise<void>((resolve) => ws.once('open', () => resolve()))
  ws.send(Buffer.alloc(48, 7))
  t.equal(await closed, PROTO_ERRORS.PROTO_ERR_DECRYPT.closeCode)

  const stranger = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service: 'orders', joinToken: 'not-a-join-token-at-all' })
  t.teardown(() => void stranger.close().catch(() => {}))
  await stranger.closed

  const { series } = await scrape(h.cp.url)
  t.equal(metric(series, 'keymesh_cp_agent_handshake_failures_total', { code: 'PROTO_ERR_DECRYPT' }), 1)
  t.equal(metric(series, 'keymesh_cp_agent_handshake_failures_total', { code: 'CP_ERR_JOIN_TOKEN' }), 1)
  t.equal(metric(series, 'keymesh_cp_agent_handshake_failures_total'), 2, 'nothing else counted')
  t.equal(metric(series, 'keymesh_cp_agents_connected'), 0)
})

t.test('the endpoint reports refused and timed-out handshakes once each', async (t) => {
  const h = await startTestControlPlane(t)
  const codes: string[] = []
  const refusals: string[] = []
  const endpoint = createAgentEndpoint(h.cp.ctx, { maxPendingHandshakes: 1, onHandshakeFailure: (code) => codes.push(code), onPreauthRefusal: (code) => refusals.push(code) })
  const server = createServer((_req, res) => res.end())
  server.on('upgrade', (req, socket, head) => endpoint.handleUpgrade(req, socket, head))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    await endpoint.close()
    await new Promise((resolve) => server.close(resolve))
  })
  const open = async (): Promise<{ ws: WebSocket; closed: Promise<number> }> => {
    const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as { port: number }).port}/v1/agent`)
    ws.on('error', () => {})
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
    await once(ws, 'open')
    ws.send(createXkInitiator({ suite: nodeSuite, staticKey: nodeSuite.x25519Generate(), controlPlaneKey: parsePublicKey(h.identityPub) }).writeMessage())
    return { ws, closed }
  }
  const first = await open()
  await once(first.ws, 'message')
  // The table is full: the newcomer evicts the oldest pending handshake.
  const second = await open()
  // Listened for now: the answer may come before the first socket's close is seen.
  const answered = once(second.ws, 'message')
  await first.closed
  t.same(refusals, ['CP_ERR_HANDSHAKE_LIMIT'], 'an eviction by a limit is a pre-authentication refusal')
  t.same(codes, [])
  await answered
  h.clock.advance(10 * SECOND)
  await second.closed
  t.same(codes, ['CP_ERR_HANDSHAKE_TIMEOUT'], 'counted once, not again when the socket closes')
  t.same(refusals, ['CP_ERR_HANDSHAKE_LIMIT'])
})
t.test('readyz answers 503 with a reason when the store cannot read', async (t) => {
  const dir = t.testdir()
  const real = await openSqliteStore({ dir })
  let down = false
  // The real store, except that read() rejects while `down`.
  const store = new Proxy(real, {
    get(target, prop) {
      if (prop === 'read' && down) return () => Promise.reject(cpError('CP_ERR_STORE', 'connection refused'))
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  }) as Store
  const h = await startTestControlPlane(t, { dataDir: dir, store })
  t.equal((await get(`${h.cp.url}/readyz`)).status, 200)
  down = true
  const r = await get(`${h.cp.url}/readyz`)
  t.equal(r.status, 503)
  t.match(r.body, { status: 'not-ready', code: 'CP_ERR_STORE', reason: 'the store failed a read (CP_ERR_STORE)', checks: { store: { status: 'not-ready', code: 'CP_ERR_STORE' }, writes: { status: 'ready' } } })
  t.notMatch(JSON.stringify(r.body), /connection refused/, 'the back-end message is not shown')
  t.equal((await get(`${h.cp.url}/healthz`)).status, 200, 'alive all the same')
  down = false
  t.equal((await get(`${h.cp.url}/readyz`)).status, 200, 'ready again once the store reads')
})

t.test('readyz answers 503 once the store is closed', async (t) => {
  const h = await startTestControlPlane(t)
  await h.cp.ctx.store.close()
  const r = await get(`${h.cp.url}/readyz`)
  t.equal(r.status, 503)
  t.match(r.body, { status: 'not-ready', reason: /CP_ERR_STORE/ })
})

t.test('a store that does not answer is not ready after the time limit, and gets one read at a time', async (t) => {
  let reads = 0
  let hang = true
  let answer: ((v: null) => void) | undefined
  const hanging = {
    read: () => {
      reads++
      return hang ? new Promise((resolve) => (answer = resolve)) : Promise.resolve(null)
    },
  } as unknown as Store
  const ready = storeReadiness(hanging, 20)
  const [a, b] = await Promise.all([ready(), ready()])
  t.same(a, { ready: false, code: 'CP_ERR_STORE', reason: 'the store did not answer within 20 ms' })
  t.same(b, a)
  t.equal(reads, 1, 'probes share the outstanding read')
  t.same(await ready(), a, 'a later probe waits on the same read')
  t.equal(reads, 1, 'still the same read')
  hang = false
  answer?.(null)
  t.same(await ready(), { ready: true }, 'the late answer serves the probe that joined it')
  t.same(await ready(), { ready: true })
  t.equal(reads, 2, 'a read that has settled is not shared any more')
  const failing = storeReadiness({ read: () => Promise.reject(new Error('postgres://u:secret@db/x is down')) } as unknown as Store)
  t.same(await failing(), { ready: false, code: 'CP_ERR_STORE', reason: 'the store failed a read (CP_ERR_STORE)' }, 'an untyped failure shows no message')
})

t.test('auditFacts reads counts, keys and rotations from an entry', async (t) => {
  const base = { actor: 'operator:tok_1', reason: 'ok', outcome: 'ok' as const }
  t.same(auditFacts({ ...base, action: 'key.create', target: 'key:a' }), { operation: 'key.create', outcome: 'ok', calls: 1, key: 'a' })
  t.same(auditFacts({ ...base, action: 'kms.encrypt', target: 'key:a', details: { count: 7 } }).calls, 7)
  t.same(auditFacts({ ...base, action: 'kms.encrypt', target: 'key:a', details: { count: 'x' } }).calls, 1, 'a malformed count counts once')
  t.same(auditFacts({ ...base, action: 'token.create', target: 'token:t', details: { count: 7 } }).calls, 1, 'count matters only for KMS entries')
  t.same(auditFacts({ ...base, action: 'pair.rotate', actor: 'system:scheduler', target: 'pair:a', details: { version: 2 } }).rotation, { kind: 'pair', trigger: 'scheduled' })
  t.equal(auditFacts({ ...base, action: 'pair.rotate', actor: 'system:scheduler', target: 'pair:a' }).rotation, undefined, 'a pass that rotated nothing')
  t.equal(auditFacts({ ...base, action: 'key.rotate', outcome: 'error', target: 'key:a', details: { keyVersion: 2 } }).rotation, undefined)
})

t.test('key labels are capped, and a failed append is counted and rethrown', async (t) => {
  const m = new CpMetrics({ maxKeyLabels: 2 })
  const calls: string[] = []
  const inner: AuditLog = {
    append: async (_tx, input) => {
      if (input.action === 'boom') throw cpError('CP_ERR_AUDIT')
      return {} as never
    },
    tail: async () => (calls.push('tail'), []),
    query: async () => (calls.push('query'), []),
    export: async function* () { calls.push('export') },
    verify: async () => (calls.push('verify'), { ok: true, count: 0 }) as never,
    latestCheckpoint: async () => null,
    checkpointIfDue: async () => null,
    startKeyedChain: async () => null,
    publicKey: null,
  }
  const audit = m.instrumentAudit(inner)
  const tx = {} as StoreTx
  const entry = { actor: 'operator:x', reason: 'ok', outcome: 'ok' as const, action: 'key.create' }
  // A refused call naming a key nobody created takes no place under the cap.
  await audit.append(tx, { ...entry, action: 'kms.encrypt', outcome: 'deny', target: 'key:invented' })
  await audit.append(tx, { ...entry, target: 'key:first' })
  await audit.append(tx, { ...entry, action: 'kms.encrypt', outcome: 'deny', target: 'key:first' })
  await audit.append(tx, { ...entry, target: 'key:second' })
  await audit.append(tx, { ...entry, target: 'key:third' })
  await audit.append(tx, { ...entry, target: 'key:third' })
  await t.rejects(audit.append(tx, { ...entry, action: 'boom', target: 'x' }), { code: 'CP_ERR_AUDIT' })
  const store = {} as Store
  await audit.tail(store, 1)
  await audit.query(store)
  for await (const _ of audit.export(store)) void _
  await audit.verify(store)
  t.same(calls, ['tail', 'query', 'export', 'verify'], 'reads pass through')
  const text = (await m.text()).body
  t.match(text, /keymesh_cp_key_operations_total\{key="first",operation="key.create",outcome="ok"\} 1/)
  t.match(text, /keymesh_cp_key_operations_total\{key="second",operation="key.create",outcome="ok"\} 1/)
  t.match(text, /keymesh_cp_key_operations_total\{key="first",operation="kms.encrypt",outcome="deny"\} 1/, 'a known key keeps its label when refused')
  t.match(text, /keymesh_cp_key_operations_total\{key="\(other\)",operation="kms.encrypt",outcome="deny"\} 1/)
  t.match(text, /keymesh_cp_key_operations_total\{key="\(other\)",operation="key.create",outcome="ok"\} 2/)
  t.match(text, /keymesh_cp_audit_append_failures_total 1/)
  t.match(text, /keymesh_cp_audit_append_duration_seconds_count 6/)

  const cap = new LabelCap(2, 'more')
  t.same(['a', 'b', 'c', 'a', 'd'].map((v) => cap.value(v)), ['a', 'b', 'more', 'a', 'more'])
  t.throws(() => new LabelCap(-1), RangeError)
  const strict = new LabelCap(5, 'more')
  t.equal(strict.value('invented', false), 'more', 'a value not admitted takes no place')
  t.equal(strict.value('real'), 'real')
  t.equal(strict.value('real', false), 'real', 'a known value keeps its label when not admitting')
})

t.test('a throwing onAnswered hook is logged and the answer stands', async (t) => {
  const logs: string[] = []
  const http = createHttpServer({
    routes: probeRoutes({ readiness: async () => ({ ready: true }), metrics: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'x 1\n' }) }),
    logger: pino({ level: 'info' }, { write: (s: string) => void logs.push(s) }),
    authenticate: async () => null,
    authorize: async () => ({ allow: false, reason: 'no' }),
    onAnswered: () => {
      throw new Error('hook broke')
    },
  })
  const addr = await http.listen('127.0.0.1', 0)
  t.teardown(() => http.close())
  const r = await get(`http://127.0.0.1:${addr.port}/metrics`)
  t.equal(r.status, 200)
  t.equal(r.body, 'x 1\n')
  t.match(logs.join(''), /onAnswered failed/)
})
