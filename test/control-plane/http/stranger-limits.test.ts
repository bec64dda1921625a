import t from 'tap'

import { cpError } from '../../../control-plane/src/errors.js'
import { StrangerLimits, TARGET_CHARS, cutPath, type StrangerRecord, type StrangerRequest } from '../../../control-plane/src/http/stranger-limits.js'
import { FakeClock, MINUTE, SECOND } from '../../kit/fake-clock.js'

function harness(limits: ConstructorParameters<typeof StrangerLimits>[0] = {}) {
  const clock = new FakeClock()
  const records: StrangerRecord[] = []
  let limited = 0
  const s = new StrangerLimits(limits, clock, {
    record: async (r) => { records.push(r) },
    onLimited: () => { limited++ },
  })
  return { clock, s, records, limited: () => limited }
}

const req = (remoteAddress: string | undefined, code = 'CP_ERR_UNAUTHENTICATED', path = '/v1/keys'): StrangerRequest =>
  ({ remoteAddress, method: 'GET', path, operation: 'key.list', error: cpError(code as 'CP_ERR_UNAUTHENTICATED') })

t.test('a source is admitted for its burst of failures, then refused until a token flows in', async (t) => {
  const { clock, s, limited } = harness({ perSecond: 20, burst: 40 })
  for (let i = 0; i < 40; i++) t.not(s.admit('10.0.0.1'), null)
  t.equal(s.admit('10.0.0.1'), null)
  t.equal(s.admit('10.0.0.1'), null)
  t.equal(limited(), 2)
  t.equal(s.retryAfterSeconds, 1)
  // Another source has its own budget.
  t.not(s.admit('10.0.0.2'), null)
  clock.advance(50) // one token at 20 per second
  t.not(s.admit('10.0.0.1'), null)
  t.equal(s.admit('10.0.0.1'), null)
  clock.advance(2 * SECOND)
  for (let i = 0; i < 40; i++) t.not(s.admit('10.0.0.1'), null, 'the bucket refilled to its burst')
  t.equal(s.admit('10.0.0.1'), null)
})

t.test('requests that authenticate give their token back and are never limited', async (t) => {
  const { s } = harness({ perSecond: 1, burst: 2 })
  for (let i = 0; i < 1000; i++) {
    const ticket = s.admit('10.0.0.1')
    if (ticket === null) return t.fail('refused an authenticated caller')
    ticket.refund()
    ticket.refund() // once only
  }
  t.equal(s.sources, 0, 'a full bucket is forgotten')
  // Failures still spend the budget.
  t.not(s.admit('10.0.0.1'), null)
  t.not(s.admit('10.0.0.1'), null)
  t.equal(s.admit('10.0.0.1'), null)
})

t.test('IPv6 sources count by their /64; IPv4-mapped addresses as IPv4', async (t) => {
  const { s } = harness({ perSecond: 1, burst: 1 })
  t.not(s.admit('2001:db8:1:2::1'), null)
  t.equal(s.admit('2001:db8:1:2:ffff::9'), null, 'same /64')
  t.not(s.admit('2001:db8:1:3::1'), null, 'another /64')
  t.not(s.admit('192.0.2.7'), null)
  t.equal(s.admit('::ffff:192.0.2.7'), null)
})

t.test('at most maxSources buckets are kept; the least recently used is forgotten', async (t) => {
  const { s } = harness({ perSecond: 1, burst: 1, maxSources: 3 })
  t.not(s.admit('10.0.0.1'), null)
  t.not(s.admit('10.0.0.2'), null)
  t.not(s.admit('10.0.0.3'), null)
  t.equal(s.admit('10.0.0.1'), null, 'touching .1 makes .2 the oldest')
  t.not(s.admit('10.0.0.4'), null)
  t.equal(s.sources, 3)
  t.not(s.admit('10.0.0.2'), null, '.2 was forgotten and starts full')
  t.equal(s.admit('10.0.0.1'), null, '.1 was kept')
})

t.test('a refund after its bucket was evicted touches nothing', async (t) => {
  const { s } = harness({ perSecond: 1, burst: 2, maxSources: 1 })
  const ticket = s.admit('10.0.0.1')
  t.not(s.admit('10.0.0.2'), null)
  ticket?.refund()
  t.equal(s.sources, 1)
  t.not(s.admit('10.0.0.2'), null)
  t.equal(s.admit('10.0.0.2'), null, '.2 did not get .1\'s token')
})

t.test('the first refusal of a source and code is recorded at once, the rest summarised when the window ends', async (t) => {
  const { clock, s, records } = harness({ auditWindowMs: MINUTE })
  await s.refused(req('10.0.0.1'))
  for (let i = 0; i < 99; i++) await s.refused(req('10.0.0.1'))
  await s.refused(req('10.0.0.1', 'CP_ERR_RATE_LIMITED'))
  await s.refused(req('10.0.0.2'))
  t.same(records.map((r) => [r.kind, r.source, r.code]), [
    ['first', '10.0.0.1', 'CP_ERR_UNAUTHENTICATED'],
    ['first', '10.0.0.1', 'CP_ERR_RATE_LIMITED'],
    ['first', '10.0.0.2', 'CP_ERR_UNAUTHENTICATED'],
  ])
  t.match(records[0], { kind: 'first', target: 'http:GET /v1/keys', request: { operation: 'key.list' } })
  clock.advance(MINUTE - 1)
  t.equal(records.length, 3, 'nothing before the window ends')
  clock.advance(1)
  await s.idle()
  t.same(records.slice(3), [{ kind: 'summary', source: '10.0.0.1', code: 'CP_ERR_UNAUTHENTICATED', count: 99 }])
  // A quiet window writes nothing, and then the pair is forgotten: the next refusal is a first again.
  clock.advance(2 * MINUTE)
  t.equal(records.length, 4)
  await s.refused(req('10.0.0.1'))
  t.equal(records.at(-1)?.kind, 'first')
  s.close()
})

t.test('targets keep at most TARGET_CHARS characters of the path', async (t) => {
  const { s, records } = harness()
  const long = '/v1/keys/' + 'a'.repeat(8192)
  await s.refused(req('10.0.0.1', 'CP_ERR_UNAUTHENTICATED', long))
  const r = records[0]
  if (r?.kind !== 'first') return t.fail('no first record')
  t.equal(r.target, `http:GET ${long.slice(0, TARGET_CHARS)}…`)
  t.equal(cutPath('/short'), '/short')
  t.equal(cutPath('x'.repeat(TARGET_CHARS)), 'x'.repeat(TARGET_CHARS))
  s.close()
})

t.test('a failing record does not break the tally or idle()', async (t) => {
  const clock = new FakeClock()
  let calls = 0
  const s = new StrangerLimits({ auditWindowMs: SECOND }, clock, {
    record: async () => { calls++; throw new Error('store down') },
  })
  await t.rejects(s.refused(req('10.0.0.1')), /store down/)
  await s.refused(req('10.0.0.1'))
  clock.advance(SECOND)
  await s.idle()
  t.equal(calls, 2, 'the first and the summary were both attempted')
  t.equal(s.admit('10.0.0.1') !== null, true, 'no onLimited hook needed')
  s.close()
  s.close()
})

t.test('limits must be positive integers', async (t) => {
  const clock = new FakeClock()
  const hooks = { record: async () => {} }
  t.throws(() => new StrangerLimits({ perSecond: 0 }, clock, hooks), RangeError)
  t.throws(() => new StrangerLimits({ burst: 1.5 }, clock, hooks), RangeError)
  t.throws(() => new StrangerLimits({ maxSources: -1 }, clock, hooks), RangeError)
})
