// The tunnel service as agent.ts sees it: outbound policy and peer choice
// (dialer.ts), limits, stats, start-up failures and shutdown (service.ts,
// listener.ts).
import t from 'tap'
import { once } from 'node:events'
import { createServer, connect, type Server } from 'node:net'
import { pino } from 'pino'
import { WebSocket } from 'ws'

import { KeySet } from '../../../agent/src/keyset.js'
import { TunnelService } from '../../../agent/src/tunnel/service.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { PROTO_ERRORS, isKeymeshError } from '../../../protocol/src/index.js'
import { formatPublicKey, newAgentId } from '../../../protocol/src/index.js'
import { FakeClock } from '../../kit/fake-clock.js'
import { config, echoWorks, helloOf, outcome, startTunnelPair, type Tap, type TunnelPair } from '../../kit/tunnel-pair.js'
import { DEFAULT_LIMITS } from '../../../agent/src/config.js'
import { AGENT_ERRORS } from '../../../agent/src/errors.js'
import { until } from '../../kit/wait.js'
import { PROBE_INTERVAL_MS } from '../../../agent/src/tunnel/dialer.js'
import { tcpProxy, type TcpProxy } from '../../kit/tcp-proxy.js'

const unreachableLogs = (p: TunnelPair): number => p.a.cap.logs.filter((l) => l['msg'] === 'peer agent unreachable; trying the next').length

async function listening(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as { port: number }).port
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer()
  const port = await listening(s)
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

function deadPeer(port: number) {
  return { agentId: newAgentId(nodeSuite.randomBytes), staticKey: formatPublicKey(nodeSuite.x25519Generate().publicKey), endpoint: `ws://127.0.0.1:${port}` }
}

t.test('refuses outbound connections before the agent is enrolled (AGENT_ERR_NOT_READY)', async (t) => {
  const p = await startTunnelPair(t, { aAgentId: () => undefined })
  const c = p.clientNow()
  t.equal(await outcome(c), 'ECONNRESET', 'the client is reset')
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.reject'), { reason: 'AGENT_ERR_NOT_READY', peerService: 'billing' })
  t.equal(p.a.svc.stats().rejections, 1)
})

t.test('refuses outbound connections without an intention, without contacting the peer (AGENT_ERR_NO_INTENTION)', async (t) => {
  const p = await startTunnelPair(t)
  p.mayInitiate = false
  p.a.keyset.update(p.entryA())
  const c = p.clientNow()
  t.equal(await outcome(c), 'ECONNRESET')
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.reject'), { reason: 'AGENT_ERR_NO_INTENTION', peerService: 'billing', pairId: 'billing:orders' })
  t.same(p.b.cap.usage, [], 'agent B heard nothing')
  t.equal(p.upstream.connections, 0)
})

t.test('no reachable peer: AGENT_ERR_NO_PEER; the dead peer is skipped for unreachableBackoffMs', async (t) => {
  const p = await startTunnelPair(t)
  p.endpoint = `ws://127.0.0.1:${await deadPort()}`
  p.a.keyset.update(p.entryA())
  const c1 = p.clientNow()
  t.equal(await outcome(c1), 'ECONNRESET')
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.reject'), { reason: 'AGENT_ERR_NO_PEER' })
  t.equal(unreachableLogs(p), 1, 'dialed once and marked')
  const c2 = p.clientNow()
  t.equal(await outcome(c2), 'ECONNRESET')
  t.equal(p.a.cap.usage.filter((e) => e.reason === 'AGENT_ERR_NO_PEER').length, 2)
  t.equal(unreachableLogs(p), 1, 'not dialed again within the backoff')
  p.clock.advance(p.limits.unreachableBackoffMs)
  const c3 = p.clientNow()
  t.equal(await outcome(c3), 'ECONNRESET')
  t.equal(unreachableLogs(p), 2, 'dialed again after the backoff')
})

/** A pair whose A dials B through a proxy that can cut B off and restore it (a restart). */
async function proxiedPair(t: Tap): Promise<{ p: TunnelPair; peer: TcpProxy }> {
  let proxy: TcpProxy | undefined
  const p = await startTunnelPair(t, {
    endpoint: async (b) => {
      proxy = await tcpProxy(t, b)
      return `ws://127.0.0.1:${proxy.port}/v1/tunnel`
    },
  })
  return { p, peer: proxy as TcpProxy }
}

t.test('a peer back from a restart is probed within PROBE_INTERVAL_MS, not left out for the whole backoff', async (t) => {
  const { p, peer } = await proxiedPair(t)
  t.ok(await echoWorks(p), 'serving before the restart')
  await peer.cut() // agent B down
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  t.equal(unreachableLogs(p), 1, 'marked unreachable')
  await peer.restore() // agent B back on the same endpoint
  t.equal(await outcome(p.clientNow()), 'ECONNRESET', 'within the probe interval the mark still holds')
  t.equal(p.a.cap.usage.filter((e) => e.reason === 'AGENT_ERR_NO_PEER').length, 2)
  t.ok(PROBE_INTERVAL_MS < p.limits.unreachableBackoffMs, 'the probe comes before the backoff would end')
  p.clock.advance(PROBE_INTERVAL_MS)
  t.ok(await echoWorks(p), 'the probing connection reached the restarted peer')
  t.ok(p.a.cap.logs.some((l) => l['msg'] === 'peer agent reachable again'), 'its mark is cleared')
  t.ok(await echoWorks(p), 'and the next connection dials it first, at the same instant')
  t.equal(p.a.cap.usage.filter((e) => e.reason === 'AGENT_ERR_NO_PEER').length, 2, 'no refusal after the probe')
})

t.test('a peer still down when probed is marked again and probed once per interval', async (t) => {
  const p = await startTunnelPair(t)
  p.endpoint = `ws://127.0.0.1:${await deadPort()}`
  p.a.keyset.update(p.entryA())
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  p.clock.advance(PROBE_INTERVAL_MS)
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  t.equal(unreachableLogs(p), 2, 'the probe dialed it')
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  t.equal(unreachableLogs(p), 2, 'no second probe within the interval')
  t.notOk(p.a.cap.logs.some((l) => l['msg'] === 'peer agent reachable again'))
})

t.test('fails over from an unreachable peer to the next one', async (t) => {
  // random → 0.999 keeps the entry's order, so the dead peer is tried first.
  const p = await startTunnelPair(t, { random: () => 0.999 })
  const dead = deadPeer(await deadPort())
  const entry = p.entryA()
  p.a.keyset.update({ ...entry, peers: [dead, ...entry.peers] })
  t.ok(await echoWorks(p), 'the tunnel reached the live peer')
  t.equal(unreachableLogs(p), 1)
  t.equal(p.a.cap.logs.find((l) => l['msg'] === 'peer agent unreachable; trying the next')?.['peerAgent'], dead.agentId)
  t.equal(p.a.cap.usage.filter((e) => e.kind === 'conn.reject').length, 0)
})

t.test('a peer that accepts TCP but never answers is given up after dialTimeoutMs (injected clock)', async (t) => {
  const silent = createServer((s) => s.on('error', () => {}))
  const port = await listening(silent)
  t.teardown(() => {
    silent.close()
  })
  const p = await startTunnelPair(t)
  p.endpoint = `ws://127.0.0.1:${port}`
  p.a.keyset.update(p.entryA())
  const c = await p.client()
  const how = outcome(c)
  await once(silent, 'connection')
  t.equal(unreachableLogs(p), 0, 'still waiting')
  p.clock.advance(p.limits.dialTimeoutMs)
  t.equal(await how, 'ECONNRESET')
  t.match(p.a.cap.logs.find((l) => l['msg'] === 'peer agent unreachable; trying the next'), { why: 'timeout' })
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.reject'), { reason: 'AGENT_ERR_NO_PEER' })
})

t.test('limits: open tunnels on the initiator, pending handshakes on the responder (AGENT_ERR_TUNNEL_LIMIT)', async (t) => {
  const p = await startTunnelPair(t, { limits: { maxTunnels: 1, maxPendingHandshakes: 1 } })
  const c1 = await p.client()
  c1.write('hold')
  await once(c1, 'data')
  const c2 = p.clientNow()
  t.equal(await outcome(c2), 'ECONNRESET')
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.reject'), { reason: 'AGENT_ERR_TUNNEL_LIMIT' })
  c1.end()
  await p.a.cap.usageEvent((e) => e.kind === 'conn.close')
  await p.b.cap.usageEvent((e) => e.kind === 'conn.close')

  // A handshake past its first message that never confirms holds the one pending slot.
  const silent = new WebSocket(p.bUrl)
  silent.on('error', () => {})
  await once(silent, 'open')
  silent.send(helloOf(p))
  await once(silent, 'message')
  const second = new WebSocket(p.bUrl)
  second.on('error', () => {})
  await once(second, 'open')
  second.send(helloOf(p))
  const [code, reason] = (await once(second, 'close')) as [number, Buffer]
  t.equal(code, 4730)
  t.equal(String(reason), 'AGENT_ERR_TUNNEL_LIMIT')
  t.equal(p.b.svc.stats().pending, 1)
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_TUNNEL_LIMIT'], 1, 'counted, not reported as a usage event')
  p.clock.advance(p.limits.handshakeTimeoutMs)
  await once(silent, 'close')
  t.equal(p.b.svc.stats().pending, 0)
  t.ok(await echoWorks(p), 'serves again once under the limits')
})

t.test('stats count open tunnels by direction and pair, with bytes', async (t) => {
  const p = await startTunnelPair(t)
  const c1 = await p.client()
  const c2 = await p.client()
  for (const c of [c1, c2]) {
    c.write('12345')
    await once(c, 'data')
  }
  t.match(p.a.svc.stats(), { open: 2, outbound: 2, inbound: 0, byPair: { 'billing:orders': { open: 2, keyVersions: [1] } }, bytesOut: 10, bytesIn: 10, pending: 0 })
  t.match(p.b.svc.stats(), { open: 2, outbound: 0, inbound: 2, byPair: { 'billing:orders': { open: 2, keyVersions: [1] } }, bytesIn: 10, bytesOut: 10 })
  c1.end()
  c2.end()
})

t.test('close() ends open tunnels with an authenticated CLOSE (AGENT_ERR_CLOSED) and frees the ports', async (t) => {
  const p = await startTunnelPair(t)
  const c = await p.client()
  c.write('x')
  await once(c, 'data')
  const how = outcome(c)
  const addr = p.a.svc.connectAddress('billing')
  await Promise.all([p.a.svc.close(), p.a.svc.close()])
  t.equal(await how, 'ECONNRESET')
  t.match(await p.b.cap.usageEvent((e) => e.kind === 'conn.close'), { reason: 'AGENT_ERR_CLOSED' })
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.close'), { reason: 'AGENT_ERR_CLOSED' })
  const probe = connect({ host: addr?.host, port: addr?.port as number })
  const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException]
  t.equal(err.code, 'ECONNREFUSED', 'the connect listener is gone')
  t.equal(p.b.svc.stats().open, 0)
})

t.test('start() fails with AGENT_ERR_LISTEN on a busy address', async (t) => {
  const busy = createServer()
  const port = await listening(busy)
  t.teardown(() => {
    busy.close()
  })
  const clock = new FakeClock()
  const deps = (cfg: ReturnType<typeof config>) => ({
    config: cfg,
    keyset: new KeySet(clock),
    staticKey: nodeSuite.x25519Generate(),
    agentId: () => undefined,
    suite: nodeSuite,
    clock,
    random: Math.random,
    logger: pino({ level: 'silent' }),
    usage: { record: () => {} },
  })
  const codeOf = async (fn: () => Promise<unknown>): Promise<string> => {
    try {
      await fn()
      return 'no error'
    } catch (e) {
      return isKeymeshError(e) ? e.code : String(e)
    }
  }
  t.equal(await codeOf(() => TunnelService.start(deps(config('orders', DEFAULT_LIMITS, { tunnelListen: { host: '127.0.0.1', port } })))), 'AGENT_ERR_LISTEN')
  t.equal(
    await codeOf(() => TunnelService.start(deps(config('orders', DEFAULT_LIMITS, { connect: [{ peerService: 'billing', host: '127.0.0.1', port }] })))),
    'AGENT_ERR_LISTEN',
  )
})

t.test('a usage sink that throws does not break tunnels', async (t) => {
  const p = await startTunnelPair(t, {
    usageA: () => {
      throw new Error('spool on fire')
    },
  })
  t.ok(await echoWorks(p))
  t.ok(p.a.cap.logs.some((l) => l['msg'] === 'usage event not recorded'), 'the failure is logged')
})

t.test('a responder that has not heard of a rotation refuses the new version; the initiator retries at once with the previous one', async (t) => {
  const p = await startTunnelPair(t)
  const v1 = p.versions[0] as { key: Uint8Array }
  p.rotate()
  // B missed the rotation (its control plane died mid-push): it holds only v1.
  p.b.keyset.update({ ...p.entryB(), versions: [{ version: 1, key: new Uint8Array(v1.key), state: 'current', notAfter: null }] })
  p.clock.advance(p.limits.sweepMs) // A's settling time is over: it proposes v2
  t.ok(await echoWorks(p), 'the client was served')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], 1, 'B refused v2 once')
  t.ok(p.a.cap.logs.some((l) => l['msg'] === 'peer agent refused the key version; retrying with the previous one'))
  t.same(p.a.cap.usage.filter((e) => e.kind === 'conn.reject' || e.kind === 'handshake.fail'), [], 'A refused nothing')
  t.match(p.a.cap.usage.find((e) => e.kind === 'conn.open'), { keyVersion: 1 })
  t.ok(await echoWorks(p), 'the next connection keeps to v1 for another settling time')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], 1, 'without being refused first')
})

t.test('without a previous version in grace, a refused version is reported (AGENT_ERR_KEY_VERSION), not retried', async (t) => {
  const p = await startTunnelPair(t)
  p.rotate(1)
  p.b.keyset.update({ ...p.entryB(), versions: [{ version: 9, key: nodeSuite.randomBytes(32), state: 'current', notAfter: null }] })
  p.clock.advance(p.limits.sweepMs + 1) // v1's grace is over
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.reject'), { reason: 'AGENT_ERR_KEY_VERSION' })
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], 1, 'one attempt only')
})

/** B missed the rotation to v2 (its control plane died mid-push): it holds only v1, A holds v2 and proposes it. */
function bMissedRotation(p: TunnelPair): void {
  const v1 = p.versions[0] as { key: Uint8Array }
  p.rotate()
  p.b.keyset.update({ ...p.entryB(), versions: [{ version: 1, key: new Uint8Array(v1.key), state: 'current', notAfter: null }] })
  p.clock.advance(p.limits.sweepMs) // A's settling time is over: it proposes v2
}

const asking = (p: TunnelPair): number => p.b.cap.logs.filter((l) => l['msg'] === 'a peer agent is ahead of this key set; asking the control plane for it').length

t.test('a responder offered a newer version than it holds asks for its key set and takes the tunnel once the version arrives', async (t) => {
  const asked: string[] = []
  // The control plane answers the request with a push of the pair as it is now.
  const p: TunnelPair = await startTunnelPair(t, { requestKeySetB: (pairId) => void (asked.push(pairId), setImmediate(() => p.b.keyset.update(p.entryB()))) })
  bMissedRotation(p)
  t.ok(await echoWorks(p), 'the client was served')
  t.same(asked, ['billing:orders'], 'B asked once, for that pair')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], undefined, 'B refused nothing')
  t.match(p.a.cap.usage.find((e) => e.kind === 'conn.open'), { keyVersion: 2 }, 'the tunnel opened on v2, no fallback')
  t.notOk(p.a.cap.logs.some((l) => l['msg'] === 'peer agent refused the key version; retrying with the previous one'))
  t.ok(p.b.cap.logs.some((l) => l['msg'] === 'held tunnel hello accepted: the key set caught up'))
})

t.test('a held hello is refused after keySetWaitMs when the version never comes; the initiator falls back to the previous one', async (t) => {
  const asked: string[] = []
  const p = await startTunnelPair(t, { requestKeySetB: (pairId) => void asked.push(pairId) })
  bMissedRotation(p)
  const served = echoWorks(p)
  await p.b.cap.logLine((l) => l['msg'] === 'a peer agent is ahead of this key set; asking the control plane for it')
  p.clock.advance(p.limits.keySetWaitMs - 1)
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], undefined, 'held until the wait is over')
  p.clock.advance(1)
  t.ok(await served, 'the client was served, on v1')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], 1, 'then refused as before')
  t.match(p.a.cap.usage.find((e) => e.kind === 'conn.open'), { keyVersion: 1 })
  t.same(asked, ['billing:orders'])
})

t.test('hellos held together cost one request per pair per keySetWaitMs', async (t) => {
  const asked: string[] = []
  const p = await startTunnelPair(t, { requestKeySetB: (pairId) => void asked.push(pairId) })
  bMissedRotation(p)
  const clients = [echoWorks(p), echoWorks(p), echoWorks(p)]
  await until(() => p.b.cap.logs.filter((l) => l['msg'] === 'tunnel hello held for the key set').length === 3, 'three hellos held', { on: (wake) => (p.b.cap.on('change', wake), () => p.b.cap.off('change', wake)) })
  t.equal(asking(p), 1, 'one request for the three')
  p.b.keyset.update(p.entryB()) // the push arrives
  t.same(await Promise.all(clients), [true, true, true], 'all three served on v2')
  t.same(asked, ['billing:orders'])
  t.equal(p.a.cap.usage.filter((e) => e.kind === 'conn.open' && e.keyVersion === 2).length, 3)
})

t.test('an initiating agent the responder does not list yet is held, and accepted once the key set lists it', async (t) => {
  const p: TunnelPair = await startTunnelPair(t, {
    requestKeySetB: () => void setImmediate(() => {
      p.bListsA = true
      p.b.keyset.update(p.entryB())
    }),
  })
  p.bListsA = false
  p.b.keyset.update(p.entryB()) // A just enrolled: the push telling B has not come
  t.ok(await echoWorks(p), 'served')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_UNKNOWN_PEER'], undefined)
  t.equal(asking(p), 1)
})

t.test('what no key set push can change is refused at once: an older version than any held, another service', async (t) => {
  const asked: string[] = []
  const p = await startTunnelPair(t, { requestKeySetB: (pairId) => void asked.push(pairId) })
  p.rotate(1)
  // B is ahead (v9): A's v2 is older than anything B holds.
  p.b.keyset.update({ ...p.entryB(), versions: [{ version: 9, key: nodeSuite.randomBytes(32), state: 'current', notAfter: null }] })
  p.clock.advance(p.limits.sweepMs + 1)
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], 1)
  const ws = new WebSocket(p.bUrl)
  await once(ws, 'open')
  ws.send(helloOf(p, { pairId: 'orders:payments', toService: 'payments' }))
  const [code] = (await once(ws, 'close')) as [number]
  t.equal(code, AGENT_ERRORS.AGENT_ERR_WRONG_SERVICE.closeCode, 'another service: refused at once')
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_WRONG_SERVICE'], 1)
  t.same(asked, [], 'nothing asked')
})

t.test('a held hello: the initiator leaving, or the agent closing, ends the wait', async (t) => {
  const p = await startTunnelPair(t, { requestKeySetB: () => {} })
  const ws = new WebSocket(p.bUrl)
  await once(ws, 'open')
  ws.send(helloOf(p, { keyVersion: 5 }))
  await p.b.cap.logLine((l) => l['msg'] === 'tunnel hello held for the key set')
  ws.terminate()
  await until(() => p.b.svc.stats().heldForKeySet === 0, 'the wait to end when the initiator left')
  const ws2 = new WebSocket(p.bUrl)
  await once(ws2, 'open')
  ws2.send(helloOf(p, { keyVersion: 5 }))
  await p.b.cap.logCount((l) => l['msg'] === 'tunnel hello held for the key set', 2)
  t.equal(p.b.svc.stats().heldForKeySet, 1)
  const closed = once(ws2, 'close')
  await p.b.svc.close()
  t.equal((await closed)[0], AGENT_ERRORS.AGENT_ERR_CLOSED.closeCode, 'closing ends every wait, telling the initiator why')
  t.equal(p.b.svc.stats().heldForKeySet, 0)
})

t.test("the control plane's peer.up clears an unreachable mark at once: a restarted peer takes the next tunnel, the clock standing still", async (t) => {
  const { p, peer } = await proxiedPair(t)
  await peer.cut() // agent B down
  t.equal(await outcome(p.clientNow()), 'ECONNRESET')
  t.equal(unreachableLogs(p), 1, 'marked unreachable')
  await peer.restore() // agent B back: it listens, then connects to the control plane
  t.equal(await outcome(p.clientNow()), 'ECONNRESET', 'the mark holds: no probe is due, the clock has not moved')
  p.a.svc.peerUp(newAgentId(nodeSuite.randomBytes))
  t.equal(await outcome(p.clientNow()), 'ECONNRESET', 'another agent\'s peer.up changes nothing')
  p.a.svc.peerUp(p.b.agentId)
  t.ok(p.a.cap.logs.some((l) => l['msg'] === 'peer agent connected to the control plane; dialing it again'))
  t.ok(await echoWorks(p), 'the next connection reaches it, without the clock moving')
  t.equal(p.a.cap.usage.filter((e) => e.reason === 'AGENT_ERR_NO_PEER').length, 3)
})

t.test('a held initiator that speaks out of turn is refused (PROTO_ERR_HANDSHAKE_STATE); a request that throws is logged, the hello still held', async (t) => {
  const p = await startTunnelPair(t, {
    requestKeySetB: () => {
      throw new Error('control client gone')
    },
  })
  const ws = new WebSocket(p.bUrl)
  await once(ws, 'open')
  ws.send(helloOf(p, { keyVersion: 7 }))
  await p.b.cap.logLine((l) => l['msg'] === 'key set request failed')
  t.equal(p.b.svc.stats().heldForKeySet, 1, 'held all the same')
  ws.send(Buffer.from('not my turn'))
  const [code] = (await once(ws, 'close')) as [number]
  t.equal(code, PROTO_ERRORS.PROTO_ERR_HANDSHAKE_STATE.closeCode)
  t.equal(p.b.svc.stats().preauthRefusalsByCode['PROTO_ERR_HANDSHAKE_STATE'], 1)
  t.equal(p.b.svc.stats().heldForKeySet, 0)
})

t.test('a held hello gives its pending slot up like any handshake: evicted for a newer one when the table is full (AGENT_ERR_TUNNEL_LIMIT)', async (t) => {
  const p = await startTunnelPair(t, { limits: { maxPendingHandshakes: 1 }, requestKeySetB: () => {} })
  const ws = new WebSocket(p.bUrl)
  await once(ws, 'open')
  ws.send(helloOf(p, { keyVersion: 7 }))
  await p.b.cap.logLine((l) => l['msg'] === 'tunnel hello held for the key set')
  const closed = once(ws, 'close')
  t.ok(await echoWorks(p), 'a newer handshake takes the one pending slot')
  t.equal(((await closed) as [number])[0], AGENT_ERRORS.AGENT_ERR_TUNNEL_LIMIT.closeCode, 'the held hello is evicted')
  t.equal(p.b.svc.stats().heldForKeySet, 0)
})
