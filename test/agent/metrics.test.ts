// GET /metrics, /healthz and /readyz on the agent's local API: scraped after real
// traffic (KMS calls through the local API, a tunnel between two agents, failed
// and refused tunnel handshakes), and readiness before enrolment, when enrolled,
// and after a restart with neither a control plane nor a cached key set.
import t from 'tap'
import { once } from 'node:events'
import { request } from 'node:http'
import { createServer, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import WebSocket from 'ws'

import { startAgent } from '../../agent/src/agent.js'
import { AgentApiServer } from '../../agent/src/api/server.js'
import { agentReadiness } from '../../agent/src/api/probes.js'
import { DEFAULT_LIMITS, type AgentConfig } from '../../agent/src/config.js'
import { agentError } from '../../agent/src/errors.js'
import { KEYSET_CACHE_FILE } from '../../agent/src/keyset-cache.js'
import { AgentMetrics, kmsOutcome } from '../../agent/src/metrics.js'
import type { UsageStats } from '../../agent/src/usage/reporter.js'
import { parsePublicKey } from '../../protocol/src/index.js'
import { dial, echoServer, startTestAgent } from '../kit/agent.js'
import { until } from '../kit/wait.js'
import { startTestControlPlane } from '../kit/cp.js'
import { HOUR, SECOND } from '../kit/fake-clock.js'
import { CLOCK_WATCH_EVERY_MS } from '../../platform/src/index.js'
import { captureLogger } from '../kit/logs.js'
import { metric, parseMetrics, scrape } from '../kit/metrics.js'
import { startTunnelPair } from '../kit/tunnel-pair.js'

const b64 = (s: string): string => Buffer.from(s).toString('base64')

async function post(base: string, path: string, body: unknown, auth: Record<string, string>): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}

async function get(base: string, path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`)
  return { status: res.status, body: await res.json() }
}

/** Reads from `s` until `n` bytes arrived. */
function readBytes(s: Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let got = 0
  return new Promise((resolve) => {
    const onData = (c: Buffer): void => {
      chunks.push(c)
      got += c.length
      if (got >= n) {
        s.off('data', onData)
        resolve(Buffer.concat(chunks))
      }
    }
    s.on('data', onData)
  })
}

t.test('an agent counts its API requests, KMS calls, tunnel traffic, control session and usage spool', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/keys', { name: 'records', type: 'aead' })).status, 201)
  t.equal((await h.api('POST', '/v1/keys/records/grants', { service: 'web', rights: ['encrypt'] })).status, 200)
  t.equal((await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const echo = await echoServer(t)
  const api = await startTestAgent(t, h, { service: 'api', expose: echo.address, api: true })
  const web = await startTestAgent(t, h, { service: 'web', connect: ['api'], api: true })
  await until(() => web.agent.keyset.reachablePeers(web.agent.keyset.pairs()[0]?.pairId ?? '').length === 1, 'web to learn the api agent')
  const base = web.agent.apiUrl as string

  t.same(await get(base, '/healthz'), { status: 200, body: { status: 'ok' } })
  t.same(await get(base, '/readyz'), { status: 200, body: { status: 'ready', checks: { tunnels: { status: 'ready' }, kms: { status: 'ready' } } } })
  const sealed = await post(base, '/v1/encrypt', { key: 'records', plaintext: b64('one') }, web.apiHeaders)
  t.equal(sealed.status, 200)
  t.equal((await post(base, '/v1/decrypt', { ciphertext: sealed.body.ciphertext }, web.apiHeaders)).status, 403, 'web may not decrypt')
  const batch = await post(base, '/v1/encrypt', { items: [{ key: 'records', plaintext: b64('a') }, { key: 'records', plaintext: b64('b') }, { key: 'nope!', plaintext: '' }] }, web.apiHeaders)
  t.same(batch.body.items.map((i: { ok: boolean }) => i.ok), [true, true, false])
  t.equal((await fetch(`${base}/v1/nothing-here`, { headers: web.apiHeaders })).status, 404)

  const s = await dial(web.agent, 'api')
  s.write('hello')
  t.equal((await readBytes(s, 5)).toString(), 'hello')
  const open = (await scrape(base)).series
  t.equal(metric(open, 'keymesh_agent_tunnels_open', { direction: 'outbound' }), 1)
  t.equal(metric(open, 'keymesh_agent_tunnels_open', { direction: 'inbound' }), 0)
  t.equal(metric((await scrape(api.agent.apiUrl as string)).series, 'keymesh_agent_tunnels_open', { direction: 'inbound' }), 1, 'the other side sees it inbound')
  t.equal(metric(open, 'keymesh_agent_tunnel_bytes_total', { direction: 'out' }), 5, 'bytes of an open tunnel show at once')
  t.equal(metric(open, 'keymesh_agent_tunnel_bytes_total', { direction: 'in' }), 5)
  s.end('world!')
  t.equal((await readBytes(s, 6)).toString(), 'world!')
  await until(() => web.agent.status().tunnels.open === 0, 'the tunnel to close')

  const m = await scrape(base)
  t.equal(m.status, 200)
  t.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  const series = m.series
  t.equal(metric(series, 'keymesh_agent_tunnels_open'), 0)
  t.equal(metric(series, 'keymesh_agent_tunnel_bytes_total', { direction: 'out' }), 11, 'closed tunnels keep their bytes in the total')
  t.equal(metric(series, 'keymesh_agent_tunnel_bytes_total', { direction: 'in' }), 11)
  t.equal(metric(series, 'keymesh_agent_kms_calls_total', { op: 'encrypt', outcome: 'ok' }), 3, 'the single call and the two valid batch items')
  t.equal(metric(series, 'keymesh_agent_kms_calls_total', { op: 'decrypt', outcome: 'deny' }), 1)
  t.equal(metric(series, 'keymesh_agent_kms_calls_total', { outcome: 'error' }), 0, 'an item that failed validation never became a call')
  t.equal(metric(series, 'keymesh_agent_api_requests_total', { method: 'POST', route: '/v1/encrypt', status: '200' }), 2)
  t.equal(metric(series, 'keymesh_agent_api_requests_total', { method: 'POST', route: '/v1/decrypt', status: '403' }), 1)
  t.equal(metric(series, 'keymesh_agent_api_requests_total', { route: '(unmatched)', status: '404' }), 1)
  t.equal(metric(series, 'keymesh_agent_api_requests_total', { route: '/readyz', status: '200' }), 1)
  t.equal(metric(series, 'keymesh_agent_control_connected'), 1)
  t.equal(metric(series, 'keymesh_agent_usage_spool_unacked_batches'), 0)
  t.ok(metric(series, 'keymesh_process_resident_memory_bytes') > 0, 'process metrics are included')

  // The control plane goes away: the session is down and usage waits in the spool.
  await h.cp.close()
  await until(() => web.agent.status().controlPlane.state !== 'connected', 'the control session to drop')
  h.clock.advance(2 * SECOND)
  await until(() => web.agent.status().usage.unackedBatches >= 1, 'a batch to be spooled')
  const away = (await scrape(base)).series
  t.equal(metric(away, 'keymesh_agent_control_connected'), 0)
  t.equal(metric(away, 'keymesh_agent_usage_spool_unacked_batches'), web.agent.status().usage.unackedBatches)
  t.ok(metric(away, 'keymesh_agent_usage_spool_unacked_bytes') > 0, 'the spooled batch has bytes')
  t.ok(metric(away, 'keymesh_agent_usage_spool_file_bytes') >= metric(away, 'keymesh_agent_usage_spool_unacked_bytes'))
  t.equal(metric(away, 'keymesh_agent_usage_events_dropped_total'), 0)
  const down = { status: 'not-ready', reason: 'the control plane session is down: KMS calls (/v1/encrypt …) answer 503 until it is back' }
  const both = { tunnels: { status: 'ready' }, kms: down }
  t.same(await get(base, '/readyz'), { status: 200, body: { status: 'ready', checks: both } }, 'still ready for tunnels: enrolled, with its key set')
  t.same(await get(base, '/readyz?check=tunnels'), { status: 200, body: { status: 'ready', checks: both } })
  t.same(await get(base, '/readyz?check=kms'), { status: 503, body: { ...down, checks: both } }, 'not ready for KMS calls')
  const unknown = await get(base, '/readyz?check=disk')
  t.equal(unknown.status, 400)
  t.match(unknown.body, { error: { code: 'AGENT_ERR_BAD_REQUEST', message: /check must be one of tunnels, kms/ } })

  // The wall clock steps back 3 h: a warning, and the counter by direction.
  t.equal(metric(away, 'keymesh_agent_clock_jumps_total', { direction: 'backward' }), 0)
  h.clock.jump(-3 * HOUR)
  h.clock.advance(CLOCK_WATCH_EVERY_MS)
  await until(async () => metric((await scrape(base)).series, 'keymesh_agent_clock_jumps_total', { direction: 'backward' }) === 1, 'the step back to be counted')
  t.equal(metric((await scrape(base)).series, 'keymesh_agent_clock_jumps_total', { direction: 'forward' }), 0)
  t.ok(web.logs.some((l) => /"level":40/.test(l) && /the wall clock stepped 3h0m0s back/.test(l) && /"stepMs":-10800000/.test(l)), 'logged at warn with its size')
})

t.test('readyz is 503 while a first enrolment waits, 200 once enrolled', async (t) => {
  const h = await startTestControlPlane(t)
  // A control plane that accepts TCP connections and never answers.
  const held: Socket[] = []
  const blackHole = createServer((s) => void held.push(s))
  blackHole.listen(0, '127.0.0.1')
  await once(blackHole, 'listening')
  t.teardown(() => {
    for (const s of held) s.destroy()
    blackHole.close()
  })
  const dir = mkdtempSync(join(tmpdir(), 'km-ready-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const socketPath = join(dir, 'api.sock')
  const logs: string[] = []
  const config: AgentConfig = {
    cpUrls: [`http://127.0.0.1:${(blackHole.address() as { port: number }).port}`, h.cp.url],
    cpKey: parsePublicKey(h.identityPub),
    service: 'web',
    joinToken: (await h.api('POST', '/v1/join-tokens', { service: 'web' })).body.token,
    stateDir: join(dir, 'state'),
    tunnelListen: { host: '127.0.0.1', port: 0 },
    connect: [],
    api: { socketPath },
    logLevel: 'debug',
    limits: { ...DEFAULT_LIMITS, handshakeTimeoutMs: SECOND, reconnectMinMs: 100, reconnectMaxMs: 200 },
  }
  const starting = startAgent(config, { logger: captureLogger(logs).logger, clock: h.clock })
  starting.then((a) => t.teardown(() => a.close()), () => {})

  await until(() => held.length === 1, 'the agent to reach the silent control plane')
  const waiting = await unixGet(socketPath, '/readyz')
  t.equal(waiting.status, 503)
  t.same(waiting.body, { ...{ status: 'not-ready', reason: 'not enrolled yet: waiting for the control plane to accept the join token' }, checks: { tunnels: { status: 'not-ready', reason: 'not enrolled yet: waiting for the control plane to accept the join token' }, kms: { status: 'not-ready', reason: 'not enrolled yet: waiting for the control plane to accept the join token' } } })
  t.same(await unixGet(socketPath, '/healthz'), { status: 200, body: { status: 'ok' } }, 'alive while it waits')

  // Give up on the silent one; the next URL enrols the agent.
  h.clock.advance(SECOND)
  await until(() => logs.some((l) => /control plane not reachable; retrying/.test(l)), 'the agent to back off')
  h.clock.advance(200)
  const agent = await starting
  t.equal(agent.status().ready, true)
  t.same(await unixGet(socketPath, '/readyz'), { status: 200, body: { status: 'ready', checks: { tunnels: { status: 'ready' }, kms: { status: 'ready' } } } })
})

t.test('readyz is 503 after a restart with the control plane gone and no cached key set', async (t) => {
  const h = await startTestControlPlane(t)
  const first = await startTestAgent(t, h, { service: 'web', api: true })
  await first.agent.close()
  rmSync(join(first.stateDir, KEYSET_CACHE_FILE))
  await h.cp.close()
  const again = await startTestAgent(t, h, { service: 'web', stateDir: first.stateDir, enroll: false, api: true })
  const base = again.agent.apiUrl as string
  const r = await get(base, '/readyz')
  t.equal(r.status, 503)
  t.same(r.body, { ...{ status: 'not-ready', reason: 'no key set yet: the control plane has not sent one and there is no cached set' }, checks: { tunnels: { status: 'not-ready', reason: 'no key set yet: the control plane has not sent one and there is no cached set' }, kms: { status: 'not-ready', reason: 'no key set yet: the control plane has not sent one and there is no cached set' } } })
  t.equal(metric((await scrape(base)).series, 'keymesh_agent_control_connected'), 0)
  t.same(agentReadiness(true, true), { ready: true })
})

t.test('tunnel handshake failures and refusals are counted by code, unknown codes as OTHER', async (t) => {
  const p = await startTunnelPair(t)
  const usage: UsageStats = { pendingEvents: 0, unackedBatches: 0, unackedBytes: 0, spoolBytes: 0, dropped: 0, nextSeq: 1, lostBatches: 0, recoveredBatches: 0, lossReportsPending: 0 }
  const metricsOf = (svc: typeof p.a.svc): AgentMetrics => new AgentMetrics({ tunnels: () => svc.stats(), usage: () => usage, controlConnected: () => false })
  const ma = metricsOf(p.a.svc)
  const mb = metricsOf(p.b.svc)

  // A pair key that does not match: both sides fail the handshake.
  const wrong = p.entryA()
  for (const v of wrong.versions) v.key = new Uint8Array(32).fill(9)
  p.a.keyset.update(wrong)
  p.clientNow()
  await p.b.cap.usageEvent((e) => e.kind === 'handshake.fail')
  await p.a.cap.usageEvent((e) => e.kind === 'handshake.fail')
  p.a.keyset.update(p.entryA())

  // A peer that closes before its first message with a made-up code: refused before
  // authentication, so counted there (and summarised), never a usage event.
  const ws = new WebSocket(p.bUrl, { perMessageDeflate: false })
  ws.on('error', () => {})
  await once(ws, 'open')
  ws.close(4999, 'PROTO_ERR_MADE_UP_BY_A_PEER')
  await until(() => p.b.svc.stats().preauthRefusalsByCode['OTHER'] === 1, 'the close before a first message to be counted')

  // B no longer accepts A: a refusal by policy, decided from the hello's claims before
  // any Diffie-Hellman, so counted as a refusal before authentication.
  p.mayAccept = false
  p.push()
  p.clientNow()
  await until(() => p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_NO_INTENTION'] === 1, 'the refusal by policy to be counted')

  const b = parseMetrics((await mb.text()).body)
  t.equal(metric(b, 'keymesh_agent_tunnel_handshake_failures_total', { code: 'PROTO_ERR_DECRYPT' }), 1)
  t.equal(metric(b, 'keymesh_agent_tunnel_preauth_refusals_total', { code: 'OTHER' }), 1, 'a code from no table is not a label')
  t.notMatch((await mb.text()).body, /MADE_UP/, 'nor anywhere in the metrics')
  t.equal(metric(b, 'keymesh_agent_tunnel_preauth_refusals_total', { code: 'AGENT_ERR_NO_INTENTION' }), 1)
  t.equal(metric(b, 'keymesh_agent_tunnels_open'), 0)
  const a = parseMetrics((await ma.text()).body)
  t.equal(metric(a, 'keymesh_agent_tunnel_handshake_failures_total', { code: 'PROTO_ERR_DECRYPT' }), 1)
  t.equal(metric(a, 'keymesh_agent_tunnel_bytes_total'), 0, 'nothing went through')
})

t.test('KMS outcomes, and a throwing onAnswered hook on the local API', async (t) => {
  t.equal(kmsOutcome(agentError('AGENT_ERR_CP_UNREACHABLE')), 'error')
  t.equal(kmsOutcome(new Error('x')), 'error')
  const logs: string[] = []
  const api = await AgentApiServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    status: () => ({}) as never,
    logger: pino({ level: 'info' }, { write: (s: string) => void logs.push(s) }),
    routes: [{ method: 'GET', path: '/raw', open: true, handler: async () => ({ raw: { contentType: 'text/plain', body: 'hi' } }) }],
    token: 'not-sent-the-route-is-open',
    onAnswered: () => {
      throw new Error('hook broke')
    },
  })
  t.teardown(() => api.close())
  const res = await fetch(`${api.url}/raw`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/plain')
  t.equal(await res.text(), 'hi')
  t.match(logs.join(''), /onAnswered failed/)
})

function unixGet(socketPath: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }))
    })
    req.on('error', reject)
    req.end()
  })
}
