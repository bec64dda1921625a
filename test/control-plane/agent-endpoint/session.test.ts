// The agent endpoint forgets agents whose host vanished: a session from which
// nothing arrives for settings.agentIdleTimeoutMs is cut (agent-endpoint/session.ts
// over platform/src/liveness.ts). The agent sits behind a TCP proxy the test
// freezes (test/kit/tcp-proxy.ts); the control plane's clock is fake.
import t from 'tap'

import { createAgentEndpoint } from '../../../control-plane/src/agent-endpoint/endpoint.js'
import { DEFAULT_SETTINGS, settings } from '../../../control-plane/src/context.js'
import { until } from '../../kit/wait.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { codeOf } from '../../kit/errors.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { tcpProxy } from '../../kit/tcp-proxy.js'

const IDLE = DEFAULT_SETTINGS.agentIdleTimeoutMs

interface Tap {
  teardown(fn: () => unknown): void
}

/** Turns of the event loop: enough for the liveness timer to re-arm or confirm a death (no clock moves). */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r))
}

/** A FakeAgent of `service` (it never pings of its own) connected to `url`, holding its first key set. */
async function agentAt(t: Tap, h: TestControlPlane, url: string, service: string): Promise<FakeAgent> {
  const token = (await h.api('POST', '/v1/join-tokens', { service })).body.token
  const a = new FakeAgent({ url, cpKey: h.identityPub, service, joinToken: token })
  t.teardown(() => a.close().catch(() => {}))
  await a.welcome()
  await a.keyset()
  return a
}

const connectedGauge = async (h: TestControlPlane): Promise<string | undefined> => {
  const text = (await fetch(`${h.cp.url}/metrics`).then((r) => r.text())).split('\n')
  return text.find((l) => l.startsWith('keymesh_cp_agents_connected'))
}

t.test('an agent silent for agentIdleTimeoutMs is cut; the hub, the agent list and the gauge forget it', async (t) => {
  t.equal(IDLE, 15_000, 'default 15 s')
  const h = await startTestControlPlane(t)
  const proxy = await tcpProxy(t, { host: '127.0.0.1', port: h.cp.address.port })
  const vanished = await agentAt(t, h, proxy.url, 'orders')
  const steady = await agentAt(t, h, h.cp.url, 'billing')
  t.equal(h.cp.endpoint.connectedCount(), 2)

  let pings = 0
  steady.ws.on('ping', () => pings++)
  proxy.freeze()
  h.clock.advance(IDLE / 2) // silent for half the timeout: the control plane pings both
  await until(() => pings === 1, 'the ping to reach the steady agent')
  t.equal((await h.api('GET', '/healthz', undefined, null)).status, 200) // a round trip: steady's pong has been read
  h.clock.advance(IDLE / 2 - 1)
  await settle()
  t.equal(h.cp.endpoint.connectedCount(), 2, 'not before the timeout')
  h.clock.advance(1)
  await until(() => h.cp.endpoint.connectedCount() === 1, 'the silent agent to be cut')
  t.match(h.logs.join(''), /agent silent; session cut/)
  t.equal(await connectedGauge(h), 'keymesh_cp_agents_connected 1')
  const listed = (await h.api('GET', '/v1/agents')).body as Array<{ id: string; connected: boolean }>
  t.same(
    listed.map((a) => [a.id, a.connected]).sort(),
    [
      [vanished.agentId, false],
      [steady.agentId, true],
    ].sort(),
    'the agent that answered pings is still connected',
  )
  vanished.ws.terminate() // its close handshake would wait for the frozen proxy
})

t.test('an agent that only answers pings stays connected however long it is quiet', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await agentAt(t, h, h.cp.url, 'orders')
  let pings = 0
  a.ws.on('ping', () => pings++)
  for (let i = 1; i <= 6; i++) {
    h.clock.advance(IDLE / 2)
    await settle()
    await until(() => pings === i, `ping ${i}`)
    t.equal((await h.api('GET', '/healthz', undefined, null)).status, 200)
  }
  t.equal(h.cp.endpoint.connectedCount(), 1, `${3 * IDLE} ms without a frame from the agent, only pongs`)
})

t.test('agentIdleTimeoutMs must be an integer of at least 2 ms', async (t) => {
  const h = await startTestControlPlane(t)
  for (const agentIdleTimeoutMs of [0, 1, 1.5, Number.NaN]) {
    const ctx = { ...h.cp.ctx, settings: settings({ agentIdleTimeoutMs }) }
    t.equal(codeOf(() => createAgentEndpoint(ctx)), 'CP_ERR_INTERNAL', String(agentIdleTimeoutMs))
  }
  t.equal(settings({ agentIdleTimeoutMs: 2 }).agentIdleTimeoutMs, 2)
})
