import t from 'tap'

import { Liveness, type LivenessOptions } from '../../platform/src/liveness.js'
import type { CancelTimer, TimerClock } from '../../platform/src/clock.js'
import { DAY, FakeClock, HOUR } from '../kit/fake-clock.js'

const PING = 1_500
const DEAD = 3_500

/** One turn of the event loop: Liveness arms its timer a turn after each tick. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
/** Enough turns for a tick to re-arm, or for a death to be confirmed (two turns after the deadline). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await turn()
}

/** A fake clock whose monotonic reading can be stepped back (no real clock does; a defence) while its timers keep their schedule. */
class SteppedClock implements TimerClock {
  readonly fake = new FakeClock()
  offset = 0
  now(): number {
    return this.fake.now() + this.offset
  }
  monotonicMs(): number {
    return this.fake.monotonicMs() + this.offset
  }
  setTimer(delayMs: number, fn: () => void): CancelTimer {
    return this.fake.setTimer(delayMs, fn)
  }
}

/** A Liveness on a fake clock; `open` (default) means the connection is open and seen() was called for it. */
function probe(o: Partial<LivenessOptions> & { open?: boolean } = {}) {
  const clock = new FakeClock()
  const start = clock.now()
  const pings: number[] = []
  const deaths: number[] = []
  const state = { open: o.open ?? true }
  const l = new Liveness({
    clock,
    pingMs: PING,
    deadMs: DEAD,
    ping: () => {
      if (!state.open) return false
      pings.push(clock.now() - start)
      return true
    },
    dead: (silentMs) => deaths.push(silentMs),
    ...o,
  })
  if (state.open) l.seen()
  t.teardown(() => l.stop())
  /** Advances `ms` in steps of at most `step`, with a turn after each (a steady clock). */
  const run = async (ms: number, step = 100): Promise<void> => {
    for (let left = ms; left > 0; left -= step) {
      clock.advance(Math.min(step, left))
      await settle()
    }
  }
  return { clock, start, pings, deaths, l, state, run, at: () => clock.now() - start }
}

t.test('pings after pingMs without a frame, one ping at a time; after an answer, pingMs later again', async (t) => {
  const p = probe()
  await turn()
  await p.run(PING - 100)
  t.same(p.pings, [], 'not before pingMs')
  await p.run(100)
  t.same(p.pings, [PING])
  await p.run(DEAD - PING - 100)
  t.same(p.pings, [PING], 'no second ping while the first is unanswered')
  p.l.seen()
  await p.run(PING - 100)
  t.same(p.pings, [PING])
  await p.run(100)
  t.same(p.pings, [PING, DEAD - 100 + PING], 'pingMs after the answer')
})

t.test('a frame postpones the next ping: a busy connection is not pinged', async (t) => {
  const p = probe()
  await turn()
  for (let i = 0; i < 20; i++) {
    await p.run(1_000)
    p.l.seen()
  }
  t.same(p.pings, [], 'no ping while frames arrive every second')
  t.same(p.deaths, [])
  await p.run(PING)
  t.same(p.pings, [20_000 + PING], 'pinged pingMs after the last frame')
})

t.test('the peer is dead deadMs after the last frame, once; a pong in time keeps it alive', async (t) => {
  const p = probe()
  await turn()
  await p.run(PING)
  p.l.seen() // the pong
  await p.run(DEAD - 100)
  t.same(p.deaths, [], 'the pong counted')
  const last = p.at() - (DEAD - 100)
  await p.run(100)
  t.same(p.deaths, [DEAD], 'dead exactly deadMs after the pong')
  t.equal(p.at() - last, DEAD)
  await p.run(10 * DEAD)
  t.same(p.deaths, [DEAD], 'reported once')
  t.equal(p.clock.pendingTimers, 0, 'and no timer is left')
})

t.test('a connection still opening counts as a probe: no answer within deadMs is death', async (t) => {
  const p = probe({ open: false })
  await turn()
  await p.run(DEAD - 100)
  t.same(p.pings, [], 'nothing can be pinged yet')
  t.same(p.deaths, [])
  await p.run(100)
  t.same(p.deaths, [DEAD])
})

t.test('stop() before or after arming: no ping, no death, no timer', async (t) => {
  const early = probe()
  early.l.stop()
  await turn()
  t.equal(early.clock.pendingTimers, 0)
  const late = probe()
  await turn()
  t.equal(late.clock.pendingTimers, 1)
  late.l.stop()
  await late.run(10 * DEAD)
  t.same(late.pings, [])
  t.same(late.deaths, [])
})

t.test('a clock that jumps a day ahead fires one tick and gives the peer deadMs - pingMs more to answer', async (t) => {
  const p = probe()
  await turn()
  p.clock.advance(DAY)
  t.same(p.pings, [PING], 'one ping, not one per pingMs of the jump')
  t.same(p.deaths, [], 'and no death without a turn of the event loop')
  await turn()
  p.clock.advance(0)
  t.same(p.deaths, [], 'the ping has only just gone out')
  await p.run(DEAD - PING - 100)
  t.same(p.deaths, [])
  await p.run(100)
  t.same(p.deaths, [DAY + DEAD - PING], 'dead once the ping went unanswered for deadMs - pingMs')

  const q = probe()
  await turn()
  q.clock.advance(DAY)
  await turn()
  q.l.seen() // the pong arrives after the jump
  await q.run(DEAD - 100)
  t.same(q.deaths, [], 'a pong after the jump keeps it alive')

  const r = probe()
  await turn()
  r.clock.advance(DAY)
  await turn()
  r.clock.advance(0) // the deadline tick: too soon to judge, it pings nothing and re-arms a turn later
  r.l.seen() // the pong lands between that tick and its arming
  await turn()
  t.equal(r.clock.pendingTimers, 1, 'one timer, for the next ping')
  await r.run(PING)
  t.same(r.pings, [PING, DAY + PING], 'pinged pingMs after the pong')
  t.same(r.deaths, [])
})

t.test('an answer already waiting when the deadline passes saves the peer: death waits for a poll for I/O', async (t) => {
  const p = probe()
  await settle()
  await p.run(PING)
  t.same(p.pings, [PING])
  p.clock.advance(DAY) // the deadline passes in one jump, the pong still unread
  p.l.seen() // ...and is read in the next poll, before the death is confirmed
  await settle()
  t.same(p.deaths, [])
  t.equal(p.clock.pendingTimers, 1, 'armed again, for the next ping')
})

t.test('a wall clock stepped either way neither kills a live peer nor keeps a dead one', async (t) => {
  for (const step of [-3 * HOUR, 3 * HOUR]) {
    const p = probe()
    await p.run(1_000)
    p.clock.jump(step)
    await p.run(1_000)
    t.same(p.deaths, [], `${step > 0 ? '+' : '-'}3 h: alive while it answers within deadMs`)
    p.l.seen()
    p.clock.jump(-step)
    await p.run(DEAD + 500)
    t.same(p.deaths, [DEAD], `${step > 0 ? '+' : '-'}3 h: dead deadMs after its last frame, whatever the wall clock did`)
  }
})

t.test('a monotonic reading stepping backwards does not blind the check', async (t) => {
  const clock = new SteppedClock()
  const deaths: number[] = []
  const l = new Liveness({ clock, pingMs: PING, deadMs: DEAD, ping: () => true, dead: (ms) => deaths.push(ms) })
  t.teardown(() => l.stop())
  l.seen()
  await turn()
  clock.fake.advance(1_000)
  clock.offset = -DAY
  for (let ms = 0; ms < DEAD; ms += 100) {
    clock.fake.advance(100)
    await settle()
  }
  t.same(deaths, [], 'not yet: the count restarted at the step')
  for (let ms = 0; ms < 1_000; ms += 100) {
    clock.fake.advance(100)
    await settle()
  }
  t.same(deaths, [DEAD], 'dead deadMs after the step, not a day later')
})

t.test('times must be integers with 0 < pingMs < deadMs', async (t) => {
  const clock = new FakeClock()
  const base = { clock, ping: () => true, dead: () => {} }
  for (const [pingMs, deadMs] of [[0, 10], [10, 10], [20, 10], [1.5, 10], [1, Number.POSITIVE_INFINITY]] as const) {
    t.throws(() => new Liveness({ ...base, pingMs, deadMs }), RangeError, `${pingMs}/${deadMs}`)
  }
  new Liveness({ ...base, pingMs: 1, deadMs: 2 }).stop()
})
