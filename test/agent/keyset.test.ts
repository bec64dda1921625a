// The agent's in-memory key set: whole-set replacement, pushes, expiry by the
// injected clock, change listeners, and key wiping.
import t from 'tap'

import { KeySet, type KeySetChange, type PairEntry, type PairVersion } from '../../agent/src/keyset.js'
import { nodeSuite } from '../../protocol/src/index.js'
import { formatPublicKey, pairId } from '../../protocol/src/index.js'
import { FakeClock, MINUTE } from '../kit/fake-clock.js'

const suite = nodeSuite
const PEER_A = 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa'
const PEER_B = 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbq'

function version(v: number, state: 'current' | 'previous', notAfter: number | null): PairVersion {
  return { version: v, key: suite.randomBytes(32), state, notAfter }
}

function pair(peer: string, versions: PairVersion[], peers: PairEntry['peers'] = []): PairEntry {
  return { pairId: pairId('orders', peer), peerService: peer, mayInitiate: true, mayAccept: true, versions, peers }
}

const zeroed = (p: PairEntry | undefined): boolean => p !== undefined && p.versions.every((v) => v.key.every((b) => b === 0))

function fixture() {
  const clock = new FakeClock()
  const errors: unknown[] = []
  const set = new KeySet(clock, (e) => errors.push(e))
  const changes: KeySetChange[] = []
  set.subscribe((c) => changes.push(c))
  return { clock, set, errors, changes }
}

t.test('is empty and not ready until a whole set arrives', async (t) => {
  const { set } = fixture()
  t.equal(set.ready, false)
  t.equal(set.source, undefined)
  t.equal(set.updatedAt, undefined)
  t.equal(set.size, 0)
  t.same(set.pairs(), [])
  t.equal(set.current('billing:orders'), undefined)
  t.same(set.reachablePeers('billing:orders'), [])
})

t.test('replace swaps in a whole set, sorted, indexed by pair and peer service, and tells listeners once', async (t) => {
  const { clock, set, changes } = fixture()
  const billing = pair('billing', [version(2, 'current', null), version(1, 'previous', clock.now() + MINUTE)])
  const audit = pair('audit', [version(5, 'current', null)])
  set.replace([billing, audit], 'cache')
  t.equal(set.ready, true)
  t.equal(set.source, 'cache')
  t.equal(set.updatedAt, clock.now())
  t.same(set.pairs().map((p) => p.pairId), ['audit:orders', 'billing:orders'], 'in pair id order')
  t.equal(set.get('billing:orders'), billing)
  t.equal(set.byPeerService('audit'), audit)
  t.equal(set.byPeerService('nobody'), undefined)
  t.equal(set.current('billing:orders')?.version, 2)
  t.equal(set.version('billing:orders', 1)?.version, 1)
  t.equal(set.version('billing:orders', 3), undefined)
  t.same(changes, [{ kind: 'replaced', source: 'cache', pairIds: ['billing:orders', 'audit:orders'] }])

  // The control plane's set replaces the cached one; the cached keys are wiped,
  // except those of entries that are carried over as they are.
  const fresh = pair('billing', [version(3, 'current', null)])
  set.replace([fresh, audit], 'control-plane')
  t.equal(set.source, 'control-plane')
  t.ok(zeroed(billing), 'the replaced entry is wiped')
  t.notOk(zeroed(audit), 'an entry passed again is kept')
  t.notOk(zeroed(fresh))
  t.equal(set.current('billing:orders')?.version, 3)
})

t.test('listeners see the old keys intact during a replace; they are wiped after', async (t) => {
  const { set } = fixture()
  const old = pair('billing', [version(1, 'current', null)])
  set.replace([old], 'control-plane')
  let sawIntact = false
  set.subscribe(() => {
    sawIntact = !zeroed(old)
  })
  set.replace([pair('billing', [version(2, 'current', null)])], 'control-plane')
  t.equal(sawIntact, true)
  t.equal(zeroed(old), true)
})

t.test('versions stop being usable at notAfter, measured on the injected clock', async (t) => {
  const { clock, set } = fixture()
  const start = clock.now()
  set.replace([pair('billing', [version(2, 'current', start + 2 * MINUTE), version(1, 'previous', start + MINUTE)])], 'control-plane')
  t.equal(set.version('billing:orders', 1)?.version, 1)
  clock.advance(MINUTE - 1)
  t.equal(set.version('billing:orders', 1)?.version, 1, 'usable until just before notAfter')
  clock.advance(1)
  t.equal(set.version('billing:orders', 1), undefined, 'not at notAfter')
  t.equal(set.current('billing:orders')?.version, 2)
  clock.advance(MINUTE)
  t.equal(set.current('billing:orders'), undefined, 'an expired current version is not returned either')
  t.equal(set.get('billing:orders')?.versions.length, 2, 'the entry itself stays until the control plane removes it')
})

t.test('update adds or replaces one pair, wiping the previous keys after listeners ran', async (t) => {
  const { clock, set, changes } = fixture()
  set.replace([], 'control-plane')
  const first = pair('billing', [version(1, 'current', null)])
  set.update(first)
  t.match(changes.at(-1), { kind: 'updated', pairId: 'billing:orders', previous: undefined })
  t.equal(set.size, 1)
  let previousIntact = false
  const unsubscribe = set.subscribe((c) => {
    if (c.kind === 'updated') previousIntact = c.previous !== undefined && !zeroed(c.previous)
  })
  clock.advance(1000)
  const rotated = pair('billing', [version(2, 'current', null), version(1, 'previous', clock.now() + MINUTE)])
  set.update(rotated)
  t.equal(previousIntact, true, 'the listener could compare with the previous entry')
  t.equal(zeroed(first), true, 'then its keys were wiped')
  t.equal((changes.at(-1) as { previous?: PairEntry }).previous, first)
  t.equal(set.updatedAt, clock.now())
  t.equal(set.current('billing:orders')?.version, 2)
  t.equal(set.byPeerService('billing'), rotated)
  unsubscribe()
  set.update(pair('billing', [version(3, 'current', null)]))
  t.equal(changes.length, 4, 'the first listener still hears every change')
})

t.test('remove drops one pair and wipes it; an unknown pair id changes nothing', async (t) => {
  const { set, changes } = fixture()
  const billing = pair('billing', [version(1, 'current', null)])
  set.replace([billing], 'control-plane')
  set.remove('audit:orders')
  t.equal(changes.length, 1, 'no event for an unknown pair')
  set.remove('billing:orders')
  t.same(changes.at(-1), { kind: 'removed', pairId: 'billing:orders', previous: billing })
  t.equal(set.get('billing:orders'), undefined)
  t.equal(set.byPeerService('billing'), undefined)
  t.equal(zeroed(billing), true)
  t.equal(set.ready, true, 'an empty set is still a set')
})

t.test('peers are listed with decoded static keys; only those with an endpoint are reachable', async (t) => {
  const { set } = fixture()
  const keyA = suite.x25519Generate().publicKey
  const keyB = suite.x25519Generate().publicKey
  set.replace(
    [
      pair('billing', [version(1, 'current', null)], [
        { agentId: PEER_A, staticKey: formatPublicKey(keyA), endpoint: 'ws://127.0.0.1:7001/v1/tunnel' },
        { agentId: PEER_B, staticKey: formatPublicKey(keyB), endpoint: null },
      ]),
    ],
    'control-plane',
  )
  const a = set.peer('billing:orders', PEER_A)
  t.same(Buffer.from(a?.staticKey ?? []), Buffer.from(keyA))
  t.equal(set.peer('billing:orders', PEER_B)?.endpoint, null)
  t.equal(set.peer('billing:orders', 'agt_cccccccccccccccccccccccccy'), undefined)
  t.equal(set.peer('audit:orders', PEER_A), undefined)
  t.same(set.reachablePeers('billing:orders').map((p) => p.agentId), [PEER_A])
})

t.test('a listener that throws does not stop the others; its error goes to onError', async (t) => {
  const { set, errors, changes } = fixture()
  const boom = new Error('listener bug')
  set.subscribe(() => {
    throw boom
  })
  let after = 0
  set.subscribe(() => after++)
  set.replace([pair('billing', [version(1, 'current', null)])], 'control-plane')
  t.same(errors, [boom])
  t.equal(after, 1)
  t.equal(changes.length, 1)
})

t.test('wipe zeroes every key and leaves the set empty and not ready', async (t) => {
  const { set } = fixture()
  const billing = pair('billing', [version(2, 'current', null), version(1, 'previous', null)])
  set.replace([billing], 'control-plane')
  set.wipe()
  t.equal(zeroed(billing), true)
  t.equal(set.size, 0)
  t.equal(set.ready, false)
  t.equal(set.byPeerService('billing'), undefined)
})

t.test('updatePeers changes a pair\'s peers alone: removed ones out, changed ones in place, new ones last; versions and their grace kept', async (t) => {
  const { clock, set, changes } = fixture()
  const key = (n: number) => formatPublicKey(new Uint8Array(32).fill(n))
  const PEER_C = 'agt_cccccccccccccccccccccccccq'
  const v1 = version(1, 'previous', clock.now() + MINUTE)
  const billing = pair('billing', [version(2, 'current', null), v1], [
    { agentId: PEER_A, staticKey: key(1), endpoint: 'wss://a:1' },
    { agentId: PEER_B, staticKey: key(2), endpoint: 'wss://b:1' },
  ])
  set.replace([billing], 'control-plane')
  changes.length = 0
  clock.advance(MINUTE / 2)
  t.equal(set.updatePeers('billing:orders', [{ agentId: PEER_C, staticKey: key(3), endpoint: 'wss://c:1' }, { agentId: PEER_A, staticKey: key(1), endpoint: 'wss://a:2' }], [PEER_B]), true)
  t.same(set.get('billing:orders')?.peers.map((p) => [p.agentId, p.endpoint]), [[PEER_A, 'wss://a:2'], [PEER_C, 'wss://c:1']])
  t.same(set.reachablePeers('billing:orders').map((p) => p.agentId), [PEER_A, PEER_C])
  t.equal(set.get('billing:orders')?.versions[1], v1, 'the same version objects')
  t.notOk(zeroed(billing), 'the keys are the ones still held: not wiped')
  t.same(changes, [{ kind: 'updated', pairId: 'billing:orders', previous: billing }])
  clock.advance(MINUTE / 2)
  t.equal(set.version('billing:orders', 1), undefined, 'the previous version\'s grace ran on from when it came, not from the peers\' change')
  t.equal(set.updatePeers('audit:orders', [], [PEER_A]), false, 'a pair not held: nothing changes (the caller asks for it)')
  t.equal(changes.length, 1)
})

t.test('the grace left of a version is elapsed time: a step of the wall clock either way does not change it', async (t) => {
  const { clock, set } = fixture()
  const start = clock.now()
  set.replace([pair('billing', [version(2, 'current', null), version(1, 'previous', start + 10 * MINUTE)])], 'control-plane')
  const v1 = set.version('billing:orders', 1) as PairVersion
  const v2 = set.version('billing:orders', 2) as PairVersion
  t.equal(set.graceLeftMs(v2), null, 'no notAfter, no grace to run out')
  t.equal(set.graceLeftMs(v1), 10 * MINUTE)
  clock.advance(MINUTE)
  t.equal(set.graceLeftMs(v1), 9 * MINUTE)
  clock.jump(3 * 60 * MINUTE)
  t.equal(set.graceLeftMs(v1), 9 * MINUTE, 'stepped ahead 3 h')
  clock.jump(-6 * 60 * MINUTE)
  t.equal(set.graceLeftMs(v1), 9 * MINUTE, 'stepped back 3 h from where it was')
})
