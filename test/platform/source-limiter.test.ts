import t from 'tap'

import { DEFAULT_SOURCE_LIMITS, LOAD_HOLD_MS, SourceLimiter, prefixOf, sourceOf, type SourceSlot } from '../../platform/src/source-limiter.js'
import { TokenBucket } from '../../platform/src/token-bucket.js'
import { FakeClock, SECOND } from '../kit/fake-clock.js'

const slot = (s: SourceSlot | string): SourceSlot => {
  if (typeof s === 'string') throw new Error(`refused: ${s}`)
  return s
}

t.test('a token bucket refills at its rate up to its burst, and a clock stepped back adds nothing', async (t) => {
  const b = new TokenBucket(10, 2, 0)
  t.ok(b.take(0))
  t.ok(b.take(0))
  t.notOk(b.take(0), 'burst spent')
  t.notOk(b.take(50), 'half a token after 50 ms')
  t.ok(b.take(100))
  b.give(100)
  b.give(100)
  b.give(100)
  t.ok(b.full(100), 'never beyond the burst')
  t.ok(b.take(-1000) && b.take(-1000) && !b.take(-1000), 'no refill backwards')
  t.throws(() => new TokenBucket(0, 1, 0), RangeError)
})

t.test('idle connections are capped per source and in all; a full table loses its oldest', async (t) => {
  const clock = new FakeClock()
  const l = new SourceLimiter({ maxIdle: 4, maxIdlePerSource: 3, maxPending: 4, maxSources: 100 }, clock)
  const a = [slot(l.open('a')), slot(l.open('a')), slot(l.open('a'))]
  t.equal(l.open('a'), 'source-idle-limit')
  const b1 = slot(l.open('b'))
  t.same(l.stats(), { idle: 4, pending: 0, sources: 2, underLoad: false })
  let evicted = 0
  for (const s of [...a, b1]) s.onEvict = () => evicted++
  const c1 = slot(l.open('c'))
  t.equal(evicted, 1, 'the oldest idle socket made room for c')
  t.equal(a[0]?.phase, 'released')
  t.equal(a[0]?.hello(), 'idle-limit', 'an evicted slot cannot start a handshake')
  t.equal(l.stats().idle, 4)
  slot(l.open('c'))
  slot(l.open('c'))
  t.equal(evicted, 3, 'however few each source holds: the oldest goes')
  t.equal(b1.phase, 'idle', 'b1 is younger than the a slots')
  t.same(a.map((s) => s.phase), ['released', 'released', 'released'])
  t.equal(l.open('c'), 'source-idle-limit', 'a source at its share evicts nobody')
  for (const s of [b1, c1]) s.release()
  t.equal(l.stats().idle, 2)
})

t.test('1,024 sources with one idle socket each do not lock newcomers out', async (t) => {
  const clock = new FakeClock()
  const l = new SourceLimiter({ maxSources: 4096 }, clock)
  const held = Array.from({ length: 1024 }, (_, i) => slot(l.open(`10.0.${i >> 8}.${i & 255}`)))
  const newcomer = slot(l.open('192.0.2.1'))
  t.equal(newcomer.hello(), undefined, 'a newcomer gets in and starts its handshake')
  t.equal(held[0]?.phase, 'released', 'the oldest idle socket made room')
  t.equal(l.stats().idle, 1023)
})

t.test('pending handshakes are capped apart from idle ones, per source and in all', async (t) => {
  const clock = new FakeClock()
  const l = new SourceLimiter({ maxPending: 2, maxPendingPerSource: 1, maxIdle: 10, maxIdlePerSource: 10, maxSources: 100 }, clock)
  const idle = Array.from({ length: 8 }, () => slot(l.open('idler')))
  const a = slot(l.open('a'))
  t.equal(a.hello(), undefined, 'idle sockets do not hold pending places')
  t.equal(a.phase, 'pending')
  t.equal(a.hello(), undefined, 'a second hello does nothing')
  const a2 = slot(l.open('a'))
  t.equal(a2.hello(), 'source-pending-limit')
  t.equal(a2.phase, 'idle')
  const b = slot(l.open('b'))
  t.equal(b.hello(), undefined)
  let evicted = 0
  a.onEvict = () => evicted++
  const c = slot(l.open('c'))
  t.equal(c.hello(), undefined, 'the table is full: the oldest pending handshake makes room')
  t.equal(evicted, 1)
  t.equal(a.phase, 'released')
  a.release()
  t.equal(a2.hello(), undefined, 'a evicted no longer counts against its source')
  t.equal(evicted, 1, 'b was the oldest; it had no onEvict')
  t.equal(b.phase, 'released')
  t.same(l.stats(), { idle: 8, pending: 2, sources: 3, underLoad: false }, 'b, holding nothing, is forgotten')
  for (const s of [...idle, a2, b, c]) s.release()
  t.same(l.stats(), { idle: 0, pending: 0, sources: 0, underLoad: false }, 'sources with nothing held and full buckets are forgotten')
})

t.test('pending handshakes are capped per prefix, an IPv4 /24 or an IPv6 /48', async (t) => {
  const clock = new FakeClock()
  const l = new SourceLimiter({ maxPending: 10, maxPendingPerSource: 2, maxPendingPerPrefix: 3, maxSources: 2000 }, clock)
  const hello = (source: string): string | undefined => slot(l.open(source)).hello()
  t.equal(hello('10.0.0.1'), undefined)
  t.equal(hello('10.0.0.1'), undefined)
  t.equal(hello('10.0.0.2'), undefined)
  t.equal(hello('10.0.0.3'), 'source-pending-limit', 'the /24 holds its share')
  t.equal(hello('10.0.1.3'), undefined, 'another /24 does not')
  t.equal(hello('2001:db8:1:1::/64'), undefined)
  t.equal(hello('2001:db8:1:2::/64'), undefined)
  t.equal(hello('2001:db8:1:3::/64'), undefined)
  t.equal(hello('2001:db8:1:4::/64'), 'source-pending-limit', 'the /48 holds its share')
  t.equal(prefixOf('10.1.2.3'), '10.1.2.0/24')
  t.equal(prefixOf('2001:db8:1:2::/64'), '2001:db8:1::/48')
  t.equal(prefixOf('unknown'), 'unknown')
})

t.test('under load each source has a token bucket; an authenticated handshake gives its token back', async (t) => {
  const clock = new FakeClock()
  const l = new SourceLimiter({ loadPerSecond: 10, sourcePerSecond: 2, sourceBurst: 3, maxIdlePerSource: 1000, maxIdle: 1000, maxSources: 5000 }, clock)
  const flood: SourceSlot[] = []
  for (let i = 0; i < 10; i++) flood.push(slot(l.open('attacker')))
  t.notOk(l.underLoad, 'not under load within the load rate')
  const refusals: string[] = []
  for (let i = 0; i < 10; i++) {
    const s = l.open('attacker')
    if (typeof s === 'string') refusals.push(s)
    else flood.push(s)
  }
  t.ok(l.underLoad)
  t.equal(refusals.filter((r) => r === 'rate').length, 7, 'the attacker gets its burst of 3, then nothing')
  const legit = slot(l.open('legit'))
  legit.hello()
  legit.authenticated()
  legit.release()
  for (let i = 0; i < 20; i++) {
    const s = slot(l.open('legit'))
    s.hello()
    s.authenticated()
    s.release()
  }
  t.pass('a source whose handshakes authenticate is not held back by its bucket')
  clock.advance(SECOND)
  t.ok(slot(l.open('attacker')), 'tokens flow back at the source rate')
  clock.advance(LOAD_HOLD_MS)
  t.notOk(l.underLoad, 'load passes a second after the last excess')
  for (const s of flood) s.release()
  const quiet = new SourceLimiter({}, clock)
  clock.advance(LOAD_HOLD_MS)
  t.notOk(quiet.underLoad)
})

t.test('sources are bounded; under load a source within its window keeps its bucket', async (t) => {
  const clock = new FakeClock()
  const l = new SourceLimiter({ loadPerSecond: 1, maxIdle: 1, maxIdlePerSource: 1, maxPending: 1, maxSources: 3, sourceBurst: 1, sourcePerSecond: 1 }, clock)
  slot(l.open('x')).release()
  t.equal(l.stats().sources, 0, 'not under load: x took no token, and is forgotten once it holds nothing')
  for (const s of ['a', 'b', 'c']) slot(l.open(s)).release()
  t.ok(l.underLoad, 'past one attempt a second')
  t.equal(l.stats().sources, 3, 'a, b and c spent their tokens: remembered though they hold nothing')
  t.equal(l.open('d'), 'rate', 'the table is full of sources within their windows: a new one is refused')
  clock.advance(50)
  t.equal(l.open('e'), 'rate', 'without another sweep at once')
  t.equal(l.open('a'), 'rate', "a's bucket was not reset to make room")
  clock.advance(1000)
  t.ok(slot(l.open('d')), 'once their buckets are full again, they are forgotten to make room')
  t.ok(l.stats().sources <= 3)
})

t.test('limits are checked', async (t) => {
  const clock = new FakeClock()
  t.throws(() => new SourceLimiter({ maxIdle: 0 }, clock), /maxIdle/)
  t.throws(() => new SourceLimiter({ maxSources: 10 }, clock), /maxSources/)
  t.equal(new SourceLimiter({}, clock).limits.maxIdle, DEFAULT_SOURCE_LIMITS.maxIdle)
})

t.test('a source is an IPv4 address (also embedded in a mapped or NAT64 address), or an IPv6 /64', async (t) => {
  t.equal(sourceOf('127.0.0.2'), '127.0.0.2')
  t.equal(sourceOf('::ffff:10.1.2.3'), '10.1.2.3')
  t.equal(sourceOf('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(sourceOf('2001:db8:1:2::9'), '2001:db8:1:2::/64')
  t.equal(sourceOf('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(sourceOf('::1'), '0:0:0:0::/64')
  t.equal(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64')
  t.equal(sourceOf('64:ff9b::192.0.2.33'), '192.0.2.33', 'NAT64: the embedded IPv4 address, not one /64 for every client')
  t.equal(sourceOf('64:ff9b::c000:221'), '192.0.2.33')
  t.equal(sourceOf('::ffff:c000:221'), '192.0.2.33', 'IPv4-mapped in hex')
  t.equal(sourceOf('64:ff9b:1::c000:221'), '64:ff9b:1:0::/64', 'the local-use NAT64 prefix is a plain /64')
  t.equal(sourceOf('2001:db8::192.0.2.1'), '2001:db8:0:0::/64', 'a dotted tail elsewhere')
  t.equal(sourceOf(undefined), 'unknown')
  t.equal(sourceOf('not an address'), 'unknown')
})
