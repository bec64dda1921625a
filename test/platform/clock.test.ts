import t from 'tap'

import { systemClock } from '../../platform/src/clock.js'
import { FAKE_EPOCH, FakeClock, HOUR } from '../kit/fake-clock.js'

t.test('the system clock reads the wall clock', async (t) => {
  const before = Date.now()
  const now = systemClock.now()
  t.ok(now >= before && now <= Date.now())
})

t.test('a system timer fires once, and a cancelled one never', async (t) => {
  const fired: string[] = []
  const cancel = systemClock.setTimer(0, () => fired.push('cancelled'))
  cancel()
  cancel()
  // System timers are unref'd; a ref'd guard keeps this test's process alive until one fires.
  const guard = setTimeout(() => {}, 5000)
  await new Promise<void>((resolve) => systemClock.setTimer(-5, () => { fired.push('due'); resolve() }))
  clearTimeout(guard)
  t.same(fired, ['due'])
})

t.test('a fake clock starts at a fixed time and moves only when told', async (t) => {
  const c = new FakeClock()
  t.equal(c.now(), FAKE_EPOCH)
  t.equal(c.advance(HOUR), FAKE_EPOCH + HOUR)
  t.equal(c.set(FAKE_EPOCH - 1), FAKE_EPOCH - 1, 'set may step backwards')
  t.equal(new FakeClock(5).now(), 5)
  t.throws(() => c.advance(-1), RangeError)
  t.throws(() => c.set(Number.NaN), RangeError)
  t.throws(() => new FakeClock(Infinity), RangeError)
})

t.test('fake timers fire in due order, each seeing its own due time', async (t) => {
  const c = new FakeClock(0)
  const seen: Array<[string, number]> = []
  c.setTimer(30, () => seen.push(['c', c.now()]))
  c.setTimer(10, () => {
    seen.push(['a', c.now()])
    c.setTimer(5, () => seen.push(['a+5', c.now()]))
  })
  c.setTimer(10, () => seen.push(['b', c.now()]))
  const cancel = c.setTimer(20, () => seen.push(['never', c.now()]))
  cancel()
  c.setTimer(-1, () => seen.push(['now', c.now()]))
  t.equal(c.pendingTimers, 4)
  c.advance(25)
  t.same(seen, [['now', 0], ['a', 10], ['b', 10], ['a+5', 15]])
  t.equal(c.now(), 25)
  c.set(100)
  t.same(seen.at(-1), ['c', 30])
  t.equal(c.pendingTimers, 0)
})
