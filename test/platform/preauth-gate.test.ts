// The gate both listeners share: limiter, replay cache and refusal summaries.
import t from 'tap'
import { PreauthGate, DEFAULT_PREAUTH_LIMITS, EPHEMERAL_BYTES } from '../../platform/src/index.js'
import { FakeClock, MINUTE } from '../kit/fake-clock.js'

function gate() {
  const clock = new FakeClock()
  const reports: Array<[string, string, number]> = []
  const g = new PreauthGate(DEFAULT_PREAUTH_LIMITS, clock, { windowMs: MINUTE, report: (s, c, n) => void reports.push([s, c, n]) })
  return { clock, g, reports }
}

t.test('the first refusal of a source and code is reported at once, the rest in the window summary', async (t) => {
  const { clock, g, reports } = gate()
  g.note('10.0.0.1', 'X_ERR_A')
  for (let i = 0; i < 99; i++) g.note('10.0.0.1', 'X_ERR_A')
  g.note('10.0.0.2', 'X_ERR_A')
  await g.idle()
  t.same(reports, [['10.0.0.1', 'X_ERR_A', 1], ['10.0.0.2', 'X_ERR_A', 1]], 'another source is its own window')
  clock.advance(MINUTE)
  await g.idle()
  t.same(reports.slice(2), [['10.0.0.1', 'X_ERR_A', 99]], 'one summary for the 99 more; none for a source with no more')
  g.close()
})

t.test('a first refusal can be reported the caller\'s way; the summary by the gate', async (t) => {
  const { clock, g, reports } = gate()
  const firsts: string[] = []
  g.note('10.0.0.1', 'X_ERR_B', async () => void firsts.push('in full'))
  g.note('10.0.0.1', 'X_ERR_B', async () => void firsts.push('in full'))
  await g.idle()
  t.same(firsts, ['in full'])
  t.same(reports, [])
  clock.advance(MINUTE)
  await g.idle()
  t.same(reports, [['10.0.0.1', 'X_ERR_B', 1]])
  g.close()
})

t.test('a first message is a replay when its ephemeral key was seen; a short one is left to the handshake', async (t) => {
  const { g } = gate()
  const m = new Uint8Array(EPHEMERAL_BYTES + 16).fill(3)
  t.equal(g.replayed(m), false)
  t.equal(g.replayed(m), true)
  t.equal(g.replayed(new Uint8Array(8)), false)
  t.equal(g.replayed(new Uint8Array(8)), false)
  t.equal(typeof g.open('10.0.0.1'), 'object', 'an idle slot')
  t.equal(g.underLoad, false)
  g.close()
})

t.test('close reports the counts not yet summarised; a note after close is ignored and arms no timer', async (t) => {
  const { clock, g, reports } = gate()
  g.note('10.0.0.1', 'X_ERR_C')
  g.note('10.0.0.1', 'X_ERR_C')
  g.note('10.0.0.1', 'X_ERR_C')
  g.note('10.0.0.2', 'X_ERR_C')
  await g.idle()
  t.same(reports, [['10.0.0.1', 'X_ERR_C', 1], ['10.0.0.2', 'X_ERR_C', 1]])
  g.close()
  await g.idle()
  t.same(reports.slice(2), [['10.0.0.1', 'X_ERR_C', 2]], 'the two not yet summarised are reported at close')
  g.close()
  g.note('10.0.0.3', 'X_ERR_C')
  await g.idle()
  t.equal(reports.length, 3, 'a note after close is ignored')
  t.equal(clock.pendingTimers, 0, 'no timer re-armed')
  clock.advance(MINUTE)
  t.equal(reports.length, 3, 'nothing more')
})
