import t from 'tap'

import { nodeSuite } from '../../protocol/src/crypto/node-provider.js'
import { CipherState } from '../../protocol/src/noise/cipher-state.js'
import { MAX_RECORD_PAYLOAD, RecordSession, recycleRecord } from '../../protocol/src/record.js'

// record.ts recycles the wire buffers of large records that a transport hands back
// once written (recycleRecord); these tests pin down what it takes back and that a
// reused buffer still carries exactly its own record.

function pair(): { a: RecordSession; b: RecordSession } {
  const ab = new Uint8Array(32).fill(1)
  const ba = new Uint8Array(32).fill(2)
  return {
    a: new RecordSession({ send: new CipherState(nodeSuite, ab), recv: new CipherState(nodeSuite, ba) }),
    b: new RecordSession({ send: new CipherState(nodeSuite, ba), recv: new CipherState(nodeSuite, ab) }),
  }
}

const big = (fill: number, n = MAX_RECORD_PAYLOAD): Uint8Array => new Uint8Array(n).fill(fill)

t.test('a recycled large record buffer carries the next record, which still opens', async (t) => {
  const { a, b } = pair()
  const w1 = a.seal(big(1))
  t.same(b.open(w1), { type: 'data', data: Buffer.from(big(1)) })
  recycleRecord(w1)
  const w2 = a.seal(big(2, 30_000))
  t.equal(w2.buffer, w1.buffer, 'the buffer was reused')
  t.equal(w2.length, 30_000 + 25)
  t.same(b.open(w2), { type: 'data', data: Buffer.from(big(2, 30_000)) })
})

t.test('a buffer recycled twice is taken back once: two live records never share it', async (t) => {
  const { a } = pair()
  const w = a.seal(big(3))
  recycleRecord(w)
  recycleRecord(w)
  const x = a.seal(big(4))
  const y = a.seal(big(5))
  t.not(x.buffer, y.buffer)
  t.equal(x.buffer, w.buffer)
})

t.test('buffers that are not pooled record buffers are ignored', async (t) => {
  const { a } = pair()
  const foreign = new Uint8Array(65_535)
  recycleRecord(foreign)
  const small = a.seal(big(6, 100))
  recycleRecord(small)
  const w = a.seal(big(7))
  t.not(w.buffer, foreign.buffer, 'a foreign buffer is never handed out')
  t.not(w.buffer, small.buffer, 'small records are not pooled')
  t.equal(foreign.every((v) => v === 0), true, 'a foreign buffer is never written')
})
