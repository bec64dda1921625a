import t from 'tap'

import { systemClock } from '../../platform/src/clock.js'
import { CLOCK_JUMP_THRESHOLD_MS, CLOCK_WATCH_EVERY_MS, ClockWatch, describeStep, type ClockJump } from '../../platform/src/clock-watch.js'
import { DAY, FAKE_EPOCH, FakeClock, HOUR, SECOND } from '../kit/fake-clock.js'

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

t.test('the system clock has a monotonic reading that moves with elapsed time', async (t) => {
  const a = systemClock.monotonicMs()
  const b = systemClock.monotonicMs()
  t.ok(b >= a, 'never decreases')
  t.ok(Number.isInteger(a), 'whole milliseconds, as Date.now() gives')
  t.ok(Math.abs(systemClock.now() - systemClock.monotonicMs() - (Date.now() - performance.now())) < 1_000, 'same rate as the wall clock while nothing steps it')
})

t.test('a fake clock keeps wall and monotonic readings apart: time passing moves both, a jump only the wall', async (t) => {
  const c = new FakeClock()
  const fired: Array<[number, number]> = []
  c.setTimer(HOUR, () => fired.push([c.now(), c.monotonicMs()]))
  t.equal(c.monotonicMs(), 0, 'monotonic time starts far from any wall time')
  t.equal(c.jump(3 * HOUR), FAKE_EPOCH + 3 * HOUR, 'a jump ahead moves the wall clock...')
  t.same(fired, [], '...but no time passed, so no timer fired')
  t.equal(c.monotonicMs(), 0)
  c.jump(-6 * HOUR)
  c.advance(HOUR)
  t.same(fired, [[FAKE_EPOCH - 2 * HOUR, HOUR]], 'timers run on elapsed time; they see the stepped wall clock')
  t.equal(c.set(FAKE_EPOCH - 3 * HOUR), FAKE_EPOCH - 3 * HOUR, 'set backwards is a step of the wall clock')
  t.equal(c.monotonicMs(), HOUR)
  c.set(FAKE_EPOCH)
  t.equal(c.monotonicMs(), 4 * HOUR, 'set forwards lets the time pass')
  t.throws(() => c.jump(Number.NaN), RangeError)
})

t.test('a fake clock view shares time and timers but steps its wall clock alone', async (t) => {
  const c = new FakeClock()
  const v = c.view()
  let fired = 0
  v.setTimer(SECOND, () => fired++)
  t.equal(v.jump(-HOUR), c.now() - HOUR)
  t.equal(v.monotonicMs(), c.monotonicMs())
  c.advance(SECOND)
  t.equal(fired, 1)
  t.equal(v.now(), c.now() - HOUR, 'the step stays while time passes')
  t.throws(() => v.jump(Infinity), RangeError)
})

t.test('a clock watch reports a wall-clock step past its threshold once, by direction, and nothing else', async (t) => {
  const c = new FakeClock()
  const jumps: ClockJump[] = []
  t.throws(() => new ClockWatch({ clock: c, onJump: () => {}, everyMs: 0 }), RangeError)
  const w = new ClockWatch({ clock: c, onJump: (j) => jumps.push(j) })
  w.start()
  w.start()
  t.teardown(() => w.stop())
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
  c.advance(CLOCK_WATCH_EVERY_MS)
  await turn()
  c.advance(DAY)
  await turn()
  t.same(jumps, [], 'time passing, however much at once, is no jump')
  c.jump(CLOCK_JUMP_THRESHOLD_MS)
  c.advance(CLOCK_WATCH_EVERY_MS)
  await turn()
  t.same(jumps, [], 'a step up to the threshold goes unreported')
  const before = c.now()
  c.jump(3 * HOUR)
  c.advance(CLOCK_WATCH_EVERY_MS)
  await turn()
  t.match(jumps, [{ stepMs: 3 * HOUR, wallAfter: before + 3 * HOUR + CLOCK_WATCH_EVERY_MS, elapsedMs: CLOCK_WATCH_EVERY_MS }], 'a step of 3 h ahead is reported with its size')
  c.advance(CLOCK_WATCH_EVERY_MS)
  await turn()
  t.equal(jumps.length, 1, 'once')
  c.jump(-3 * HOUR)
  t.match(w.check(), { stepMs: -3 * HOUR }, 'check() compares at once')
  t.same(w.jumps, { forward: 1, backward: 1 })
  w.stop()
  c.jump(HOUR)
  c.advance(CLOCK_WATCH_EVERY_MS)
  await turn()
  t.equal(jumps.length, 2, 'nothing after stop()')
  t.equal(describeStep(3 * HOUR), '3h0m0s forward')
  t.equal(describeStep(-90 * SECOND), '1m30s back')
  t.equal(describeStep(2_500), '2.5s forward')
})
