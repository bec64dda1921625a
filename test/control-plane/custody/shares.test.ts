// Shares of the master key (custody/shares.ts): the library splits and combines; this
// file's text form, its refusals, and the in-memory unseal progress.
import t from 'tap'
import { randomBytes } from 'node:crypto'

import { checkShareCounts, combineShares, parseShare, splitMasterKey, UnsealProgress } from '../../../control-plane/src/custody/shares.js'
import { FakeClock } from '../../kit/fake-clock.js'

const installation = '0123456789abcdef'

t.test('any threshold of the shares gives the key back; fewer give another', async (t) => {
  const key = new Uint8Array(randomBytes(32))
  const texts = await splitMasterKey(key, installation, 5, 3)
  t.equal(texts.length, 5)
  for (const s of texts) t.match(s, /^kms1-0123456789abcdef-[A-Za-z0-9_-]{44}$/)
  const parsed = texts.map((s) => parseShare(s, installation))
  t.same(await combineShares([parsed[0]!, parsed[2]!, parsed[4]!]), key)
  t.same(await combineShares([parsed[4]!, parsed[1]!, parsed[3]!]), key)
  t.notSame(await combineShares([parsed[0]!, parsed[1]!]), key, 'two are not enough')
  const sameX = parsed[0]!.slice()
  sameX[0] = sameX[0]! ^ 1 // another y, the same x (the last byte)
  t.equal((await combineShares([parsed[0]!, sameX, parsed[1]!])).length, 0, 'two shares with one x coordinate give no key at all')
})

t.test('share texts of another form or installation are refused without quoting them', async (t) => {
  const [one] = await splitMasterKey(new Uint8Array(32).fill(1), installation, 2, 2)
  t.throws(() => parseShare(`${one} trailing`, installation), { code: 'CP_ERR_INVALID_FIELD', message: /not a keymesh unseal share/ })
  t.throws(() => parseShare(one!, 'fedcba9876543210'), { message: /belongs to installation 0123456789abcdef, this is fedcba9876543210/ })
  const err = t.throws(() => parseShare('kms1-xyz', installation)) as Error
  t.notMatch(err.message, /xyz/)
  t.same(parseShare(`  ${one}\n`, installation).length, 33, 'whitespace around it is fine')
})

t.test('share counts are the library\'s bounds, at most 16', async (t) => {
  t.doesNotThrow(() => checkShareCounts(2, 2))
  t.doesNotThrow(() => checkShareCounts(16, 16))
  t.throws(() => checkShareCounts(17, 2), { code: 'CP_ERR_USAGE', message: /--shares/ })
  t.throws(() => checkShareCounts(5, 1), { code: 'CP_ERR_USAGE', message: /--threshold/ })
  t.throws(() => checkShareCounts(3, 4), { message: /--threshold must be an integer from 2 to --shares \(3\)/ })
  t.throws(() => checkShareCounts(2.5, 2), { message: /--shares/ })
})

t.test('progress: distinct shares up to the threshold, forgotten after the timeout or a reset', async (t) => {
  const clock = new FakeClock()
  const p = new UnsealProgress(3, clock, 1000)
  const share = (n: number): Uint8Array => new Uint8Array(33).fill(n)
  t.equal(p.add(share(1)), null)
  t.equal(p.add(share(1)), null, 'the same share again')
  t.same(p.status(), { have: 1, threshold: 3 })
  clock.advance(1001)
  t.same(p.status(), { have: 0, threshold: 3 }, 'forgotten after the timeout')
  p.add(share(1))
  p.add(share(2))
  p.reset()
  t.same(p.status(), { have: 0, threshold: 3 })
  p.add(share(1))
  p.add(share(2))
  const all = p.add(share(3))
  t.same(all?.map((s) => s[0]), [1, 2, 3], 'the third gives the set to combine')
  t.same(p.status(), { have: 0, threshold: 3 }, 'and progress is cleared')
})
