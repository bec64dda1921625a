import t from 'tap'
import { EventEmitter } from 'node:events'

import { awaitFirstMessage, redeliver, type MessageSocket } from '../../platform/src/first-message.js'
import { OTHER_SOURCE, RefusalTally } from '../../platform/src/refusal-tally.js'
import { ReplayCache } from '../../platform/src/replay-cache.js'
import { FakeClock, HOUR, MINUTE, SECOND } from '../kit/fake-clock.js'

t.test('the replay cache refuses a key seen within its lifetime, forgets the oldest past its size', async (t) => {
  const clock = new FakeClock()
  const c = new ReplayCache({ maxEntries: 2, ttlMs: MINUTE }, clock)
  const k = (n: number): Uint8Array => new Uint8Array(32).fill(n)
  t.notOk(c.seen(k(1)))
  t.ok(c.seen(k(1)), 'a replay')
  t.notOk(c.seen(k(2)))
  t.notOk(c.seen(k(3)))
  t.equal(c.size, 2)
  t.notOk(c.seen(k(1)), 'the oldest was forgotten')
  clock.jump(HOUR)
  t.ok(c.seen(k(3)), 'a wall clock stepped an hour ahead expires nothing: lifetimes are elapsed time')
  clock.advance(MINUTE)
  t.notOk(c.seen(k(3)), 'expired')
  t.equal(c.size, 1)
  t.throws(() => new ReplayCache({ maxEntries: 0, ttlMs: 1 }, clock), RangeError)
  t.throws(() => new ReplayCache({ maxEntries: 1, ttlMs: 0 }, clock), RangeError)
})

t.test('refusals are recorded once at once, then as one summary per source and reason per window', async (t) => {
  const clock = new FakeClock()
  const tally = new RefusalTally({ windowMs: MINUTE, maxKeys: 2 }, clock)
  t.same(tally.note('s1', 'LIMIT'), { source: 's1', reason: 'LIMIT', count: 1 })
  for (let i = 0; i < 99; i++) t.equal(tally.note('s1', 'LIMIT'), undefined)
  t.same(tally.note('s2', 'LIMIT'), { source: 's2', reason: 'LIMIT', count: 1 })
  t.same(tally.note('s3', 'LIMIT'), { source: OTHER_SOURCE, reason: 'LIMIT', count: 1 }, 'past maxKeys: counted under (other)')
  t.equal(tally.nextDue(), clock.monotonicMs() + MINUTE, 'windows end on the monotonic clock')
  t.same(tally.due(), [], 'nothing before the window ends')
  clock.advance(MINUTE)
  t.same(tally.due(), [{ source: 's1', reason: 'LIMIT', count: 99 }], 'one summary; windows with nothing more are forgotten')
  clock.advance(MINUTE)
  t.same(tally.due(), [])
  t.equal(tally.nextDue(), undefined)
  t.throws(() => new RefusalTally({ windowMs: 0, maxKeys: 1 }, clock), RangeError)
  t.throws(() => new RefusalTally({ windowMs: 1, maxKeys: 0 }, clock), RangeError)
})

class FakeSocket extends EventEmitter {}
const sock = (): MessageSocket & EventEmitter => new FakeSocket() as unknown as MessageSocket & EventEmitter

t.test('the first message is awaited with a deadline, exactly one outcome, and handed on in order', async (t) => {
  const clock = new FakeClock()
  const seen: string[] = []
  const handlers = {
    message: (d: Buffer) => seen.push(`message ${d.toString()}`),
    timeout: () => seen.push('timeout'),
    error: (e: Error) => seen.push(`error ${e.message}`),
    closed: (code: number) => seen.push(`closed ${code}`),
  }
  const a = sock()
  awaitFirstMessage(a, clock, 2 * SECOND, {
    ...handlers,
    message: (d, isBinary) => {
      handlers.message(d)
      a.on('message', (m: Buffer) => seen.push(`session ${m.toString()}`))
      redeliver(a, d, isBinary)
    },
  })
  a.emit('message', Buffer.from('one'), true)
  a.emit('message', Buffer.from('two'), true)
  clock.advance(2 * SECOND)
  t.same(seen, ['message one', 'session one', 'session two'])

  seen.length = 0
  const b = sock()
  awaitFirstMessage(b, clock, 2 * SECOND, handlers)
  clock.advance(2 * SECOND - 1)
  t.same(seen, [])
  clock.advance(1)
  b.emit('message', Buffer.from('late'), true)
  t.same(seen, ['timeout'])

  seen.length = 0
  const c = sock()
  awaitFirstMessage(c, clock, SECOND, handlers)
  c.emit('error', new Error('too big'))
  c.emit('close', 1009, Buffer.alloc(0))
  const d = sock()
  awaitFirstMessage(d, clock, SECOND, handlers)
  d.emit('close', 1000, Buffer.alloc(0))
  const e = sock()
  const stop = awaitFirstMessage(e, clock, SECOND, handlers)
  stop()
  e.emit('message', Buffer.from('x'), true)
  clock.advance(SECOND)
  t.same(seen, ['error too big', 'closed 1000'], 'a stopped wait says nothing')
  t.equal(clock.pendingTimers, 0)
})
