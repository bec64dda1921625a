import t from 'tap'

import { nodeSuite } from '../../protocol/src/crypto/node-provider.js'
import { CipherState } from '../../protocol/src/noise/cipher-state.js'
import { NoiseChannel } from '../../protocol/src/channel.js'
import { PROTO_ERRORS, type KeymeshError } from '../../protocol/src/errors.js'
import { HandshakeState } from '../../protocol/src/noise/handshake-state.js'
import {
  MAX_CLOSE_REASON_BYTES,
  MAX_RECORD_PAYLOAD,
  RECORD_HANDSHAKE,
  RECORD_OVERHEAD,
  RECORD_REKEY,
  RecordSession,
  resolveRecordLimits,
  type RecordLimits,
} from '../../protocol/src/record.js'
import { codeOf } from '../kit/errors.js'

const key = (fill: number): Uint8Array => new Uint8Array(32).fill(fill)

/** Two ends of one session: a's sending keys are b's receiving keys and back. */
function pair(limits: RecordLimits = {}): { a: RecordSession; b: RecordSession } {
  const ab = key(1)
  const ba = key(2)
  return {
    a: new RecordSession({ send: new CipherState(nodeSuite, ab), recv: new CipherState(nodeSuite, ba), ...limits }),
    b: new RecordSession({ send: new CipherState(nodeSuite, ba), recv: new CipherState(nodeSuite, ab), ...limits }),
  }
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const code = codeOf
const counters = (s: RecordSession) => ({ recordsSent: s.recordsSent, bytesSent: s.bytesSent, recordsReceived: s.recordsReceived, bytesReceived: s.bytesReceived })

t.test('carries data from one side to the other and back', async (t) => {
  const { a, b } = pair()
  const w = a.seal(text('hello'))
  t.equal(w.length, 5 + RECORD_OVERHEAD)
  t.equal(w[0], 1)
  t.same(b.open(w), { type: 'data', data: Buffer.from('hello') })
  t.same(a.open(b.seal(text('back'))), { type: 'data', data: Buffer.from('back') })
  t.same(b.open(a.seal(new Uint8Array(0))), { type: 'data', data: Buffer.alloc(0) })
  t.equal(a.state, 'open')
})

t.test('writes the counter big-endian and authenticates the header', async (t) => {
  const { a, b } = pair()
  b.open(a.seal(text('x')))
  const w = a.seal(text('y'))
  t.same([...w.subarray(1, 9)], [0, 0, 0, 0, 0, 0, 0, 1])
  const flipped = new Uint8Array(w)
  flipped[0] = 3 // a valid type, so only the AEAD can notice
  t.equal(code(() => b.open(flipped)), 'PROTO_ERR_DECRYPT')
})

t.test('seals a payload of exactly the maximum and rejects one byte more', async (t) => {
  const { a, b } = pair()
  const big = new Uint8Array(MAX_RECORD_PAYLOAD).fill(7)
  const w = a.seal(big)
  t.equal(w.length, 65_535)
  const r = b.open(w)
  t.equal(r.type === 'data' && r.data.length, MAX_RECORD_PAYLOAD)
  t.equal(code(() => a.seal(new Uint8Array(MAX_RECORD_PAYLOAD + 1))), 'PROTO_ERR_RECORD_TOO_LARGE')
  t.equal(a.state, 'open', 'a refused send does not fail the session')
})

t.test('rejects a record whose counter repeats', async (t) => {
  const { a, b } = pair()
  const w = a.seal(text('once'))
  b.open(w)
  t.equal(code(() => b.open(w)), 'PROTO_ERR_RECORD_COUNTER')
  t.equal(b.state, 'failed')
})

t.test('rejects records that arrive out of order', async (t) => {
  const { a, b } = pair()
  const w0 = a.seal(text('0'))
  const w1 = a.seal(text('1'))
  t.equal(code(() => b.open(w1)), 'PROTO_ERR_RECORD_COUNTER')
  t.equal(code(() => b.open(w0)), 'PROTO_ERR_SESSION_FAILED')
})

t.test('rejects a gap in the counter', async (t) => {
  const { a, b } = pair()
  a.seal(text('lost'))
  t.equal(code(() => b.open(a.seal(text('next')))), 'PROTO_ERR_RECORD_COUNTER')
})

t.test('rejects a counter beyond 2^53 without decrypting', async (t) => {
  const { a, b } = pair()
  const w = a.seal(text('x'))
  w[1] = 0xff
  t.equal(code(() => b.open(w)), 'PROTO_ERR_RECORD_COUNTER')
})

t.test('rejects a record with any single bit flipped', async (t) => {
  const { a } = pair()
  const w = a.seal(text('a short message'))
  const counts = new Map<string, number>()
  for (let i = 0; i < w.length * 8; i++) {
    const { b } = pair()
    const bad = new Uint8Array(w)
    bad[i >> 3] = (bad[i >> 3] as number) ^ (1 << (i & 7))
    const c = code(() => b.open(bad)) ?? 'accepted'
    counts.set(c, (counts.get(c) ?? 0) + 1)
    t.equal(b.state, 'failed')
  }
  t.notOk(counts.has('accepted'), 'no flipped record is accepted')
  t.same([...counts.keys()].sort(), ['PROTO_ERR_DECRYPT', 'PROTO_ERR_RECORD_COUNTER', 'PROTO_ERR_RECORD_TYPE'])
})

t.test('rejects a truncated or extended record', async (t) => {
  const { a } = pair()
  const w = a.seal(text('truncate me'))
  for (let n = 0; n < w.length; n++) {
    const { b } = pair()
    const c = code(() => b.open(w.subarray(0, n)))
    t.equal(c, n < RECORD_OVERHEAD ? 'PROTO_ERR_RECORD_MALFORMED' : 'PROTO_ERR_DECRYPT', `at ${n} bytes`)
  }
  const { b } = pair()
  t.equal(code(() => b.open(Buffer.concat([w, Buffer.from([0])]))), 'PROTO_ERR_DECRYPT')
  const { b: b2 } = pair()
  t.equal(code(() => b2.open('not bytes' as unknown as Uint8Array)), 'PROTO_ERR_RECORD_MALFORMED')
})

t.test('rejects a record larger than maxRecordBytes before decrypting', async (t) => {
  const { a, b } = pair({ maxRecordBytes: 100 })
  t.equal(a.maxPayload, 100 - RECORD_OVERHEAD)
  t.equal(code(() => b.open(new Uint8Array(101).fill(1))), 'PROTO_ERR_RECORD_TOO_LARGE')
  t.equal(code(() => a.seal(new Uint8Array(76))), 'PROTO_ERR_RECORD_TOO_LARGE')
  const { b: big } = pair()
  t.equal(code(() => big.open(new Uint8Array(65_536).fill(1))), 'PROTO_ERR_RECORD_TOO_LARGE')
})

t.test('rejects an unknown record type', async (t) => {
  for (const type of [0, 5, 255]) {
    const { a, b } = pair()
    const w = a.seal(text('x'))
    w[0] = type
    t.equal(code(() => b.open(w)), 'PROTO_ERR_RECORD_TYPE', `type ${type}`)
  }
})

t.test('stays failed after any receive error', async (t) => {
  const { a, b } = pair()
  const good = a.seal(text('good'))
  t.equal(code(() => b.open(new Uint8Array(3))), 'PROTO_ERR_RECORD_MALFORMED')
  t.equal(code(() => b.open(good)), 'PROTO_ERR_SESSION_FAILED')
  t.equal(code(() => b.seal(text('x'))), 'PROTO_ERR_SESSION_FAILED')
  t.equal(code(() => b.sealClose(1000)), 'PROTO_ERR_SESSION_FAILED')
  t.equal(b.state, 'failed')
})

t.test('destroy wipes the keys and fails the session', async (t) => {
  const { a } = pair()
  a.destroy()
  a.destroy()
  t.equal(a.state, 'failed')
  t.equal(code(() => a.seal(text('x'))), 'PROTO_ERR_SESSION_FAILED')
})

t.test('carries an authenticated close code and reason', async (t) => {
  const { a, b } = pair()
  const w = a.sealClose(4000, 'rotation — done')
  t.equal(a.state, 'closed-local')
  t.same(b.open(w), { type: 'close', code: 4000, reason: 'rotation — done' })
  t.equal(b.state, 'closed-remote')
  t.equal(code(() => a.seal(text('after'))), 'PROTO_ERR_SESSION_CLOSED')
  t.equal(code(() => a.sealClose(1000)), 'PROTO_ERR_SESSION_CLOSED')
})

t.test('keeps the other direction open after a close, like a TCP half-close', async (t) => {
  const { a, b } = pair()
  b.open(a.sealClose(1000))
  t.same(a.open(b.seal(text('still here'))), { type: 'data', data: Buffer.from('still here') })
  t.same(a.open(b.sealClose(1000, '')), { type: 'close', code: 1000, reason: '' })
  t.equal(a.state, 'closed')
  t.equal(b.state, 'closed')
})

t.test('rejects records after the peer closed', async (t) => {
  const { a, b } = pair()
  const close = a.sealClose(1000)
  b.open(close)
  t.equal(code(() => b.open(close)), 'PROTO_ERR_SESSION_CLOSED')
  t.equal(b.state, 'closed-remote')
})

t.test('accepts the longest close reason and refuses a longer one or a bad code', async (t) => {
  const { a, b } = pair()
  t.equal(code(() => a.sealClose(1000, 'x'.repeat(MAX_CLOSE_REASON_BYTES + 1))), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => a.sealClose(1000, 'é'.repeat(62))), 'PROTO_ERR_INVALID_ARGUMENT', 'counts UTF-8 bytes')
  t.equal(code(() => a.sealClose(-1)), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => a.sealClose(65_536)), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => a.sealClose(1.5)), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => a.sealClose(1000, 5 as unknown as string)), 'PROTO_ERR_INVALID_ARGUMENT')
  const reason = 'r'.repeat(MAX_CLOSE_REASON_BYTES)
  t.same(b.open(a.sealClose(65_535, reason)), { type: 'close', code: 65_535, reason })
})

/** A record sealed directly with the CipherState, to forge well-authenticated bad payloads. */
function forge(send: CipherState, type: number, payload: Uint8Array): Uint8Array {
  const header = new Uint8Array(9)
  header[0] = type
  new DataView(header.buffer).setUint32(5, send.nonce)
  return Buffer.concat([header, send.encryptWithAd(header, payload)])
}

/** A REKEY record as a peer that rekeys sends it (keymesh sends none): sealed, then the sending key moves on. */
function rekeyRecord(send: CipherState): Uint8Array {
  const wire = forge(send, RECORD_REKEY, new Uint8Array(0))
  send.rekey()
  return wire
}

/** A pair whose `a` side also exposes its sending CipherState, to put REKEY records among its own. */
function rekeyPair(limits: RecordLimits = {}): { a: RecordSession; b: RecordSession; aSend: CipherState } {
  const aSend = new CipherState(nodeSuite, key(1))
  return {
    aSend,
    a: new RecordSession({ send: aSend, recv: new CipherState(nodeSuite, key(2)), ...limits }),
    b: new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, key(1)), ...limits }),
  }
}

t.test('rejects an authenticated close with a malformed payload', async (t) => {
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['one byte', new Uint8Array(1)],
    ['reason too long', new Uint8Array(2 + MAX_CLOSE_REASON_BYTES + 1)],
    ['reason not UTF-8', new Uint8Array([3, 232, 0xff, 0xfe])],
  ]
  for (const [name, payload] of cases) {
    const send = new CipherState(nodeSuite, key(1))
    const b = new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, key(1)) })
    t.equal(code(() => b.open(forge(send, 2, payload))), 'PROTO_ERR_RECORD_MALFORMED', name)
    t.equal(b.state, 'failed')
  }
})

t.test('rejects a rekey record that carries a payload', async (t) => {
  const send = new CipherState(nodeSuite, key(1))
  const b = new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, key(1)) })
  t.equal(code(() => b.open(forge(send, 3, new Uint8Array(1)))), 'PROTO_ERR_RECORD_MALFORMED')
})

t.test('moves a live session to new keys with a rekey record', async (t) => {
  const { a, b, aSend } = rekeyPair()
  t.same(b.open(a.seal(text('before'))), { type: 'data', data: Buffer.from('before') })
  const before = a.seal(text('sealed before rekey'))
  const rekey = rekeyRecord(aSend)
  const after = a.seal(text('after'))
  t.same([...rekey.subarray(1, 9)], [0, 0, 0, 0, 0, 0, 0, 2], 'the counter continues')
  t.same(b.open(before), { type: 'data', data: Buffer.from('sealed before rekey') })
  t.same(b.open(rekey), { type: 'rekey' })
  t.same(b.open(after), { type: 'data', data: Buffer.from('after') })
  t.same(a.open(b.seal(text('reply'))), { type: 'data', data: Buffer.from('reply') }, 'the other direction is unaffected')

  // A record sealed under the old key after a rekey must not open.
  const { b: b2, aSend: a2Send } = rekeyPair()
  const oldKey = new CipherState(nodeSuite, key(1))
  b2.open(rekeyRecord(a2Send))
  oldKey.setNonce(1)
  t.equal(code(() => b2.open(forge(oldKey, 1, text('stale')))), 'PROTO_ERR_DECRYPT')
})

t.test('refuses to send past the record limit but still closes', async (t) => {
  const { a, b } = pair({ maxRecords: 3 })
  b.open(a.seal(text('1')))
  b.open(a.sealHandshake(new Uint8Array(0)))
  b.open(a.seal(text('3')))
  t.equal(code(() => a.seal(text('4'))), 'PROTO_ERR_RECORD_LIMIT')
  t.equal(code(() => a.sealHandshake(new Uint8Array(0))), 'PROTO_ERR_RECORD_LIMIT')
  t.equal(a.state, 'open')
  t.same(b.open(a.sealClose(4424, 'limit')), { type: 'close', code: 4424, reason: 'limit' })
  t.same(counters(a), { recordsSent: 3, bytesSent: 2, recordsReceived: 0, bytesReceived: 0 })
  t.same(counters(b), { recordsSent: 0, bytesSent: 0, recordsReceived: 3, bytesReceived: 2 })
})

t.test('refuses to send past the byte limit', async (t) => {
  const { a, b } = pair({ maxBytes: 10 })
  b.open(a.seal(new Uint8Array(6)))
  t.equal(code(() => a.seal(new Uint8Array(5))), 'PROTO_ERR_RECORD_LIMIT')
  b.open(a.seal(new Uint8Array(4)))
  t.equal(a.bytesSent, 10)
})

t.test('rejects a peer that goes past the hard limit', async (t) => {
  const ab = key(1)
  const generous = new RecordSession({ send: new CipherState(nodeSuite, ab), recv: new CipherState(nodeSuite, key(2)) })
  const strict = new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, ab), maxRecords: 1 })
  strict.open(generous.seal(text('1')))
  t.equal(code(() => strict.open(generous.seal(text('2')))), 'PROTO_ERR_RECORD_LIMIT')
  t.equal(strict.state, 'failed')

  const g2 = new RecordSession({ send: new CipherState(nodeSuite, ab), recv: new CipherState(nodeSuite, key(2)) })
  const s2 = new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, ab), maxBytes: 3 })
  t.equal(code(() => s2.open(g2.seal(text('four')))), 'PROTO_ERR_RECORD_LIMIT')
})

t.test('says whether a batch fits under the limits before any of it is sealed', async (t) => {
  const { a, b } = pair({ maxRecords: 3, maxBytes: 10 })
  t.equal(a.hasRoom(3, 10), true)
  t.equal(a.hasRoom(4, 0), false, 'one record too many')
  t.equal(a.hasRoom(1, 11), false, 'one byte too many')
  b.open(a.seal(new Uint8Array(6)))
  t.equal(a.hasRoom(2, 4), true)
  t.equal(a.hasRoom(2, 5), false)
  t.equal(a.hasRoom(3, 0), false)
  a.sealClose(1000)
  t.equal(a.hasRoom(2, 4), true, 'CLOSE is not counted')
})

t.test('refuses bad limits and unkeyed cipher states', async (t) => {
  const s = () => new CipherState(nodeSuite, key(1))
  const r = () => new CipherState(nodeSuite, key(2))
  t.equal(code(() => new RecordSession({ send: s(), recv: r(), maxRecordBytes: 65_536 })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => new RecordSession({ send: s(), recv: r(), maxRecordBytes: RECORD_OVERHEAD })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => new RecordSession({ send: s(), recv: r(), maxRecords: 0 })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => new RecordSession({ send: s(), recv: r(), maxBytes: 1.5 })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => new RecordSession({ send: new CipherState(nodeSuite), recv: r() })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(code(() => new RecordSession({ send: s(), recv: new CipherState(nodeSuite) })), 'PROTO_ERR_INVALID_ARGUMENT')
  const same = s()
  t.equal(code(() => new RecordSession({ send: same, recv: same })), 'PROTO_ERR_INVALID_ARGUMENT')
  const ok = new RecordSession({ send: s(), recv: r() })
  t.equal(ok.maxRecords, 2 ** 36)
  t.equal(ok.maxBytes, 2 ** 46)
  t.equal(ok.maxRecordBytes, 65_535)
})

t.test('wipes both keys once both directions have closed', async (t) => {
  const sendA = new CipherState(nodeSuite, key(1))
  const recvA = new CipherState(nodeSuite, key(2))
  const a = new RecordSession({ send: sendA, recv: recvA })
  const b = new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, key(1)) })
  a.open(b.sealClose(1000))
  t.ok(sendA.hasKey())
  b.open(a.sealClose(1000))
  t.notOk(sendA.hasKey())
  t.notOk(recvA.hasKey())
})

t.test('never puts key bytes in an error message', async (t) => {
  const { a, b } = pair()
  const w = a.seal(text('x'))
  w[12] = (w[12] as number) ^ 1
  try {
    b.open(w)
    t.fail('should throw')
  } catch (e) {
    const msg = String((e as Error).message)
    t.notMatch(msg, /0101|AQEB/)
  }
})

t.test('carries a HANDSHAKE record like data, under the current keys', async (t) => {
  const { a, b } = pair()
  b.open(a.seal(text('first')))
  const w = a.sealHandshake(text('hello again'))
  t.equal(w[0], RECORD_HANDSHAKE)
  t.same([...w.subarray(1, 9)], [0, 0, 0, 0, 0, 0, 0, 1], 'the counter continues from DATA')
  t.notOk(Buffer.from(w).includes(Buffer.from('hello again')), 'the payload is encrypted')
  t.same(b.open(w), { type: 'handshake', data: Buffer.from('hello again') })
  t.same(b.open(a.sealHandshake(new Uint8Array(0))), { type: 'handshake', data: Buffer.alloc(0) }, 'empty is allowed')
  t.same(b.open(a.seal(text('after'))), { type: 'data', data: Buffer.from('after') })
  t.same(counters(a), { recordsSent: 4, bytesSent: 21, recordsReceived: 0, bytesReceived: 0 })
  t.same(counters(b), { recordsSent: 0, bytesSent: 0, recordsReceived: 4, bytesReceived: 21 })
})

t.test('counts HANDSHAKE records and bytes against the limits both ways', async (t) => {
  const { a, b } = pair({ maxRecords: 2, maxRecordBytes: 100 })
  t.equal(code(() => a.sealHandshake(new Uint8Array(a.maxPayload + 1))), 'PROTO_ERR_RECORD_TOO_LARGE')
  b.open(a.sealHandshake(new Uint8Array(a.maxPayload)))
  b.open(a.seal(text('x')))
  t.equal(code(() => a.sealHandshake(new Uint8Array(0))), 'PROTO_ERR_RECORD_LIMIT')
  t.equal(a.state, 'open', 'a refused send does not fail the session')

  const { a: a2, b: b2 } = pair({ maxBytes: 4 })
  b2.open(a2.sealHandshake(text('four')))
  t.equal(code(() => a2.sealHandshake(text('5'))), 'PROTO_ERR_RECORD_LIMIT')

  // The receiver holds its own limit even when the sender has none.
  const loose = new RecordSession({ send: new CipherState(nodeSuite, key(1)), recv: new CipherState(nodeSuite, key(2)) })
  const strict = new RecordSession({ send: new CipherState(nodeSuite, key(2)), recv: new CipherState(nodeSuite, key(1)), maxRecords: 1 })
  strict.open(loose.sealHandshake(text('1')))
  t.equal(code(() => strict.open(loose.sealHandshake(text('2')))), 'PROTO_ERR_RECORD_LIMIT')
})

t.test('detects a tampered, replayed or retyped HANDSHAKE record', async (t) => {
  const { a } = pair()
  const w = a.sealHandshake(text('request'))
  for (const i of [9, w.length - 1]) {
    const { b } = pair()
    const bad = new Uint8Array(w)
    bad[i] = (bad[i] as number) ^ 0x40
    t.equal(code(() => b.open(bad)), 'PROTO_ERR_DECRYPT', `byte ${i}`)
  }
  const { b } = pair()
  const retyped = new Uint8Array(w)
  retyped[0] = 1 // now claims to be DATA: the header is the AD, so it does not open
  t.equal(code(() => b.open(retyped)), 'PROTO_ERR_DECRYPT')
  const { b: b2 } = pair()
  b2.open(w)
  t.equal(code(() => b2.open(w)), 'PROTO_ERR_RECORD_COUNTER', 'replayed')
})

t.test('sealHandshake refuses after close and after failure', async (t) => {
  const { a } = pair()
  a.sealClose(1000)
  t.equal(code(() => a.sealHandshake(new Uint8Array(0))), 'PROTO_ERR_SESSION_CLOSED')
  a.destroy()
  t.equal(code(() => a.sealHandshake(new Uint8Array(0))), 'PROTO_ERR_SESSION_FAILED')
})

t.test('resolveRecordLimits fills the defaults and checks each limit', async (t) => {
  t.same(resolveRecordLimits({}), { maxRecordBytes: 65_535, maxRecords: 2 ** 36, maxBytes: 2 ** 46 })
  t.same(resolveRecordLimits({ maxRecordBytes: 100, maxRecords: 5, maxBytes: 7 }), { maxRecordBytes: 100, maxRecords: 5, maxBytes: 7 })
  t.equal(code(() => resolveRecordLimits({ maxRecords: -1 })), 'PROTO_ERR_INVALID_ARGUMENT')
})

t.test('the control channel fails on a HANDSHAKE record with PROTO_ERR_RECORD_TYPE', async (t) => {
  // A NoiseChannel responder, and a hand-driven initiator that can seal any record type.
  const protocolName = 'Noise_NN_25519_ChaChaPoly_SHA256'
  const toChannel: Uint8Array[] = []
  const closes: { code: number; reason: string }[] = []
  const errors: KeymeshError[] = []
  const messages: unknown[] = []
  const channel = new NoiseChannel({
    handshake: new HandshakeState({ suite: nodeSuite, protocolName, initiator: false }),
    transport: { send: (b) => toChannel.push(b), close: (c, reason) => closes.push({ code: c, reason }) },
    handler: { onError: (e) => errors.push(e), onMessage: (m) => messages.push(m) },
  })
  const hs = new HandshakeState({ suite: nodeSuite, protocolName, initiator: true })
  channel.receive(hs.writeMessage())
  hs.readMessage(toChannel.shift() as Uint8Array)
  t.equal(channel.state, 'open')
  const { send, recv } = hs.split()
  const mine = new RecordSession({ send, recv })
  channel.receive(rekeyRecord(send))
  t.equal(channel.state, 'open', 'a REKEY record is the record layer\'s business')
  channel.receive(mine.sealHandshake(text('{"type":"usage.ack","seq":1}')))
  t.equal(channel.state, 'failed')
  t.equal(errors[0]?.code, 'PROTO_ERR_RECORD_TYPE')
  t.same(closes, [{ code: PROTO_ERRORS.PROTO_ERR_RECORD_TYPE.closeCode, reason: 'PROTO_ERR_RECORD_TYPE' }])
  t.same(messages, [], 'its payload never reaches the handler')
})
