import t from 'tap'

import { RefusalSummaries } from '../../platform/src/refusal-summaries.js'
import type { TallyEntry } from '../../platform/src/refusal-tally.js'
import { FakeClock, MINUTE } from '../kit/fake-clock.js'

t.test('the first refusal of a window is recorded by its caller, the rest by the summary when the window ends', async (t) => {
  const clock = new FakeClock()
  const summaries: TallyEntry[] = []
  const firsts: TallyEntry[] = []
  const s = new RefusalSummaries({ windowMs: MINUTE, maxKeys: 2 }, clock, async (e) => { summaries.push(e) })
  const first = async (e: TallyEntry): Promise<void> => { firsts.push(e) }
  await s.note('a', 'X', first)
  await s.note('a', 'X', first)
  await s.note('a', 'X', first)
  await s.note('b', 'X', first)
  await s.note('c', 'X', first) // past maxKeys: counted as (other)
  t.same(firsts, [{ source: 'a', reason: 'X', count: 1 }, { source: 'b', reason: 'X', count: 1 }, { source: '(other)', reason: 'X', count: 1 }])
  clock.advance(MINUTE)
  await s.idle()
  t.same(summaries, [{ source: 'a', reason: 'X', count: 2 }])
  // The window of `a` went on; a quiet one is forgotten and the timer stops.
  clock.advance(MINUTE)
  await s.idle()
  t.equal(summaries.length, 1)
  await s.note('a', 'X', first)
  t.equal(firsts.length, 4, 'a new window opens with a first entry')
  s.close()
  s.close()
})

t.test('a failing write is returned to its caller and does not stop idle() or later summaries', async (t) => {
  const clock = new FakeClock()
  let summaries = 0
  const s = new RefusalSummaries({ windowMs: MINUTE, maxKeys: 8 }, clock, async () => { summaries++; throw new Error('store down') })
  await t.rejects(s.note('a', 'X', async () => { throw new Error('first failed') }), /first failed/)
  await s.note('a', 'X', async () => {})
  clock.advance(MINUTE)
  await s.idle()
  t.equal(summaries, 1)
  await s.note('a', 'X', async () => {})
  clock.advance(MINUTE)
  await s.idle()
  t.equal(summaries, 2, 'the timer was armed again after a failed summary')
  s.close()
})

t.test('close stops the timer and summarises open windows at once; later refusals are not counted', async (t) => {
  const clock = new FakeClock()
  const summaries: number[] = []
  const s = new RefusalSummaries({ windowMs: MINUTE, maxKeys: 8 }, clock, async (e) => { summaries.push(e.count) })
  await s.note('a', 'X', async () => {})
  await s.note('a', 'X', async () => {})
  s.close()
  await s.idle()
  t.same(summaries, [1], 'the one not yet summarised, at close')
  let firsts = 0
  await s.note('b', 'X', async () => { firsts++ })
  clock.advance(2 * MINUTE)
  await s.idle()
  t.same(summaries, [1], 'no timer after close')
  t.equal(firsts, 0, 'a refusal after close is not recorded')
})
