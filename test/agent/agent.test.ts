// The whole sidecar against a real control plane: enrollment, a tunnel between two
// services, rotation under load, revocation, a restart from the cached key set while
// the control plane is down, usage delivered exactly once when it is back, and a
// damaged usage spool mended: its intact batches delivered, its loss audited; and a
// pinned key that is not the control plane's.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { join } from 'node:path'

import { nodeSuite, pairId, parsePublicKey, publicKeyFingerprint } from '../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import { dial, echoServer, sinkServer, startTestAgent } from '../kit/agent.js'
import { until } from '../kit/wait.js'
import { SECOND } from '../kit/fake-clock.js'
import { metric, parseMetrics, scrape } from '../kit/metrics.js'
import { SPOOL_FILE } from '../../agent/src/usage/spool.js'
import { encodeLine, headerLine } from '../../agent/src/usage/spool-format.js'

const PAIR = pairId('web', 'api')

function readAll(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)))
    s.once('error', reject)
  })
}

async function usageEntries(h: TestControlPlane): Promise<any[]> {
  const out: any[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) if ((e as any).action === 'agent.usage') out.push(e)
  return out
}

/** Two agents, web → api allowed, api exposing `expose`. */
async function mesh(t: any, h: TestControlPlane, expose: { host: string; port: number }) {
  t.equal((await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const api = await startTestAgent(t, h, { service: 'api', expose, api: true })
  const web = await startTestAgent(t, h, { service: 'web', connect: ['api'], api: true })
  await until(() => web.agent.keyset.reachablePeers(PAIR).length === 1, 'web to learn the api agent')
  return { api, web }
}

t.test('two agents carry a connection between two services and report it for audit', async (t) => {
  const h = await startTestControlPlane(t)
  const echo = await echoServer(t)
  const { api, web } = await mesh(t, h, echo.address)

  const s = await dial(web.agent, 'api')
  const reply = readAll(s)
  s.end('hello through the tunnel')
  t.equal((await reply).toString(), 'hello through the tunnel', 'the echo came back')
  t.equal(echo.connections, 1)

  const status = web.agent.status()
  t.match(status, { ready: true, service: 'web', controlPlane: { state: 'connected' }, keySet: { source: 'control-plane' } })
  t.match(status.pairs, [{ pairId: PAIR, peerService: 'api', currentVersion: 1, mayInitiate: true, mayAccept: false }])
  const res = await fetch(`${api.agent.apiUrl}/v1/status`, { headers: api.apiHeaders })
  t.match(await res.json(), { ready: true, service: 'api', pairs: [{ pairId: PAIR, mayAccept: true }] })

  await until(() => web.agent.status().tunnels.open === 0 && api.agent.status().tunnels.open === 0, 'tunnels to close')
  h.clock.advance(2 * SECOND)
  await until(() => web.agent.status().usage.unackedBatches === 0 && api.agent.status().usage.unackedBatches === 0, 'usage acks')
  const usage = await usageEntries(h)
  t.equal(usage.length, 2, 'one batch from each agent')
  for (const u of usage) {
    t.match(u.details, { kinds: { 'conn.open': 1, 'conn.close': 1 }, keyVersions: [`${PAIR}@1`] })
    t.ok(u.details.bytesIn + u.details.bytesOut >= 2 * 'hello through the tunnel'.length, 'bytes are counted')
  }
})

t.test('a checksummed stream survives three pair-key rotations without a drop', async (t) => {
  const h = await startTestControlPlane(t)
  const sink = await sinkServer(t)
  const { api, web } = await mesh(t, h, sink.address)
  const s = await dial(web.agent, 'api')
  const hash = createHash('sha256')
  const total = 24 * 1024 * 1024
  const chunk = 256 * 1024
  let sent = 0
  // The writer streams without stopping, except that it waits at each quarter
  // until that rotation has been requested: so every re-handshake runs while
  // data is in flight in both the old and the new keys.
  const requested: Array<() => void> = []
  const gates = [1, 2, 3].map(() => new Promise<void>((r) => requested.push(r)))
  const writer = (async () => {
    while (sent < total) {
      const quarter = Math.floor((sent * 4) / total)
      if (quarter >= 1 && quarter <= 3) await gates[quarter - 1]
      const c = randomBytes(chunk)
      hash.update(c)
      sent += c.length
      if (!s.write(c)) await new Promise((r) => s.once('drain', r))
    }
  })()
  for (let rotation = 1; rotation <= 3; rotation++) {
    await until(() => sent >= (rotation * total) / 4, `quarter ${rotation} written`)
    t.equal((await h.api('POST', '/v1/pairs/web/api/rotate')).status, 200)
    requested[rotation - 1]?.()
    await until(() => web.agent.keyset.current(PAIR)?.version === rotation + 1 && api.agent.keyset.current(PAIR)?.version === rotation + 1, `version ${rotation + 1} at both agents`)
    // Initiators move live tunnels at the first sweep after a short settling time (tunnel/registry.ts).
    h.clock.advance(2 * SECOND)
    await until(() => web.agent.status().pairs[0]?.tunnelKeyVersions?.join() === String(rotation + 1), `tunnel on version ${rotation + 1}`)
  }
  await writer
  s.end()
  const got = await sink.next()
  t.equal(got.bytes, total, 'every byte arrived once')
  t.equal(got.sha256, hash.digest('hex'), 'the checksum matches')
  t.equal(sink.connections, 1, 'one connection from start to end: nothing was dropped and redialled')
  t.match(api.agent.status().pairs, [{ currentVersion: 4 }])
})

t.test("a revoked agent's tunnels end at once", async (t) => {
  const h = await startTestControlPlane(t)
  const echo = await echoServer(t)
  const { api, web } = await mesh(t, h, echo.address)
  const s = await dial(web.agent, 'api')
  s.write('ping')
  await new Promise((r) => s.once('data', r))
  const closed = new Promise((r) => s.once('close', r))
  s.on('error', () => {})
  const id = web.agent.status().agentId
  t.equal((await h.api('POST', `/v1/agents/${id}/revoke`)).status, 200)
  await closed
  t.pass('the client connection closed')
  await until(() => api.agent.status().tunnels.open === 0, 'api to drop the tunnel')
  t.ok(api.logs.some((l) => l.includes('AGENT_ERR_PEER_REVOKED') || l.includes('AGENT_ERR_KEY_EXPIRED')), 'the api agent logged why')
})

t.test('a restart needs no token and serves from the cached key set while the control plane is down; usage arrives once later', async (t) => {
  const h = await startTestControlPlane(t)
  const echo = await echoServer(t)
  const first = await mesh(t, h, echo.address)
  const apiDir = first.api.stateDir
  const webDir = first.web.stateDir
  const tunnelPort = first.api.agent.tunnelAddress.port
  await first.web.agent.close()
  await first.api.agent.close()
  const cpPort = Number(new URL(h.cp.url).port)
  await h.cp.close()

  const api = await startTestAgent(t, h, { service: 'api', stateDir: apiDir, enroll: false, expose: echo.address, tunnelPort })
  const web = await startTestAgent(t, h, { service: 'web', stateDir: webDir, enroll: false, connect: ['api'] })
  t.match(web.agent.status(), { ready: true, keySet: { source: 'cache' } })
  t.not(web.agent.status().controlPlane.state, 'connected')
  const s = await dial(web.agent, 'api')
  const reply = readAll(s)
  s.end('works offline')
  t.equal((await reply).toString(), 'works offline')

  // Usage spooled while the control plane was away is delivered once it is back.
  h.clock.advance(2 * SECOND)
  t.ok(web.agent.status().usage.unackedBatches >= 1, 'web holds a spooled batch')
  // The control plane's 2 s deadline for a first message is not under test here: the
  // clock moves while the agents back off, and a busy machine may hold a hello longer.
  const back = await startTestControlPlane(t, { dataDir: h.dataDir, port: cpPort, clock: h.clock, agentEndpoint: { helloTimeoutMs: 60_000 } })
  // The clock moves only while an agent waits out its backoff, never while an attempt
  // is in flight: on a busy machine a handshake may take many turns, and moving the
  // clock under it would time it out.
  const states = () => [web, api].map((a) => a.agent.status().controlPlane.state)
  await until(() => {
    if (states().includes('backoff')) h.clock.advance(1 * SECOND)
    return states().every((s) => s === 'connected')
  }, 'reconnect')
  await until(() => web.agent.status().usage.unackedBatches === 0 && api.agent.status().usage.unackedBatches === 0, 'spool drained')
  const usage = await usageEntries(back)
  const seqs = usage.map((u) => `${u.details.agentId}#${u.details.seq}`)
  t.equal(new Set(seqs).size, seqs.length, 'no batch recorded twice')
  t.ok(usage.some((u) => u.details.kinds['conn.open'] >= 1 && u.details.agentId === web.agent.status().agentId), "web's offline connection is in the audit log")
})

t.test('a damaged usage spool: every intact batch is delivered once, the loss is audited as usage.loss, and status and metrics show it', async (t) => {
  const h = await startTestControlPlane(t)
  const first = await startTestAgent(t, h, { service: 'web', api: true })
  const agentId = first.agent.status().agentId
  await first.agent.close()
  // Three batches spooled and not acknowledged when the agent stopped; the second one's line is then damaged on disk.
  const path = join(first.stateDir, SPOOL_FILE)
  const next = Number(/^keymesh-usage-spool\/1 (\d+) /.exec(readFileSync(path, 'utf8'))?.[1])
  const event = { kind: 'conn.reject', at: h.clock.now(), peerService: 'api', reason: 'AGENT_ERR_NO_INTENTION' }
  const lines = [0, 1, 2].map((i) => encodeLine(`B ${next + i} ${JSON.stringify([event])}`))
  lines[1]![20] = lines[1]![20]! ^ 0x01
  writeFileSync(path, Buffer.concat([headerLine(next), ...lines]))

  const web = await startTestAgent(t, h, { service: 'web', stateDir: first.stateDir, enroll: false, api: true })
  await until(() => web.agent.status().usage.unackedBatches === 0, 'the spool to drain')
  t.match(web.agent.status().usage, { lostBatches: 1, recoveredBatches: 2, lossReportsPending: 0 })
  const entries: any[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store, { actor: `agent:${agentId}` })) entries.push(e)
  t.same(entries.filter((e) => e.action === 'agent.usage').map((e) => e.details.seq), [next, next + 2], 'the intact batches, each once')
  const loss = entries.filter((e) => e.action === 'usage.loss')
  t.equal(loss.length, 1, 'the loss is audited once')
  t.match(loss[0], { outcome: 'error', reason: new RegExp(`1 unacknowledged batch\\(es\\) could not be read \\(seq ${next + 1}\\)`), details: { agentId, service: 'web', batches: 1, lines: 1, lostSeqs: [next + 1], seq: next + 3 } })
  t.equal(readdirSync(first.stateDir).filter((f) => f.includes('.damaged-')).length, 0, 'nothing set aside')
  t.equal(readdirSync(first.stateDir).filter((f) => f.includes('.unreadable-')).length, 1, 'the unreadable line kept for inspection')
  const agentMetrics = parseMetrics(await (await fetch(`${web.agent.apiUrl}/metrics`)).text())
  t.equal(metric(agentMetrics, 'keymesh_agent_usage_lost_batches_total'), 1)
  t.equal(metric(agentMetrics, 'keymesh_agent_usage_recovered_batches_total'), 2)
  t.equal(metric(agentMetrics, 'keymesh_agent_usage_loss_reports_pending'), 0)
  const cpMetrics = (await scrape(h.cp.url)).series
  t.equal(metric(cpMetrics, 'keymesh_cp_usage_lost_batches_total'), 1)
  t.equal(metric(cpMetrics, 'keymesh_cp_operations_total', { operation: 'usage.loss', outcome: 'error' }), 1)
})

t.test('a restarted peer agent takes new tunnels once it is back with the control plane (peer.up), the clock standing still', async (t) => {
  const h = await startTestControlPlane(t)
  const echo = await echoServer(t)
  const { api, web } = await mesh(t, h, echo.address)
  // 'ping' back, or how the connection was refused (a reset may come before the connect completes).
  const roundTrip = async (): Promise<string> => {
    try {
      const s = await dial(web.agent, 'api')
      const reply = readAll(s)
      s.end('ping')
      return (await reply).toString()
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? 'error'
    }
  }
  t.equal(await roundTrip(), 'ping')
  const tunnelPort = api.agent.tunnelAddress.port
  await api.agent.close()
  t.equal(await roundTrip(), 'ECONNRESET', 'api down: refused, and marked unreachable')
  t.equal(await roundTrip(), 'ECONNRESET', 'the mark holds while the clock stands still (no probe is due)')

  // The same agent (state dir, tunnel port) starts again: it listens, then connects.
  await startTestAgent(t, h, { service: 'api', stateDir: api.stateDir, enroll: false, expose: echo.address, tunnelPort })
  const heard = (): boolean => web.logs.some((l) => l.includes('peer agent connected to the control plane; dialing it again'))
  await until(heard, 'web to hear that api is back (peer.up)')
  t.equal(await roundTrip(), 'ping', 'the next tunnel reaches the restarted agent, 0 ms of agent time after it connected')
  t.equal(echo.connections, 2)
})

t.test('a config built in code cannot put the API on a non-loopback address without apiAllowRemote', async (t) => {
  const { startAgent, DEFAULT_LIMITS } = await import('../../agent/src/index.js')
  const { pino } = await import('pino')
  const config = {
    cpUrls: ['http://127.0.0.1:1'], cpKey: new Uint8Array(32), service: 'web', stateDir: t.testdir(),
    tunnelListen: { host: '127.0.0.1', port: 0 }, connect: [], api: { host: '0.0.0.0', port: 0 }, logLevel: 'silent', limits: DEFAULT_LIMITS,
  }
  await t.rejects(startAgent(config, { logger: pino({ level: 'silent' }) }), { code: 'AGENT_ERR_CONFIG', message: /not a loopback address; add --api-allow-remote/ })
})

t.test('a pinned key that is not the control plane\'s: fatal for an agent never enrolled, retried by an enrolled one', async (t) => {
  const h = await startTestControlPlane(t)
  const other = await startTestControlPlane(t, { clock: h.clock })
  const theirs = publicKeyFingerprint(nodeSuite, parsePublicKey(other.identityPub))
  const pinned = publicKeyFingerprint(nodeSuite, parsePublicKey(h.identityPub))
  // Never enrolled: the start fails, naming both keys.
  await t.rejects(startTestAgent(t, h, { service: 'web', cpUrls: [other.cp.url] }), {
    code: 'AGENT_ERR_CP_KEY_MISMATCH',
    message: new RegExp(`has key ${theirs}, this agent pins ${pinned}: give the agent that control plane's DATA_DIR/identity.pub as --cp-key-file`),
  })
  // Enrolled with h, then pointed at the other installation: it starts (from its cache) and keeps trying.
  const enrolled = await startTestAgent(t, h, { service: 'web' })
  await enrolled.agent.close()
  const again = await startTestAgent(t, h, { service: 'web', stateDir: enrolled.stateDir, enroll: false, cpUrls: [other.cp.url] })
  await until(() => again.agent.status().controlPlane.lastError === 'AGENT_ERR_CP_KEY_MISMATCH', 'the mismatch to be found')
  const mismatches = (): number => again.logs.filter((l) => l.includes('"code":"AGENT_ERR_CP_KEY_MISMATCH"')).length
  const seen = mismatches()
  await until(() => {
    if (again.agent.status().controlPlane.state === 'backoff') h.clock.advance(SECOND)
    return mismatches() > seen
  }, 'another attempt, and the mismatch said again')
  t.match(again.agent.status(), { ready: true, keySet: { source: 'cache' } })
})
