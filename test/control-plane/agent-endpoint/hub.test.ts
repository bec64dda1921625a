// The hub's answer to { kind: 'resync' }: changes it never heard about (a replica's
// LISTEN connection was down) reach its agents anyway. A bus that can be made deaf
// stands in for the lost notifications.
import t from 'tap'

import type { Message } from '../../../protocol/src/index.js'
import type { AgentEndpointInternals } from '../../../control-plane/src/agent-endpoint/endpoint.js'
import { CP_ERRORS } from '../../../control-plane/src/errors.js'
import { createLocalBus, type ChangeBus } from '../../../control-plane/src/events.js'
import { until } from '../../kit/wait.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { kmsAgent } from '../../kit/kms.js'

function deafBus(): ChangeBus & { deaf: boolean } {
  const local = createLocalBus()
  const bus = {
    deaf: false,
    publish: (e: Parameters<ChangeBus['publish']>[0]) => {
      if (!bus.deaf || e.kind === 'resync') local.publish(e)
    },
    subscribe: local.subscribe,
  }
  return bus
}

t.test('resync pushes every connected service a key set with the changes it missed', async (t) => {
  const bus = deafBus()
  const h = await startTestControlPlane(t, { bus })
  await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const web = await kmsAgent(h, t, 'web')
  const api = await kmsAgent(h, t, 'api')

  const isV2 = (m: Message): boolean => m.type === 'pair.update' && m.pair.versions.some((v) => v.state === 'current' && v.version === 2)
  await (h.cp.endpoint as AgentEndpointInternals).hub.idle()
  bus.deaf = true
  t.equal((await h.api('POST', '/v1/pairs/api/web/rotate')).status, 200)
  bus.deaf = false
  await (h.cp.endpoint as AgentEndpointInternals).hub.idle()
  t.notOk([...web.messages, ...api.messages].some(isV2), 'v2 not pushed while deaf')
  const pushed = Promise.all([web.next('pair.update', isV2), api.next('pair.update', isV2)])
  bus.publish({ kind: 'resync', reason: 'test' })
  t.equal((await pushed).length, 2, 'both sides got v2')
})

t.test('resync closes the sessions of agents revoked meanwhile, and only those', async (t) => {
  const bus = deafBus()
  const h = await startTestControlPlane(t, { bus })
  const web = await kmsAgent(h, t, 'web')
  const api = await kmsAgent(h, t, 'api')

  bus.deaf = true
  t.equal((await h.api('POST', `/v1/agents/${web.agentId}/revoke`)).status, 200)
  bus.deaf = false
  bus.publish({ kind: 'resync', reason: 'test' })
  t.equal((await web.closed).code, CP_ERRORS.CP_ERR_AGENT_REVOKED.closeCode)
  t.equal(api.ws.readyState, api.ws.OPEN, 'the other agent stays')
  t.same(await api.request({ op: 'encrypt', key: 'nope', plaintext: new Uint8Array(1) }).then((r) => r.ok), false, 'and is still served')
})

t.test('resync with no agent connected does nothing; a store failure while checking is logged', async (t) => {
  const bus = deafBus()
  const h = await startTestControlPlane(t, { bus })
  bus.publish({ kind: 'resync', reason: 'nobody here' })
  await kmsAgent(h, t, 'web')
  const store = h.cp.ctx.store
  const read = store.read.bind(store)
  store.read = async () => {
    throw new Error('database away')
  }
  t.teardown(() => {
    store.read = read
  })
  bus.publish({ kind: 'resync', reason: 'test' })
  await until(() => h.logs.some((l) => l.includes('could not check connected agents for revocation')), 'the failure to be logged')
  t.pass('logged, not thrown')
})

t.test("an 'agent-connected' event from another replica reaches the agents of its pairs; a malformed one is logged", async (t) => {
  const h = await startTestControlPlane(t)
  await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const web = await kmsAgent(h, t, 'web')
  // The kit's FakeAgent names no features: nothing may be sent to it, so the event changes nothing for it.
  h.cp.ctx.bus.publish({ kind: 'agent-connected', agentId: 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa', service: 'api' })
  h.cp.ctx.bus.publish({ kind: 'agent-connected', agentId: 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa', service: 'Not A Service' })
  await until(() => h.logs.some((l) => l.includes('peer.up not sent')), 'the malformed event to be logged')
  t.notOk(web.messages.some((m) => m.type === 'peer.up'))
  t.equal(web.ws.readyState, web.ws.OPEN, 'the session stays')
})
