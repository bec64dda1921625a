// Who may open a tunnel (agent/src/tunnel/authorize.ts), the order of the inbound
// checks, outbound planning, candidate shuffling, and tunnel URLs.
import t from 'tap'

import { KeySet, type PairEntry } from '../../../agent/src/keyset.js'
import { authorizeInbound, planOutbound, shuffledPeers } from '../../../agent/src/tunnel/authorize.js'
import { tunnelUrl } from '../../../agent/src/tunnel/transport.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import type { TunnelContext } from '../../../protocol/src/index.js'
import { formatPublicKey, newAgentId } from '../../../protocol/src/index.js'
import { codeOf } from '../../kit/errors.js'
import { FakeClock } from '../../kit/fake-clock.js'

const A = newAgentId(nodeSuite.randomBytes)
const aKey = nodeSuite.x25519Generate().publicKey

function fixture(over: Partial<PairEntry> = {}) {
  const clock = new FakeClock()
  const keyset = new KeySet(clock)
  const entry: PairEntry = {
    pairId: 'billing:orders',
    peerService: 'orders',
    mayInitiate: true,
    mayAccept: true,
    versions: [
      { version: 2, key: nodeSuite.randomBytes(32), state: 'current', notAfter: null },
      { version: 1, key: nodeSuite.randomBytes(32), state: 'previous', notAfter: clock.now() + 1000 },
    ],
    peers: [{ agentId: A, staticKey: formatPublicKey(aKey), endpoint: 'ws://10.0.0.1:7000' }],
    ...over,
  }
  keyset.replace([entry], 'control-plane')
  return { clock, keyset, entry }
}

const ctx = (over: Partial<TunnelContext> = {}): TunnelContext => ({ pairId: 'billing:orders', keyVersion: 2, fromService: 'orders', toService: 'billing', fromAgent: A, ...over })

t.test('inbound: returns the version\'s key and the peer\'s static key when everything holds', async (t) => {
  const { keyset, entry } = fixture()
  const keys = authorizeInbound(keyset, 'billing', true, ctx())
  t.same(Buffer.from(keys.psk), Buffer.from(entry.versions[0]?.key as Uint8Array))
  t.same(Buffer.from(keys.remoteStatic), Buffer.from(aKey))
  t.same(Buffer.from(authorizeInbound(keyset, 'billing', true, ctx({ keyVersion: 1 })).psk), Buffer.from(entry.versions[1]?.key as Uint8Array), 'a previous version within its grace is accepted')
})

t.test('inbound: the checks run in order, the first failure answers', async (t) => {
  const { keyset } = fixture({ mayAccept: false, peers: [] })
  const other = newAgentId(nodeSuite.randomBytes)
  // Everything wrong at once: the service check answers first.
  t.equal(codeOf(() => authorizeInbound(keyset, 'payments', false, ctx({ keyVersion: 9, fromAgent: other }))), 'AGENT_ERR_WRONG_SERVICE')
  t.equal(codeOf(() => authorizeInbound(keyset, 'billing', false, ctx({ keyVersion: 9, fromAgent: other }))), 'AGENT_ERR_NO_INTENTION')
  const f = fixture()
  t.equal(codeOf(() => authorizeInbound(f.keyset, 'billing', false, ctx({ keyVersion: 9, fromAgent: other }))), 'AGENT_ERR_UNKNOWN_PEER')
  t.equal(codeOf(() => authorizeInbound(f.keyset, 'billing', false, ctx({ keyVersion: 9 }))), 'AGENT_ERR_KEY_VERSION')
  t.equal(codeOf(() => authorizeInbound(f.keyset, 'billing', false, ctx())), 'AGENT_ERR_NO_EXPOSE', 'configuration comes last')
  f.clock.advance(1000)
  t.equal(codeOf(() => authorizeInbound(f.keyset, 'billing', true, ctx({ keyVersion: 1 }))), 'AGENT_ERR_KEY_VERSION', 'a version past notAfter is refused')
})

t.test('inbound: a pair with another service than the claimed initiator is no intention', async (t) => {
  const { keyset } = fixture({ pairId: 'billing:payments', peerService: 'payments' })
  t.equal(codeOf(() => authorizeInbound(keyset, 'billing', true, ctx())), 'AGENT_ERR_NO_INTENTION')
})

t.test('outbound: not enrolled, no intention, no usable version, then a plan', async (t) => {
  const { keyset } = fixture()
  t.equal(codeOf(() => planOutbound(keyset, 'billing', undefined, 'orders')), 'AGENT_ERR_NOT_READY')
  t.equal(codeOf(() => planOutbound(new KeySet(new FakeClock()), 'billing', A, 'orders')), 'AGENT_ERR_NOT_READY', 'no key set yet')
  t.equal(codeOf(() => planOutbound(keyset, 'billing', A, 'payments')), 'AGENT_ERR_NO_INTENTION')
  t.equal(codeOf(() => planOutbound(fixture({ mayInitiate: false }).keyset, 'billing', A, 'orders')), 'AGENT_ERR_NO_INTENTION')
  t.equal(codeOf(() => planOutbound(keyset, 'billing', A, 'orders', () => undefined)), 'AGENT_ERR_KEY_VERSION')
  const plan = planOutbound(keyset, 'billing', A, 'orders')
  t.same(plan.context, { pairId: 'billing:orders', keyVersion: 2, fromService: 'billing', toService: 'orders', fromAgent: A })
  const older = planOutbound(keyset, 'billing', A, 'orders', (id) => keyset.version(id, 1))
  t.equal(older.context.keyVersion, 1, 'the version chooser decides')
})

t.test('shuffledPeers: a permutation driven by the injected random, without skipped peers', async (t) => {
  const peers = ['a', 'b', 'c', 'd'].map((x) => ({ agentId: x, staticKey: aKey, endpoint: 'ws://h' }))
  t.same(shuffledPeers(peers, () => 0.999, () => false).map((p) => p.agentId), ['a', 'b', 'c', 'd'])
  t.same(shuffledPeers(peers, () => 0, () => false).map((p) => p.agentId), ['b', 'c', 'd', 'a'])
  t.same(shuffledPeers(peers, () => 0.999, (p) => p.agentId === 'b').map((p) => p.agentId), ['a', 'c', 'd'])
  t.same(shuffledPeers(peers, () => 1, () => false).length, 4, 'an out-of-range random still gives a permutation')
  const seen = new Set<string>()
  for (let i = 0; i < 200; i++) seen.add(shuffledPeers(peers, Math.random, () => false)[0]?.agentId as string)
  t.equal(seen.size, 4, 'every peer gets to be first')
})

t.test('tunnelUrl appends /v1/tunnel unless it is there, keeping a path prefix', async (t) => {
  t.equal(tunnelUrl('ws://10.0.0.1:7000'), 'ws://10.0.0.1:7000/v1/tunnel')
  t.equal(tunnelUrl('ws://10.0.0.1:7000/v1/tunnel'), 'ws://10.0.0.1:7000/v1/tunnel')
  t.equal(tunnelUrl('wss://proxy.example/agents/b/'), 'wss://proxy.example/agents/b/v1/tunnel')
})
