// The control session's liveness (agent/src/control/session.ts over
// platform/src/liveness.ts) against a real control plane behind a TCP proxy that
// the test freezes (test/kit/tcp-proxy.ts): a replica whose host vanished or
// whose process stopped sends no reset, only silence. The agent's clock is fake
// and moved by hand; the control plane's is another, left alone.
import t from 'tap'

import { loadLimits } from '../../../agent/src/config-limits.js'
import { DEFAULT_LIMITS } from '../../../agent/src/config.js'
import { ControlClient, type ControlState } from '../../../agent/src/control/client.js'
import { KeySet } from '../../../agent/src/keyset.js'
import { nodeSuite as suite } from '../../../protocol/src/index.js'
import { parsePublicKey } from '../../../protocol/src/index.js'
import { startTestAgent } from '../../kit/agent.js'
import { until } from '../../kit/wait.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { codeOf } from '../../kit/errors.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { FakeClock, SECOND } from '../../kit/fake-clock.js'
import { captureLogger } from '../../kit/logs.js'
import { tcpProxy } from '../../kit/tcp-proxy.js'

const MIN = 250
const PING = DEFAULT_LIMITS.controlPingMs
const DEAD = DEFAULT_LIMITS.controlDeadMs

interface Tap {
  teardown(fn: () => unknown): void
}

/** Turns of the event loop: enough for the liveness timer to re-arm or confirm a death (no clock moves). */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r))
}

async function joinToken(h: TestControlPlane, service: string): Promise<string> {
  return (await h.api('POST', '/v1/join-tokens', { service })).body.token
}

/** A control client of service `orders` on its own fake clock, recording its states and logs. */
async function startClient(t: Tap, h: TestControlPlane, urls: string[]) {
  const clock = new FakeClock()
  const keyset = new KeySet(clock)
  const states: ControlState[] = []
  const { logger, logs } = captureLogger()
  let enrolled = false
  const client = new ControlClient({
    urls,
    cpKey: parsePublicKey(h.identityPub),
    staticKey: suite.x25519Generate(),
    service: 'orders',
    joinToken: await joinToken(h, 'orders'),
    enrolled: () => enrolled,
    agentVersion: '0.1.0-test',
    keyset,
    suite,
    clock,
    random: () => 1,
    logger,
    reconnectMinMs: MIN,
    reconnectMaxMs: 30 * SECOND,
    handshakeTimeoutMs: 10 * SECOND,
    controlPingMs: PING,
    controlDeadMs: DEAD,
    onWelcome: () => (enrolled = true),
    onStateChange: (s) => states.push(s),
  })
  t.teardown(() => client.close())
  client.start()
  return { client, clock, keyset, states, logs }
}

const agentUrl = (base: string): string => `${base.replace('http://', 'ws://')}/v1/agent`
const pairsOf = (k: KeySet): string => JSON.stringify(k.pairs(), (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))

t.test('a control plane gone silent is cut after controlDeadMs and the next URL is tried at once; the key set stays', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })).status, 201)
  const billing = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service: 'billing', joinToken: await joinToken(h, 'billing') })
  t.teardown(() => billing.close().catch(() => {}))
  await billing.welcome()
  const proxy = await tcpProxy(t, { host: '127.0.0.1', port: h.cp.address.port })
  const c = await startClient(t, h, [proxy.url, h.cp.url])
  await until(() => c.client.state === 'connected', 'the first session, through the proxy')
  t.equal(c.client.url, agentUrl(proxy.url))
  t.equal(c.keyset.get('billing:orders')?.peers.length, 1)
  const before = pairsOf(c.keyset)

  proxy.freeze()
  c.clock.advance(PING) // nothing from the control plane for pingMs: a ping, into the void
  await settle()
  c.clock.advance(DEAD - PING - 1)
  await settle()
  t.equal(c.client.state, 'connected', 'not before controlDeadMs')
  c.clock.advance(1)
  await until(() => c.client.state === 'backoff', 'the session to be cut')
  t.equal(c.client.lastError, 'AGENT_ERR_CP_UNREACHABLE')
  const logs = c.logs.join('')
  t.match(logs, /the control plane stopped answering; trying the next/)
  t.match(logs, /nothing from the control plane for 3500 ms/)
  await until(() => proxy.clientsClosed === 1, 'the socket to be terminated')
  t.equal(c.keyset.ready, true, 'the key set stays while the agent moves')

  c.clock.advance(MIN) // the first backoff step: the next URL, not the silent one again
  await until(() => c.client.state === 'connected', 'the second session, direct')
  t.equal(c.client.url, agentUrl(h.cp.url))
  t.equal(proxy.accepted, 1, 'the silent replica was not tried again')
  t.equal(pairsOf(c.keyset), before, 'the same key set: versions, key bytes, peers')
  t.same(c.states, ['connecting', 'connected', 'backoff', 'connecting', 'connected'])
})

t.test('a control plane that accepts the connection and never answers is left after controlDeadMs, not the handshake timeout', async (t) => {
  const h = await startTestControlPlane(t)
  const frozen = await tcpProxy(t, { host: '127.0.0.1', port: h.cp.address.port }, { frozen: true })
  const c = await startClient(t, h, [frozen.url, h.cp.url])
  await until(() => frozen.accepted === 1, 'the connection to be accepted')
  await settle()
  c.clock.advance(DEAD - 1)
  await settle()
  t.equal(c.client.state, 'connecting')
  c.clock.advance(1)
  await until(() => c.client.state === 'backoff', 'the attempt to be given up')
  t.equal(c.client.lastError, 'AGENT_ERR_CP_UNREACHABLE')
  t.match(c.logs.join(''), /nothing from the control plane for 3500 ms/)
  await until(() => frozen.clientsClosed === 1, 'the socket to be terminated')
  c.clock.advance(MIN)
  await until(() => c.client.state === 'connected', 'the next URL')
  t.equal(c.client.url, agentUrl(h.cp.url))
})

t.test('a quiet control plane that answers pings keeps its session', async (t) => {
  const h = await startTestControlPlane(t)
  const c = await startClient(t, h, [h.cp.url])
  await until(() => c.client.state === 'connected', 'the session')
  for (let i = 0; i < 10; i++) {
    c.clock.advance(PING)
    await settle()
    // An HTTP round trip to the same process: the pong, written before, has been read by its end.
    t.equal((await h.api('GET', '/healthz', undefined, null)).status, 200)
  }
  c.clock.advance(DEAD - 1)
  await settle()
  t.equal(c.client.state, 'connected', `${10 * PING + DEAD} ms of quiet`)
  t.same(c.states, ['connecting', 'connected'], 'never dropped')
})

t.test('the agent takes controlPingMs and controlDeadMs from its limits', async (t) => {
  const h = await startTestControlPlane(t)
  const proxy = await tcpProxy(t, { host: '127.0.0.1', port: h.cp.address.port })
  const a = await startTestAgent(t, h, { service: 'orders', cpUrls: [proxy.url, h.cp.url], limits: { controlPingMs: 100, controlDeadMs: 250 } })
  const state = () => a.agent.status().controlPlane
  await until(() => state().state === 'connected', 'the session through the proxy')
  proxy.freeze()
  h.clock.advance(100)
  await settle()
  h.clock.advance(149)
  await settle()
  t.equal(state().state, 'connected')
  h.clock.advance(1)
  await until(() => state().state === 'backoff', 'the session to be cut after 250 ms')
  t.equal(state().lastError, 'AGENT_ERR_CP_UNREACHABLE')
})

t.test('limits: controlPingMs and controlDeadMs have defaults, bounds, and ping must come before dead', async (t) => {
  t.equal(DEFAULT_LIMITS.controlPingMs, 1_500)
  t.equal(DEFAULT_LIMITS.controlDeadMs, 3_500)
  const from = '"limits" in agent.json'
  t.match(loadLimits([{ value: { controlPingMs: 500, controlDeadMs: 1_000 }, from }]), { controlPingMs: 500, controlDeadMs: 1_000 })
  t.match(loadLimits([{ value: { controlDeadMs: 10_000 }, from }]), { controlPingMs: 1_500, controlDeadMs: 10_000 })
  for (const value of [{ controlPingMs: 3_500 }, { controlDeadMs: 1_500 }, { controlPingMs: 5_000, controlDeadMs: 4_000 }]) {
    t.equal(codeOf(() => loadLimits([{ value, from }])), 'AGENT_ERR_CONFIG', JSON.stringify(value))
  }
  let message = ''
  try {
    loadLimits([{ value: { controlDeadMs: 1 }, from }])
  } catch (e) {
    message = (e as Error).message
  }
  t.match(message, /controlDeadMs must be an integer from 2 to 86400000 \(milliseconds\)/)
  t.equal(codeOf(() => loadLimits([{ value: { controlPingMs: 0 }, from }])), 'AGENT_ERR_CONFIG')
})
