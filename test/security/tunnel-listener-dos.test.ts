// Issue 12, item 1: one source that holds many idle WebSockets and replays a genuine
// first message cannot lock legitimate peers out of an agent's tunnel listener; its
// refusals are counted in the metric and summarised in the log, never reported one
// usage event each.
import t from 'tap'
import { randomBytes } from 'node:crypto'

import { AGENT_ERRORS, createAgentMetrics } from '../../agent/src/index.js'
import { attempts, attempt, dropAll, rawUpgrade, resetByServer, type Held, replayFirstMessage } from '../kit/attacker.js'
import { REFUSED_CLOSE_MS } from '../../platform/src/index.js'
import { metric, parseMetrics } from '../kit/metrics.js'
import { echoWorks, helloOf, startTunnelPair, type TunnelPair } from '../kit/tunnel-pair.js'

const SUMMARY = 'tunnel connections refused before authentication'
const usage = { pendingEvents: 0, unackedBatches: 0, unackedBytes: 0, spoolBytes: 0, dropped: 0, nextSeq: 1, lostBatches: 0, recoveredBatches: 0, lossReportsPending: 0 }

async function refusals(p: TunnelPair): Promise<(code: string) => number> {
  const m = await createAgentMetrics({ tunnels: () => p.b.svc.stats(), usage: () => usage, controlConnected: () => false })
  const series = parseMetrics((await m.text()).body)
  return (code) => metric(series, 'keymesh_agent_tunnel_preauth_refusals_total', { code })
}

t.test('300 idle sockets and replayed first messages from one source; a legitimate tunnel still opens', async (t) => {
  const p = await startTunnelPair(t)
  const { maxIdlePerSource, helloTimeoutMs, handshakeTimeoutMs } = p.limits
  const flood = await attempts(p.bUrl, 300)
  t.teardown(() => dropAll(flood.held))
  t.equal(flood.held.length, maxIdlePerSource, 'the source holds its share of idle slots')
  t.same(flood.refused, { AGENT_ERR_TUNNEL_SOURCE_LIMIT: 300 - maxIdlePerSource }, 'the rest are refused with 429 before the upgrade')
  t.equal(p.b.svc.stats().awaitingHello, maxIdlePerSource)

  // A genuine first message, then 29 replays of it on the attacker's idle sockets.
  const hello = helloOf(p)
  const replays = await replayFirstMessage(flood.held, hello, 29)
  for (const r of replays) t.same(await r.closed, { code: AGENT_ERRORS.AGENT_ERR_TUNNEL_REPLAY.closeCode, reason: 'AGENT_ERR_TUNNEL_REPLAY' })
  t.ok(replays.every((r) => r.messages.length === 0), 'no replay got a message 2')
  t.equal(p.b.svc.stats().pending, 1, 'only the first use holds a pending slot')

  t.ok(await echoWorks(p), 'a legitimate tunnel opens while the attacker holds its sockets')
  t.ok(await echoWorks(p), 'and another')

  p.clock.advance(helloTimeoutMs)
  const idle = flood.held.slice(30)
  for (const h of idle) t.equal((await h.closed).code, AGENT_ERRORS.AGENT_ERR_HELLO_TIMEOUT.closeCode)
  t.equal(p.b.svc.stats().awaitingHello, 0, 'idle sockets are cut after the hello timeout, not the handshake timeout')

  // Refilled at once: the same share again, and the legitimate peer still gets in.
  const again = await attempts(p.bUrl, 300)
  t.teardown(() => dropAll(again.held))
  t.equal(again.held.length, maxIdlePerSource)
  t.ok(await echoWorks(p), 'a legitimate tunnel opens after the refill')
  p.clock.advance(handshakeTimeoutMs)

  const count = await refusals(p)
  t.equal(count('AGENT_ERR_TUNNEL_SOURCE_LIMIT'), 2 * (300 - maxIdlePerSource), 'every refusal is in the metric')
  t.equal(count('AGENT_ERR_TUNNEL_REPLAY'), 29)
  t.equal(count('AGENT_ERR_HELLO_TIMEOUT'), 2 * maxIdlePerSource - 30)
  const summaries = p.b.cap.logs.filter((l) => l['msg'] === SUMMARY)
  t.equal(summaries.length, 3, 'one log line per source and code within the minute')
  t.ok(summaries.every((l) => l['source'] === '127.0.0.2' && l['count'] === 1))
  const preauthCodes = ['AGENT_ERR_TUNNEL_SOURCE_LIMIT', 'AGENT_ERR_TUNNEL_REPLAY', 'AGENT_ERR_HELLO_TIMEOUT']
  t.equal(p.b.cap.usage.filter((e) => preauthCodes.includes(e.reason ?? '')).length, 0, 'no usage event for any of them')
  p.clock.advance(60_000)
  const later = p.b.cap.logs.filter((l) => l['msg'] === SUMMARY)
  t.equal(later.length, 6, 'then one summary each, with the count')
  t.equal(later.filter((l) => l['code'] === 'AGENT_ERR_TUNNEL_SOURCE_LIMIT').reduce((n, l) => n + (l['count'] as number), 0), 2 * (300 - maxIdlePerSource))
})

t.test('under load a source past its burst is refused (AGENT_ERR_TUNNEL_RATE); authenticated handshakes give their token back', async (t) => {
  const p = await startTunnelPair(t, { limits: { loadConnectionsPerSecond: 1, sourceConnectionsPerSecond: 1, sourceConnectionBurst: 2 } })
  const outcomes = []
  for (let i = 0; i < 6; i++) outcomes.push(await attempt(p.bUrl))
  const held = outcomes.flatMap((o) => ('held' in o ? [o.held] : []))
  t.teardown(() => dropAll(held))
  t.equal(held.length, 3, 'one connection within the load rate, then the burst of two')
  t.same(outcomes.filter((o) => 'refused' in o).map((o) => ('refused' in o ? o.refused : undefined)), [
    { status: 429, code: 'AGENT_ERR_TUNNEL_RATE' },
    { status: 429, code: 'AGENT_ERR_TUNNEL_RATE' },
    { status: 429, code: 'AGENT_ERR_TUNNEL_RATE' },
  ])
  for (let i = 0; i < 5; i++) t.ok(await echoWorks(p), `legitimate tunnel ${i + 1} of 5, past a burst of 2`)
  t.equal((await refusals(p))('AGENT_ERR_TUNNEL_RATE'), 3)
})

t.test('when the idle table is full, the oldest idle socket is closed to a newcomer', async (t) => {
  const p = await startTunnelPair(t, { limits: { maxIdleConnections: 4 } })
  const flood = await attempts(p.bUrl, 4)
  t.teardown(() => dropAll(flood.held))
  t.equal(flood.held.length, 4)
  t.ok(await echoWorks(p), 'the legitimate peer gets in')
  const closed = await Promise.race(flood.held.map((h) => h.closed))
  t.same(closed, { code: AGENT_ERRORS.AGENT_ERR_TUNNEL_LIMIT.closeCode, reason: 'AGENT_ERR_TUNNEL_LIMIT' }, 'an attacker socket was evicted')
  t.equal((await refusals(p))('AGENT_ERR_TUNNEL_LIMIT'), 1)
})

t.test('under load, a first message that fails the screen or the handshake is counted, not reported', async (t) => {
  const p = await startTunnelPair(t, { limits: { loadConnectionsPerSecond: 1 } })
  const a = await attempts(p.bUrl, 5)
  t.teardown(() => dropAll(a.held))
  const [f1, f2, ...rest] = a.held as [Held, Held, ...Held[]]
  for (const h of rest) h.ws.send(helloOf(p, { keyVersion: 99 }))
  for (const h of rest) t.equal((await h.closed).reason, 'AGENT_ERR_KEY_VERSION', 'still refused with its code')
  // A forged hello: the right preamble, random bytes for KK message 1 (B does the DH).
  for (const h of [f1, f2]) {
    const forged = Buffer.from(helloOf(p))
    forged.set(randomBytes(48), forged.length - 48)
    h.ws.send(forged)
  }
  for (const h of [f1, f2]) t.equal((await h.closed).reason, 'PROTO_ERR_DECRYPT')
  const count = await refusals(p)
  t.equal(count('AGENT_ERR_KEY_VERSION'), 3)
  t.equal(count('PROTO_ERR_DECRYPT'), 2)
  t.equal(p.b.cap.usage.filter((e) => e.reason === 'AGENT_ERR_KEY_VERSION' || e.reason === 'PROTO_ERR_DECRYPT').length, 0, 'no usage events')
  t.equal(p.b.svc.stats().handshakeFailures, 0)
  t.ok(await echoWorks(p), 'a legitimate tunnel still opens')
})

t.test('shutdown closes connections still waiting for their first message (AGENT_ERR_CLOSED)', async (t) => {
  const p = await startTunnelPair(t)
  const a = await attempts(p.bUrl, 3)
  t.teardown(() => dropAll(a.held))
  await p.b.svc.close()
  for (const h of a.held) t.same(await h.closed, { code: AGENT_ERRORS.AGENT_ERR_CLOSED.closeCode, reason: 'AGENT_ERR_CLOSED' })
})

t.test('at maxTunnels a new connection is closed at once (AGENT_ERR_TUNNEL_LIMIT)', async (t) => {
  const p = await startTunnelPair(t, { limits: { maxTunnels: 1 } })
  const c = await p.client()
  c.write('hold')
  await new Promise((resolve) => c.once('data', resolve))
  const a = await attempts(p.bUrl, 1)
  t.teardown(() => dropAll(a.held))
  t.same(await (a.held[0] as Held).closed, { code: AGENT_ERRORS.AGENT_ERR_TUNNEL_LIMIT.closeCode, reason: 'AGENT_ERR_TUNNEL_LIMIT' })
  t.equal((await refusals(p))('AGENT_ERR_TUNNEL_LIMIT'), 1)
  c.destroy()
})

const ATTACKERS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']

/** Resolves once `h` got a message (its handshake is stalled after message 2) or was closed. */
const answeredOrClosed = (h: Held): Promise<unknown> =>
  h.messages.length > 0 ? Promise.resolve() : Promise.race([h.closed, new Promise((resolve) => h.ws.once('message', resolve))])

t.test('five sources that stall handshakes after their first message cannot fill the pending table', async (t) => {
  // 127.0.0.0/8 shares one /24, the legitimate peer's too: the prefix cap is left out of the way here (source-limiter.test.ts covers it).
  const p = await startTunnelPair(t, { limits: { maxPendingHandshakes: 8, maxPendingPerSource: 4, maxPendingPerPrefix: 100 } })
  const held: Held[] = []
  t.teardown(() => dropAll(held))
  for (const address of ATTACKERS) held.push(...(await attempts(p.bUrl, 4, address)).held)
  t.equal(held.length, 20)
  for (const h of held) h.ws.send(helloOf(p))
  await Promise.all(held.map(answeredOrClosed))
  const evicted = await Promise.all(held.filter((h) => h.ws.readyState !== h.ws.OPEN).map((h) => h.closed))
  t.same(evicted.map((c) => c.reason), Array(12).fill('AGENT_ERR_TUNNEL_LIMIT'), 'each newcomer evicted the oldest (AGENT_ERR_TUNNEL_LIMIT)')
  while (p.b.svc.stats().pending > 8) await new Promise((resolve) => setImmediate(resolve))
  t.pass('the table holds 8 stalled handshakes')
  t.ok(await echoWorks(p), 'a legitimate tunnel still opens')
  t.ok(await echoWorks(p), 'and another')
  t.ok(p.b.svc.stats().pending <= 8)
})

t.test('a refused client that never closes its side does not keep its socket', async (t) => {
  const p = await startTunnelPair(t)
  const wrongPath = await rawUpgrade(p.bUrl.replace('/v1/tunnel', '/nope'))
  t.teardown(() => wrongPath.socket.destroy())
  t.match(wrongPath.head, /^HTTP\/1.1 404/)
  await wrongPath.ended
  await resetByServer(wrongPath.socket)
  t.pass('an HTTP refusal destroys the socket once written')

  const silent = await rawUpgrade(p.bUrl)
  t.teardown(() => silent.socket.destroy())
  t.match(silent.head, /^HTTP\/1.1 101/)
  p.clock.advance(p.limits.helloTimeoutMs)
  await silent.more
  t.pass('refused with a close frame (AGENT_ERR_HELLO_TIMEOUT), which it never answers')
  p.clock.advance(REFUSED_CLOSE_MS)
  await silent.ended
  await resetByServer(silent.socket)
  t.pass('the socket is cut a second later (on the clock), not after ws’s 30 s')
})

t.test('below the load threshold, forged first messages from one source write one usage event, the rest are counted', async (t) => {
  const p = await startTunnelPair(t)
  const a = await attempts(p.bUrl, 6)
  t.teardown(() => dropAll(a.held))
  for (const h of a.held) {
    const forged = Buffer.from(helloOf(p))
    forged.set(randomBytes(48), forged.length - 48)
    h.ws.send(forged)
  }
  for (const h of a.held) t.equal((await h.closed).reason, 'PROTO_ERR_DECRYPT', 'each is refused with its code')
  t.equal(p.b.cap.usage.filter((e) => e.reason === 'PROTO_ERR_DECRYPT').length, 1, 'the first is a usage event, with the facts its hello claimed')
  t.equal((await refusals(p))('PROTO_ERR_DECRYPT'), 5, 'the other five are counted for the summary')
  t.ok(await echoWorks(p), 'a legitimate tunnel still opens')
})
