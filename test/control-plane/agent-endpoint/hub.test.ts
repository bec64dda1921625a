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
import { FakeAgent } from '../../kit/fake-agent.js'

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

t.test('when only a pair\'s peers change, an agent that speaks pair.peers gets the change alone; one that does not gets the whole pair', async (t) => {
  const h = await startTestControlPlane(t)
  await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  const join = async (service: string, features?: string[], endpoint?: string): Promise<FakeAgent> => {
    const token = (await h.api('POST', '/v1/join-tokens', { service })).body.token
    const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service, joinToken: token, ...(features ? { features } : {}), ...(endpoint ? { endpoint } : {}) })
    t.teardown(() => void a.close().catch(() => {}))
    await a.welcome()
    await a.keyset()
    return a
  }
  // What a push says of the peers, never its keys (a failing assertion prints what it compares).
  type Push = { type: 'pair.update'; peers: string[] } | { type: 'pair.peers'; pairId: string; add: { agentId: string; endpoint: string | null }[]; remove: string[] }
  const pushes = (a: FakeAgent): Push[] =>
    a.messages.flatMap((m): Push[] =>
      m.type === 'pair.update' ? [{ type: m.type, peers: m.pair.peers.map((p) => p.agentId) }]
      : m.type === 'pair.peers' ? [{ type: m.type, pairId: m.pairId, add: m.add.map((p) => ({ agentId: p.agentId, endpoint: p.endpoint })), remove: [...m.remove] }]
      : [])
  /** The pushes `a` receives after it had `from`, once there are `n` of them. */
  const nextPushes = (a: FakeAgent, from: number, n: number): Promise<Push[]> => until(() => (pushes(a).length >= from + n ? pushes(a).slice(from) : undefined), 'pushes')
  const api1 = await join('api', ['pair.peers'])
  const api2 = await join('api')
  await join('web', undefined, 'wss://web-1.internal:7443')
  t.match(await nextPushes(api1, 0, 1), [{ type: 'pair.update' }], 'its copy of the pair was not the one pushed before: the whole pair')
  await nextPushes(api2, 0, 1)

  const web2 = await join('web', undefined, 'wss://web-2.internal:7443')
  t.match(await nextPushes(api1, 1, 1), [{ type: 'pair.peers', pairId: 'api:web', add: [{ agentId: web2.agentId, endpoint: 'wss://web-2.internal:7443' }], remove: [] }], 'the new peer alone')
  const whole = await nextPushes(api2, 1, 1)
  t.match(whole, [{ type: 'pair.update' }], 'without the feature: the whole pair')
  t.ok((whole[0] as Extract<Push, { type: 'pair.update' }>).peers.includes(web2.agentId as string), 'listing the new peer')

  // A rotation changes the versions: the whole pair, feature or not.
  t.equal((await h.api('POST', '/v1/pairs/api/web/rotate')).status, 200)
  t.match(await nextPushes(api1, 2, 1), [{ type: 'pair.update' }])
  t.match(await nextPushes(api2, 2, 1), [{ type: 'pair.update' }])
  t.equal(pushes(api1).length, 3, 'nothing else was pushed')
})
