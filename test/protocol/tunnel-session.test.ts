// The pure tunnel session: KKpsk0 with a confirmation, records, half-close, and the
// in-band re-handshake, driven by two sessions joined by in-memory queues that the
// tests deliver explicitly (so each test picks the interleaving).
import t from 'tap'

import { nodeSuite } from '../../protocol/src/crypto/node-provider.js'
import { stablelibSuite } from '../../protocol/src/crypto/stablelib-provider.js'
import type { CryptoSuite, KeyPair } from '../../protocol/src/crypto/suite.js'
import { KeymeshError } from '../../protocol/src/errors.js'
import { newAgentId, pairId } from '../../protocol/src/names.js'
import { createKkInitiator, createKkResponder } from '../../protocol/src/noise/keymesh-handshakes.js'
import { encodeTunnelPreamble, type TunnelContext } from '../../protocol/src/noise/tunnel-preamble.js'
import type { CipherState } from '../../protocol/src/noise/cipher-state.js'
import { RECORD_DATA, RECORD_HANDSHAKE, RECORD_REKEY, RecordSession } from '../../protocol/src/record.js'
import {
  KK_MESSAGE_BYTES,
  MIN_TUNNEL_RECORD_BYTES,
  TunnelSession,
  type TunnelKeys,
  type TunnelSessionOptions,
} from '../../protocol/src/tunnel-session.js'
import { codeOf } from '../kit/errors.js'

const AGENT = newAgentId(() => new Uint8Array(16).fill(1))
const OTHER_AGENT = newAgentId(() => new Uint8Array(16).fill(2))
const noIntention = new KeymeshError('AGENT_ERR_NO_INTENTION', { message: 'no intention', status: 403, closeCode: 4703 })

interface World {
  suite: CryptoSuite
  iKey: KeyPair
  rKey: KeyPair
  /** Pair key per version. */
  psks: Map<number, Uint8Array>
  ctx: TunnelContext
  resolved: TunnelContext[]
}

function world(suite: CryptoSuite = nodeSuite): World {
  return {
    suite,
    iKey: suite.x25519Generate(),
    rKey: suite.x25519Generate(),
    psks: new Map([1, 2, 3, 4, 5, 6].map((v) => [v, suite.randomBytes(32)])),
    ctx: { pairId: pairId('orders', 'payments'), keyVersion: 1, fromService: 'orders', toService: 'payments', fromAgent: AGENT },
    resolved: [],
  }
}

const at = (ctx: TunnelContext, keyVersion: number): TunnelContext => ({ ...ctx, keyVersion })
const keysFor = (w: World, v: number): TunnelKeys => ({ psk: w.psks.get(v) as Uint8Array, remoteStatic: w.rKey.publicKey })

/** What the responding agent does: keys for a known agent and version, else a typed refusal. */
function resolver(w: World) {
  return (ctx: TunnelContext): TunnelKeys => {
    w.resolved.push(ctx)
    const psk = w.psks.get(ctx.keyVersion)
    if (ctx.fromAgent !== AGENT || psk === undefined) throw noIntention
    return { psk, remoteStatic: w.iKey.publicKey }
  }
}

interface End {
  s: TunnelSession
  /** Sent and not yet delivered, in order. */
  out: Uint8Array[]
  /** Everything ever sent, for replays. */
  sent: Uint8Array[]
  opened: TunnelContext[]
  data: Buffer[]
  ends: { code: number; reason: string }[]
  rekeyed: number[]
  errors: KeymeshError[]
  events: string[]
}

function end(w: World, role: 'initiator' | 'responder', o: Partial<TunnelSessionOptions> = {}): End {
  const e: End = { out: [], sent: [], opened: [], data: [], ends: [], rekeyed: [], errors: [], events: [] } as unknown as End
  e.s = new TunnelSession({
    suite: w.suite,
    role,
    ...(role === 'initiator' ? { staticKey: w.iKey, context: w.ctx, keys: keysFor(w, w.ctx.keyVersion) } : { staticKey: w.rKey, resolve: resolver(w) }),
    send: (b) => {
      e.out.push(b)
      e.sent.push(b)
    },
    handler: {
      onOpen: (c) => (e.opened.push(c), e.events.push('open')),
      onData: (d) => (e.data.push(Buffer.from(d)), e.events.push('data')),
      onEnd: (code, reason) => (e.ends.push({ code, reason }), e.events.push('end')),
      onRekeyed: (c) => (e.rekeyed.push(c.keyVersion), e.events.push(`rekeyed ${c.keyVersion}`)),
      onError: (err) => (e.errors.push(err), e.events.push(`error ${err.code}`)),
    },
    ...o,
  })
  return e
}

/** Delivers up to n of from's messages to `to`, in order; returns how many. */
function deliver(from: End, to: End, n = Infinity): number {
  let k = 0
  while (k < n && from.out.length > 0) {
    to.s.receive(from.out.shift() as Uint8Array)
    k++
  }
  return k
}

function pump(i: End, r: End): void {
  while (deliver(i, r) + deliver(r, i) > 0);
}

function pair(w: World, o: { i?: Partial<TunnelSessionOptions>; r?: Partial<TunnelSessionOptions> } = {}): { i: End; r: End } {
  return { i: end(w, 'initiator', o.i), r: end(w, 'responder', o.r) }
}

/** An open tunnel with nothing in flight. */
function openPair(w: World, o: { i?: Partial<TunnelSessionOptions>; r?: Partial<TunnelSessionOptions> } = {}): { i: End; r: End } {
  const p = pair(w, o)
  p.i.s.start()
  pump(p.i, p.r)
  return p
}

const received = (e: End): Buffer => Buffer.concat(e.data)
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** The documented message 1: u16 preamble length, preamble, KK message 1. */
function hello(ctx: TunnelContext, message: Uint8Array): Uint8Array {
  const p = encodeTunnelPreamble(ctx)
  return Buffer.concat([Buffer.from([p.length >> 8, p.length & 0xff]), p, message])
}

/** A REKEY record as a peer that rekeys sends it (keymesh sends none): sealed, then the sending key moves on. */
function rekeyRecord(send: CipherState): Uint8Array {
  const header = new Uint8Array(9)
  header[0] = RECORD_REKEY
  new DataView(header.buffer).setUint32(5, send.nonce)
  const wire = Buffer.concat([header, send.encryptWithAd(header, new Uint8Array(0))])
  send.rekey()
  return wire
}

/** A hand-driven initiator built from the Noise and record pieces, talking to a real responder. */
function manualInitiator(w: World, r: End, confirm = true): RecordSession {
  const hs = createKkInitiator({ suite: w.suite, staticKey: w.iKey, remoteStatic: w.rKey.publicKey, psk: keysFor(w, 1).psk, context: w.ctx })
  r.s.receive(hello(w.ctx, hs.writeMessage()))
  hs.readMessage(r.out.shift() as Uint8Array)
  const { send, recv } = hs.split()
  const records = new RecordSession({ send, recv })
  if (confirm) r.s.receive(records.sealHandshake(new Uint8Array(0)))
  return records
}

/** A hand-driven responder talking to a real initiator; its sending CipherState is `sendCipher`. */
function manualResponder(w: World, i: End): RecordSession & { sendCipher: CipherState } {
  i.s.start()
  const m1 = i.out.shift() as Uint8Array
  const hs = createKkResponder({ suite: w.suite, staticKey: w.rKey, remoteStatic: w.iKey.publicKey, psk: keysFor(w, 1).psk, context: w.ctx })
  hs.readMessage(m1.subarray(2 + (((m1[0] as number) << 8) | (m1[1] as number))))
  i.s.receive(hs.writeMessage())
  const { send, recv } = hs.split()
  const records = new RecordSession({ send, recv })
  records.open(i.out.shift() as Uint8Array) // the confirmation
  return Object.assign(records, { sendCipher: send })
}

for (const suite of [nodeSuite, stablelibSuite]) {
  t.test(`opens and carries data both ways (${suite.name})`, async (t) => {
    const w = world(suite)
    const { i, r } = pair(w)
    t.equal(i.s.state, 'handshake')
    t.equal(r.s.context, undefined, 'the responder learns the context from message 1')
    i.s.start()
    i.s.start()
    t.equal(i.out.length, 1, 'start is idempotent')
    const m1 = i.out[0] as Uint8Array
    t.equal(m1.length, 2 + encodeTunnelPreamble(w.ctx).length + KK_MESSAGE_BYTES)
    deliver(i, r)
    t.same(r.s.context, w.ctx)
    t.same(w.resolved, [w.ctx])
    t.equal(r.out.length, 1, 'message 2')
    t.equal(r.s.state, 'handshake', 'the responder waits for the confirmation')
    t.same(r.opened, [])
    deliver(r, i)
    t.equal(i.s.state, 'open')
    t.same(i.opened, [w.ctx])
    t.equal(i.out.length, 1, 'the confirmation')
    t.equal((i.out[0] as Uint8Array)[0], RECORD_HANDSHAKE)
    i.s.write(text('hello'))
    deliver(i, r)
    t.equal(r.s.state, 'open')
    t.same(r.opened, [w.ctx])
    t.same(r.events, ['open', 'data'])
    r.s.write(text('back'))
    r.s.write(new Uint8Array(0))
    t.equal(r.out.length, 1, 'an empty write sends nothing')
    deliver(r, i)
    t.equal(received(r).toString(), 'hello')
    t.equal(received(i).toString(), 'back')
    t.equal(i.s.bytesOut, 5)
    t.equal(r.s.bytesIn, 5)
    t.equal(r.s.bytesOut, 4)
    t.equal(i.s.bytesIn, 4)
    t.equal(i.s.recordsSinceHandshake, 2, 'confirmation and one DATA record sent')
    t.equal(r.s.recordsSinceHandshake, 2)
    t.notOk(i.sent.some((m) => Buffer.from(m).includes(Buffer.from('hello'))), 'no plaintext on the wire')
  })
}

t.test('splits a large write into records and reassembles it exactly', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  const big = new Uint8Array(200_000).map((_, k) => (k * 31) & 0xff)
  i.s.write(big)
  t.equal(i.out.length, 4)
  t.ok(i.out.every((m) => m.length <= 65_535))
  deliver(i, r)
  t.same(received(r), Buffer.from(big))
  t.equal(r.s.recordsSinceHandshake, 5)
  t.equal(codeOf(() => i.s.write('text' as unknown as Uint8Array)), 'PROTO_ERR_INVALID_ARGUMENT')
})

for (const suite of [nodeSuite, stablelibSuite]) {
  t.test(`records follow the reads: full reads make full records, their tails lead the next one (${suite.name})`, async (t) => {
    const w = world(suite)
    const { i, r } = openPair(w)
    const max = 65_510
    const reads = [0, 1, 2].map((k) => new Uint8Array(65_536).map((_, j) => (j * 7 + k * 13) & 0xff))
    const payload = (m: Uint8Array): number => m.length - 25
    i.s.write(reads[0] as Uint8Array, true)
    t.same(i.out.map(payload), [max], 'the first read: one full record, its 26-byte tail kept')
    t.equal(i.s.bytesOut, max, 'kept bytes are not counted until sealed')
    i.s.write(reads[1] as Uint8Array, true)
    t.same(i.out.map(payload), [max, max], 'the tail and the next read: one full record again')
    i.s.write(reads[2] as Uint8Array, true)
    t.equal(i.out.length, 3)
    i.s.flush()
    i.s.flush()
    t.same(i.out.map(payload), [max, max, max, 3 * 65_536 - 3 * max], 'flush sends the rest once')
    deliver(i, r)
    t.same(received(r), Buffer.concat(reads), 'the bytes arrive whole and in order')

    i.s.write(text('a'), true)
    t.equal(i.out.length, 0, 'a short write with more is kept whole')
    i.s.write(text('b'))
    t.same(i.out.map(payload), [2], 'a write without more sends what was kept with it, in one record')
    const big = new Uint8Array(max + 26).fill(9)
    i.s.write(big)
    t.same(i.out.slice(1).map(payload), [32_768, 32_768], 'never a full record and a tiny one')
    deliver(i, r)
    t.equal(received(r).length, 3 * 65_536 + 2 + max + 26)
  })
}

t.test('kept bytes go before a clean CLOSE and are dropped by an error end or a failure', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.write(new Uint8Array(65_536).fill(1), true)
  i.s.end(1000)
  deliver(i, r)
  t.equal(received(r).length, 65_536, 'every byte, then the end')
  t.same(r.ends, [{ code: 1000, reason: '' }])

  const p = openPair(w)
  p.i.s.write(new Uint8Array(65_536).fill(2), true)
  p.i.s.end(4000, 'upstream failed')
  deliver(p.i, p.r)
  t.equal(received(p.r).length, 65_510, 'the kept tail is not sent after an error end')
  t.same(p.r.ends, [{ code: 4000, reason: 'upstream failed' }])

  const q = openPair(w)
  q.i.s.write(text('kept'), true)
  q.i.s.destroy()
  t.doesNotThrow(() => q.i.s.flush(), 'nothing is left to flush after destroy')
  t.equal(q.i.out.length, 0)

  const limits = { maxRecords: 2 }
  const l = openPair(w, { i: { limits }, r: { limits } })
  l.i.s.write(text('x'), true)
  t.equal(codeOf(() => l.i.s.write(new Uint8Array(140_000), true)), 'PROTO_ERR_RECORD_LIMIT', 'two full records over the limit')
  t.equal(codeOf(() => l.i.s.write(new Uint8Array(0), true)), 'no error', 'an empty write with more does nothing')
  l.i.s.flush()
  deliver(l.i, l.r)
  t.equal(received(l.r).toString(), 'x', 'what was kept before the refused write still goes')
})

t.test('a replayed message 1 never opens a responder', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  const [m1, confirmation] = [i.sent[0] as Uint8Array, i.sent[1] as Uint8Array]
  t.equal(r.s.state, 'open', 'the real exchange opened')

  const replay = end(w, 'responder')
  replay.s.receive(m1)
  t.equal(replay.out.length, 1, 'message 1 alone looks valid: the responder answers')
  t.equal(replay.s.state, 'handshake')
  replay.s.receive(confirmation)
  t.same(replay.opened, [], 'never opened')
  t.equal(replay.errors[0]?.code, 'PROTO_ERR_DECRYPT', 'the old confirmation does not verify under fresh keys')
  t.equal(replay.s.state, 'failed')
  t.equal(codeOf(() => replay.s.write(text('x'))), 'PROTO_ERR_SESSION_FAILED')
})

t.test('the responder opens only on the confirmation record', async (t) => {
  const w = world()
  const r = end(w, 'responder')
  const records = manualInitiator(w, r, false)
  t.equal(codeOf(() => r.s.write(text('early'))), 'PROTO_ERR_HANDSHAKE_STATE')
  t.equal(codeOf(() => r.s.end()), 'PROTO_ERR_HANDSHAKE_STATE')
  t.equal(r.s.rehandshaking, false)
  r.s.receive(records.seal(text('data first')))
  t.same(r.opened, [])
  t.same(r.data, [])
  t.equal(r.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_STATE')

  const r2 = end(w, 'responder')
  const records2 = manualInitiator(w, r2, false)
  r2.s.receive(records2.sealHandshake(text('not empty')))
  t.equal(r2.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_STATE')

  const r3 = end(w, 'responder')
  manualInitiator(w, r3, true)
  t.same(r3.opened, [w.ctx], 'the documented wire format opens a real responder')
})

t.test('a wrong pair key or initiator key fails at the responder with PROTO_ERR_DECRYPT', async (t) => {
  const w = world()
  const wrongPsk = pair(w, { i: { keys: { psk: w.psks.get(2) as Uint8Array, remoteStatic: w.rKey.publicKey } } })
  wrongPsk.i.s.start()
  pump(wrongPsk.i, wrongPsk.r)
  t.equal(wrongPsk.r.errors[0]?.code, 'PROTO_ERR_DECRYPT')
  t.equal(wrongPsk.r.sent.length, 0, 'the responder sent nothing')
  t.same(wrongPsk.i.opened, [])
  t.equal(wrongPsk.i.s.state, 'handshake')
  const pskHex = Buffer.from(w.psks.get(1) as Uint8Array).toString('hex')
  t.notMatch(String(wrongPsk.r.errors[0]?.message), pskHex.slice(0, 16), 'no key bytes in the error')

  const impostor = pair(w, { i: { staticKey: w.suite.x25519Generate() } })
  impostor.i.s.start()
  pump(impostor.i, impostor.r)
  t.equal(impostor.r.errors[0]?.code, 'PROTO_ERR_DECRYPT')

  // The initiator checks message 2: a responder with another static key cannot answer.
  const wrongR = pair(w, { r: { staticKey: w.suite.x25519Generate() } })
  wrongR.i.s.start()
  pump(wrongR.i, wrongR.r)
  t.equal(wrongR.r.errors[0]?.code, 'PROTO_ERR_DECRYPT', 'ss differs, so message 1 already fails')
})

t.test('a tampered or malformed message 1 fails with a typed code', async (t) => {
  const w = world()
  const { i } = pair(w)
  i.s.start()
  const m1 = i.out[0] as Uint8Array
  const tamper = (f: (b: Uint8Array) => Uint8Array): { code: string | undefined; resolved: number } => {
    w.resolved.length = 0
    const r = end(w, 'responder')
    r.s.receive(f(new Uint8Array(m1)))
    return { code: r.errors[0]?.code, resolved: w.resolved.length }
  }
  // Key version 1 → 2: the responder finds a key, but the prologue differs.
  t.same(tamper((b) => ((b[6] = 2), b)), { code: 'PROTO_ERR_DECRYPT', resolved: 1 })
  t.same(tamper((b) => ((b[2] = 9), b)), { code: 'PROTO_ERR_VERSION', resolved: 0 })
  t.same(tamper((b) => b.subarray(0, b.length - 1)), { code: 'PROTO_ERR_HANDSHAKE_MESSAGE', resolved: 0 })
  t.same(tamper((b) => Buffer.concat([b, Buffer.from([0])])), { code: 'PROTO_ERR_HANDSHAKE_MESSAGE', resolved: 0 })
  t.same(tamper(() => new Uint8Array(1)), { code: 'PROTO_ERR_HANDSHAKE_MESSAGE', resolved: 0 })
  t.same(tamper((b) => ((b[0] = 0xff), b)), { code: 'PROTO_ERR_HANDSHAKE_MESSAGE', resolved: 0 })
  t.same(tamper((b) => ((b[b.length - 1] = (b[b.length - 1] as number) ^ 1), b)), { code: 'PROTO_ERR_DECRYPT', resolved: 1 })
  // The preamble's services swapped: the pair id still matches, the prologue does not.
  const swapped = { ...w.ctx, fromService: 'payments', toService: 'orders' }
  t.same(tamper((b) => hello(swapped, b.subarray(b.length - KK_MESSAGE_BYTES))), { code: 'PROTO_ERR_DECRYPT', resolved: 1 })
  // A message 2 of the wrong shape fails the initiator.
  i.s.receive(new Uint8Array(KK_MESSAGE_BYTES - 1))
  t.equal(i.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MESSAGE')
})

t.test('a resolve() refusal fails the responder with its own code', async (t) => {
  const w = world()
  const { i, r } = pair(w, { i: { context: { ...w.ctx, fromAgent: OTHER_AGENT } } })
  i.s.start()
  deliver(i, r)
  t.equal(r.errors[0]?.code, 'AGENT_ERR_NO_INTENTION')
  t.equal(r.errors[0]?.closeCode, 4703)
  t.equal(r.sent.length, 0, 'nothing sent')
  t.equal(r.s.state, 'failed')

  const broken = pair(w, { r: { resolve: () => { throw new TypeError('bug') } } })
  broken.i.s.start()
  deliver(broken.i, broken.r)
  t.equal(broken.r.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MISSING_KEY', 'an untyped throw becomes a typed failure')

  const shortKey = pair(w, { r: { resolve: () => ({ psk: new Uint8Array(16), remoteStatic: w.iKey.publicKey }) } })
  shortKey.i.s.start()
  deliver(shortKey.i, shortKey.r)
  t.equal(shortKey.r.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MISSING_KEY')
  const noKeys = pair(w, { r: { resolve: () => undefined as unknown as TunnelKeys } })
  noKeys.i.s.start()
  deliver(noKeys.i, noKeys.r)
  t.equal(noKeys.r.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MISSING_KEY')
})

t.test('re-handshakes with data around every step, in the order each side sees it', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.write(text('a1;'))
  t.equal(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)), true)
  t.equal(i.s.rehandshaking, true)
  t.equal(i.s.rehandshake(at(w.ctx, 3), keysFor(w, 3)), false, 'one at a time')
  i.s.write(text('a2;')) // old keys
  r.s.write(text('b1;')) // old keys
  deliver(i, r, 2) // a1, request
  t.equal(r.s.rehandshaking, true)
  t.same(w.resolved.map((c) => c.keyVersion), [1, 2])
  r.s.write(text('b2;')) // new keys, after message 2
  deliver(r, i, 1) // b1
  i.s.write(text('a3;')) // still old: message 2 not read
  t.same(i.rekeyed, [])
  deliver(r, i, 1) // message 2
  t.same(i.rekeyed, [2])
  t.equal(i.s.rehandshaking, false)
  t.equal(i.s.context?.keyVersion, 2)
  t.equal(i.s.recordsSinceHandshake, 0)
  i.s.write(text('a4;')) // new keys, after the marker
  deliver(r, i) // b2 under the new keys
  r.s.write(text('b3;'))
  t.equal(r.s.context?.keyVersion, 1, 'the responder moves on the marker')
  deliver(i, r) // a2, a3, marker, a4
  t.same(r.rekeyed, [2])
  t.equal(r.s.rehandshaking, false)
  t.equal(r.s.context?.keyVersion, 2)
  deliver(r, i)
  t.equal(received(r).toString(), 'a1;a2;a3;a4;')
  t.equal(received(i).toString(), 'b1;b2;b3;')
  t.same([...i.errors, ...r.errors], [])
  t.equal(i.s.bytesOut, 12, 'byte counts span key versions')
  t.equal(r.s.recordsSinceHandshake, 2, 'counts restart under the new keys: b2 and b3 sent')
})

t.test('three re-handshakes in a row, each started as soon as the last finished', async (t) => {
  for (const suite of [nodeSuite, stablelibSuite]) {
    const w = world(suite)
    const { i, r } = openPair(w)
    const sentI: Buffer[] = []
    const sentR: Buffer[] = []
    const send = (e: End, into: Buffer[], s: string): void => {
      const b = Buffer.from(s)
      into.push(b)
      e.s.write(b)
    }
    for (let v = 2; v <= 4; v++) {
      send(i, sentI, `i${v}-before;`)
      t.ok(i.s.rehandshake(at(w.ctx, v), keysFor(w, v)))
      send(i, sentI, `i${v}-during;`)
      send(r, sentR, `r${v}-before;`)
      deliver(i, r)
      send(r, sentR, `r${v}-after-answer;`)
      deliver(r, i)
      send(i, sentI, `i${v}-after;`)
    }
    pump(i, r)
    t.same(received(r), Buffer.concat(sentI), suite.name)
    t.same(received(i), Buffer.concat(sentR), suite.name)
    t.same(i.rekeyed, [2, 3, 4])
    t.same(r.rekeyed, [2, 3, 4])
    i.s.end()
    r.s.end()
    pump(i, r)
    t.equal(i.s.state, 'closed')
    t.equal(r.s.state, 'closed')
  }
})

/** mulberry32: a small deterministic PRNG, so every schedule can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296
  }
}

t.test('any interleaving of writes, deliveries and three re-handshakes keeps both byte streams exact', async (t) => {
  const seen = { iWritesPending: 0, rWritesAwaitingMarker: 0, crossedDeliveries: 0, bigWrites: 0 }
  let failures = 0
  for (let seed = 1; seed <= 150; seed++) {
    const rnd = prng(seed)
    const w = world()
    const { i, r } = openPair(w)
    const sentI: Buffer[] = []
    const sentR: Buffer[] = []
    let n = 0
    const chunk = (): Buffer => {
      const big = rnd() < 0.03
      if (big) seen.bigWrites++
      const len = big ? 70_000 + Math.floor(rnd() * 1000) : Math.floor(rnd() * 300)
      const b = Buffer.alloc(len)
      for (let k = 0; k < len; k++) b[k] = (n * 131 + k * 7) & 0xff
      n++
      return b
    }
    let version = 1
    for (let step = 0; step < 5000 && !(i.rekeyed.length === 3 && r.rekeyed.length === 3); step++) {
      const x = rnd()
      if (x < 0.2) {
        if (i.s.rehandshaking) seen.iWritesPending++
        const b = chunk()
        sentI.push(b)
        i.s.write(b)
      } else if (x < 0.4) {
        if (r.s.rehandshaking) seen.rWritesAwaitingMarker++
        const b = chunk()
        sentR.push(b)
        r.s.write(b)
      } else if (x < 0.65) {
        if (i.s.rehandshaking && r.s.rehandshaking) seen.crossedDeliveries++
        deliver(i, r, 1)
      } else if (x < 0.9) deliver(r, i, 1)
      else if (version < 4 && i.s.rehandshake(at(w.ctx, version + 1), keysFor(w, version + 1))) version++
    }
    pump(i, r)
    const ok =
      received(r).equals(Buffer.concat(sentI)) &&
      received(i).equals(Buffer.concat(sentR)) &&
      i.errors.length + r.errors.length === 0 &&
      i.rekeyed.join() === '2,3,4' &&
      r.rekeyed.join() === '2,3,4'
    if (!ok) {
      failures++
      t.fail(`schedule ${seed}: ${[...i.errors, ...r.errors].map((e) => e.code).join(', ')} rekeyed ${i.rekeyed}/${r.rekeyed}`)
    }
  }
  t.equal(failures, 0, '150 schedules, every byte once and in order')
  t.ok(seen.iWritesPending > 50, 'the initiator wrote while waiting for message 2')
  t.ok(seen.rWritesAwaitingMarker > 50, 'the responder wrote while waiting for the marker')
  t.ok(seen.crossedDeliveries > 20, 'both sides were mid-re-handshake at once')
  t.ok(seen.bigWrites > 5, 'multi-record writes happened mid-re-handshake too')
})

t.test('a CLOSE that crosses a request: the responder drops it and the initiator abandons it', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  t.ok(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)))
  i.s.write(text('old keys'))
  r.s.write(text('last words'))
  r.s.end(4000, 'done')
  deliver(i, r)
  t.equal(r.out.length, 2, 'no answer to the request: only data and CLOSE are queued')
  t.same(w.resolved.map((c) => c.keyVersion), [1], 'resolve was not asked')
  deliver(r, i)
  t.same(i.ends, [{ code: 4000, reason: 'done' }])
  t.equal(i.s.rehandshaking, false, 'abandoned')
  t.same(i.rekeyed, [])
  t.equal(i.s.context?.keyVersion, 1)
  t.equal(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)), false, 'not with the peer gone')
  i.s.write(text('; still flows'))
  deliver(i, r)
  t.equal(received(r).toString(), 'old keys; still flows')
  t.equal(received(i).toString(), 'last words')
  i.s.end()
  deliver(i, r)
  t.equal(i.s.state, 'closed')
  t.equal(r.s.state, 'closed')
  t.same([...i.errors, ...r.errors], [])
})

t.test('a CLOSE from the initiator before message 2: no marker, both sides end on the new version', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  t.ok(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)))
  i.s.write(text('bye'))
  i.s.end(1000, 'eof')
  t.equal(i.s.rehandshaking, true, 'still waiting for message 2')
  t.equal(i.s.rehandshake(at(w.ctx, 3), keysFor(w, 3)), false)
  deliver(i, r)
  t.same(r.events, ['open', 'data', 'rekeyed 2', 'end'], 'its sending side is on the new keys, so it reports the version')
  t.equal(r.s.rehandshaking, false)
  t.equal(r.s.context?.keyVersion, 2)
  r.s.write(text('reply under v2'))
  const sentBefore = i.sent.length
  deliver(r, i)
  t.equal(i.sent.length, sentBefore, 'no marker after our CLOSE')
  t.same(i.rekeyed, [2])
  t.equal(received(i).toString(), 'reply under v2')
  r.s.end()
  deliver(r, i)
  t.equal(i.s.state, 'closed')
  t.equal(r.s.state, 'closed')
  t.same([...i.errors, ...r.errors], [])
})

t.test('both sides end while a request is in flight: it is abandoned and both close on the old version', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  t.ok(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)))
  i.s.end()
  i.s.end()
  t.equal(i.out.length, 2, 'a second end() during the re-handshake sends nothing')
  r.s.end()
  deliver(r, i) // r's CLOSE reaches i while it waits for message 2
  t.equal(i.s.state, 'closed')
  t.equal(i.s.context?.keyVersion, 1)
  deliver(i, r) // the request (dropped: r has ended) and i's CLOSE
  t.equal(r.s.state, 'closed')
  t.same([i.rekeyed, r.rekeyed], [[], []])
  t.same([...i.errors, ...r.errors], [])
})

t.test('a handler that destroys the session when it learns of the new version gets no onEnd', async (t) => {
  for (const rEnded of [false, true]) {
    const w = world()
    const p = pair(w)
    const events: string[] = []
    const r = end(w, 'responder', {
      handler: {
        onOpen: () => events.push('open'),
        onData: () => events.push('data'),
        onEnd: () => events.push('end'),
        onRekeyed: () => (events.push('rekeyed'), r.s.destroy()),
        onError: () => events.push('error'),
      },
    })
    p.i.s.start()
    pump(p.i, r)
    t.ok(p.i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)))
    p.i.s.end()
    deliver(p.i, r, 1) // the request
    if (rEnded) r.s.end()
    deliver(p.i, r) // the CLOSE: no marker will come
    t.same(events, ['open', 'rekeyed'], `destroyed in onRekeyed: no onEnd after it (responder ended: ${rEnded})`)
    t.equal(r.s.state, rEnded ? 'closed' : 'failed')
    t.equal(codeOf(() => r.s.write(text('x'))), 'PROTO_ERR_SESSION_FAILED')
  }
})

t.test('a CLOSE from the responder after its answer arrives under the new keys', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  deliver(i, r)
  r.s.write(text('new'))
  r.s.end()
  deliver(r, i)
  t.same(i.events.slice(1), ['rekeyed 2', 'data', 'end'])
  i.s.write(text('tail'))
  i.s.end()
  deliver(i, r)
  t.same(r.rekeyed, [2])
  t.equal(received(r).toString(), 'tail')
  t.equal(r.s.state, 'closed')
})

t.test('refuses a re-handshake that changes more than the key version, or comes out of turn', async (t) => {
  const w = world()
  // From the initiator's own API: thrown synchronously.
  const { i, r } = openPair(w)
  t.equal(codeOf(() => i.s.rehandshake({ ...w.ctx, keyVersion: 2, fromAgent: OTHER_AGENT }, keysFor(w, 2))), 'PROTO_ERR_REHANDSHAKE')
  const otherPair = { pairId: pairId('orders', 'billing'), keyVersion: 2, fromService: 'orders', toService: 'billing', fromAgent: AGENT }
  t.equal(codeOf(() => i.s.rehandshake(otherPair, keysFor(w, 2))), 'PROTO_ERR_REHANDSHAKE')
  t.equal(codeOf(() => i.s.rehandshake({ ...w.ctx, keyVersion: 0 }, keysFor(w, 2))), 'PROTO_ERR_HANDSHAKE_PROLOGUE')
  t.equal(codeOf(() => r.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))), 'PROTO_ERR_REHANDSHAKE', 'the responder never starts one')
  t.equal(i.s.rehandshaking, false)
  t.equal(i.out.length, 0, 'nothing sent')

  // From a hand-driven initiator, on the wire: the responder fails.
  const cases: [string, (m: RecordSession) => Uint8Array[]][] = [
    ['another initiating agent', (m) => [m.sealHandshake(hello({ ...w.ctx, keyVersion: 2, fromAgent: OTHER_AGENT }, new Uint8Array(KK_MESSAGE_BYTES)))]],
    ['another pair', (m) => [m.sealHandshake(hello(otherPair, new Uint8Array(KK_MESSAGE_BYTES)))]],
    ['a marker out of turn', (m) => [m.sealHandshake(new Uint8Array(0))]],
    ['a second request in flight', (m) => {
      const hs = createKkInitiator({ suite: w.suite, staticKey: w.iKey, remoteStatic: w.rKey.publicKey, psk: keysFor(w, 2).psk, context: at(w.ctx, 2) })
      return [m.sealHandshake(hello(at(w.ctx, 2), hs.writeMessage())), m.sealHandshake(hello(at(w.ctx, 3), new Uint8Array(KK_MESSAGE_BYTES)))]
    }],
  ]
  for (const [name, records] of cases) {
    const r2 = end(w, 'responder')
    const m = manualInitiator(w, r2)
    for (const rec of records(m)) r2.s.receive(rec)
    t.equal(r2.errors[0]?.code, 'PROTO_ERR_REHANDSHAKE', name)
    t.equal(r2.errors.length, 1)
  }

  // At the initiator: HANDSHAKE records it did not ask for.
  for (const payload of [new Uint8Array(0), new Uint8Array(KK_MESSAGE_BYTES)]) {
    const i2 = end(w, 'initiator')
    const m = manualResponder(w, i2)
    i2.s.receive(m.sealHandshake(payload))
    t.equal(i2.errors[0]?.code, 'PROTO_ERR_REHANDSHAKE', `unsolicited, ${payload.length} bytes`)
  }
  const i3 = end(w, 'initiator')
  const m = manualResponder(w, i3)
  i3.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  i3.s.receive(m.sealHandshake(new Uint8Array(0)))
  t.equal(i3.errors[0]?.code, 'PROTO_ERR_REHANDSHAKE', 'an empty answer to a request')
  const i4 = end(w, 'initiator')
  const m4 = manualResponder(w, i4)
  i4.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  i4.s.receive(m4.sealHandshake(new Uint8Array(10)))
  t.equal(i4.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MESSAGE', 'a message 2 of the wrong length')
})

t.test('a re-handshake refused by resolve() fails the responder with that code', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  t.ok(i.s.rehandshake(at(w.ctx, 9), { psk: new Uint8Array(32).fill(9), remoteStatic: w.rKey.publicKey }))
  deliver(i, r)
  t.equal(r.errors[0]?.code, 'AGENT_ERR_NO_INTENTION')
  t.equal(r.out.length, 0, 'no answer')
  t.equal(r.s.state, 'failed')
})

t.test('a wrong pair key in a re-handshake fails with PROTO_ERR_DECRYPT', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.rehandshake(at(w.ctx, 2), keysFor(w, 3))
  deliver(i, r)
  t.equal(r.errors[0]?.code, 'PROTO_ERR_DECRYPT')
})

t.test('replayed, reordered, bit-flipped and truncated records fail with the record layer\'s code', async (t) => {
  const w = world()
  const cases: [string, (recs: Uint8Array[]) => Uint8Array[], string][] = [
    ['replayed', ([a]) => [a as Uint8Array, a as Uint8Array], 'PROTO_ERR_RECORD_COUNTER'],
    ['reordered', ([a, b]) => [b as Uint8Array, a as Uint8Array], 'PROTO_ERR_RECORD_COUNTER'],
    ['dropped', ([, b]) => [b as Uint8Array], 'PROTO_ERR_RECORD_COUNTER'],
    ['bit-flipped', ([a]) => {
      const bad = new Uint8Array(a as Uint8Array)
      bad[12] = (bad[12] as number) ^ 1
      return [bad]
    }, 'PROTO_ERR_DECRYPT'],
    ['truncated', ([a]) => [(a as Uint8Array).subarray(0, (a as Uint8Array).length - 1)], 'PROTO_ERR_DECRYPT'],
    ['cut below a header', ([a]) => [(a as Uint8Array).subarray(0, 5)], 'PROTO_ERR_RECORD_MALFORMED'],
    ['retyped', ([a]) => {
      const bad = new Uint8Array(a as Uint8Array)
      bad[0] = 9
      return [bad]
    }, 'PROTO_ERR_RECORD_TYPE'],
    ['oversized', () => [new Uint8Array(65_536)], 'PROTO_ERR_RECORD_TOO_LARGE'],
  ]
  for (const [name, mangle, expected] of cases) {
    const { i, r } = openPair(w)
    i.s.write(text('one'))
    i.s.write(text('two'))
    const recs = i.out.splice(0)
    for (const m of mangle(recs)) r.s.receive(m)
    t.equal(r.errors[0]?.code, expected, name)
    t.equal(r.s.state, 'failed')
    r.s.receive(recs[1] as Uint8Array)
    t.equal(r.errors.length, 1, `${name}: onError once, later input ignored`)
    t.equal(codeOf(() => r.s.write(text('x'))), 'PROTO_ERR_SESSION_FAILED')
  }
})

t.test('records under the old keys are rejected after a re-handshake', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.write(text('old'))
  deliver(i, r)
  i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  pump(i, r)
  t.same(r.rekeyed, [2])
  const [, confirmation, oldData] = i.sent as [Uint8Array, Uint8Array, Uint8Array]
  t.equal(oldData[0], RECORD_DATA)
  r.s.receive(confirmation) // counter 0, as the new keys expect: only the AEAD can tell
  t.equal(r.errors[0]?.code, 'PROTO_ERR_DECRYPT')

  const p = openPair(w)
  p.i.s.write(text('old'))
  deliver(p.i, p.r)
  p.i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  pump(p.i, p.r)
  p.r.s.receive(p.i.sent[2] as Uint8Array)
  t.equal(p.r.errors[0]?.code, 'PROTO_ERR_RECORD_COUNTER')
})

t.test('half-close: one direction ends, the other keeps carrying data', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.write(text('request'))
  i.s.end(1000, 'request done')
  i.s.end(4000, 'again')
  t.equal(i.out.length, 2, 'end is idempotent')
  t.equal(i.s.localEnded, true)
  t.equal(codeOf(() => i.s.write(text('more'))), 'PROTO_ERR_SESSION_CLOSED')
  t.equal(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)), false, 'no re-handshake after our CLOSE')
  deliver(i, r)
  t.same(r.ends, [{ code: 1000, reason: 'request done' }])
  t.equal(r.s.remoteEnded, true)
  t.equal(r.s.state, 'open')
  r.s.write(text('response'))
  deliver(r, i)
  t.equal(received(i).toString(), 'response')
  r.s.end()
  deliver(r, i)
  t.same(i.ends, [{ code: 1000, reason: '' }])
  t.equal(i.s.state, 'closed')
  t.equal(r.s.state, 'closed')
  t.equal(codeOf(() => r.s.write(text('x'))), 'PROTO_ERR_SESSION_CLOSED')
  // Anything after both CLOSEs is a protocol error.
  i.s.receive(r.sent[0] as Uint8Array)
  t.equal(i.errors[0]?.code, 'PROTO_ERR_SESSION_CLOSED')
  t.equal(codeOf(() => i.s.end(5_000_000)), 'no error', 'end after failure does nothing')
})

t.test('records after the peer\'s CLOSE fail the session', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.end()
  deliver(i, r)
  r.s.receive(i.sent[1] as Uint8Array)
  t.equal(r.errors[0]?.code, 'PROTO_ERR_SESSION_CLOSED')
  t.equal(codeOf(() => i.s.end(1000, 'é'.repeat(62))), 'no error', 'ignored once ended')
  const p = openPair(w)
  t.equal(codeOf(() => p.i.s.end(1000, 'é'.repeat(62))), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(p.i.s.localEnded, false, 'a refused end changes nothing')
})

t.test('a REKEY record from the peer is accepted', async (t) => {
  const w = world()
  const i = end(w, 'initiator')
  const m = manualResponder(w, i)
  i.s.receive(m.seal(text('a')))
  i.s.receive(rekeyRecord(m.sendCipher))
  i.s.receive(m.seal(text('b')))
  t.equal(received(i).toString(), 'ab')
  t.equal(i.s.recordsSinceHandshake, 3)
  t.same(i.errors, [])
})

t.test('limits: the initiator keeps a record back for the marker, and a session at its limit cannot re-handshake', async (t) => {
  const w = world()
  const limits = { maxRecords: 5 }
  const { i, r } = openPair(w, { i: { limits }, r: { limits } })
  i.s.write(text('1')) // confirmation + 1
  t.ok(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))) // 3
  i.s.write(text('4'))
  t.equal(codeOf(() => i.s.write(text('5'))), 'PROTO_ERR_RECORD_LIMIT', 'the fifth record is the marker\'s')
  t.equal(i.s.state, 'open')
  pump(i, r)
  t.same([i.rekeyed, r.rekeyed], [[2], [2]])
  i.s.write(text('5'))
  pump(i, r)
  t.equal(received(r).toString(), '145')
  t.same([...i.errors, ...r.errors], [])

  const p = openPair(w, { i: { limits }, r: { limits } })
  for (let k = 0; k < 4; k++) p.i.s.write(text('x'))
  t.equal(codeOf(() => p.i.s.write(text('x'))), 'PROTO_ERR_RECORD_LIMIT')
  t.equal(codeOf(() => p.i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))), 'PROTO_ERR_RECORD_LIMIT')
  t.equal(p.i.s.rehandshaking, false)
  t.equal(codeOf(() => p.i.s.write(new Uint8Array(0))), 'no error')

  const bytes = openPair(w, { i: { limits: { maxBytes: 10 } } })
  bytes.i.s.write(new Uint8Array(10))
  t.equal(codeOf(() => bytes.i.s.write(new Uint8Array(1))), 'PROTO_ERR_RECORD_LIMIT')

  t.equal(codeOf(() => end(w, 'initiator', { limits: { maxRecordBytes: MIN_TUNNEL_RECORD_BYTES - 1 } })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(codeOf(() => end(w, 'initiator', { limits: { maxRecords: 0 } })), 'PROTO_ERR_INVALID_ARGUMENT')
  const small = openPair(w, { i: { limits: { maxRecordBytes: MIN_TUNNEL_RECORD_BYTES } }, r: { limits: { maxRecordBytes: MIN_TUNNEL_RECORD_BYTES } } })
  small.i.s.write(new Uint8Array(1000))
  t.ok(small.i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)), 'the smallest record still carries a request')
  pump(small.i, small.r)
  t.same(small.r.rekeyed, [2])
  t.equal(received(small.r).length, 1000)
})

t.test('the byte totals outlive the keys: read after a clean close and after a failure', async (t) => {
  const w = world()
  const { i, r } = openPair(w)
  i.s.write(text('v1:'))
  t.ok(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)))
  pump(i, r)
  i.s.write(text('v2'))
  r.s.write(text('back'))
  i.s.end()
  r.s.end()
  pump(i, r)
  t.same([i.s.state, r.s.state], ['closed', 'closed'])
  t.same([i.s.bytesOut, i.s.bytesIn, r.s.bytesIn, r.s.bytesOut], [5, 4, 5, 4], 'data only: no handshake payloads, every version')
  t.same([i.s.recordsSinceHandshake, r.s.recordsSinceHandshake], [0, 0], 'no keys, nothing since a handshake')
  i.s.destroy()
  t.equal(i.s.bytesOut, 5, 'destroy keeps the totals')

  const p = openPair(w)
  p.i.s.write(text('abc'))
  deliver(p.i, p.r)
  p.r.s.receive(new Uint8Array(40))
  t.equal(p.r.s.state, 'failed')
  t.same([p.r.s.bytesIn, p.i.s.bytesOut], [3, 3])
  t.same([p.r.s.localEnded, p.r.s.remoteEnded], [false, false])

  const q = openPair(w)
  q.i.s.write(text('last'))
  q.i.s.end()
  deliver(q.i, q.r)
  q.r.s.receive(q.i.sent[2] as Uint8Array)
  t.equal(q.r.errors[0]?.code, 'PROTO_ERR_SESSION_CLOSED')
  t.same([q.r.s.state, q.r.s.localEnded, q.r.s.remoteEnded, q.r.s.bytesIn], ['failed', false, true, 4], 'what it knew when it failed')
})

t.test('calls out of order are refused with typed codes', async (t) => {
  const w = world()
  const { i, r } = pair(w)
  t.equal(codeOf(() => i.s.write(text('x'))), 'PROTO_ERR_HANDSHAKE_STATE')
  t.equal(codeOf(() => i.s.end()), 'PROTO_ERR_HANDSHAKE_STATE')
  t.equal(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)), false, 'not open yet')
  t.equal(codeOf(() => r.s.start()), 'PROTO_ERR_HANDSHAKE_STATE')
  i.s.receive(new Uint8Array(KK_MESSAGE_BYTES))
  t.equal(i.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_STATE', 'a message before start()')
  i.s.start()
  t.equal(i.out.length, 0, 'start after failure does nothing')

  const bad = (o: Partial<TunnelSessionOptions>, role: 'initiator' | 'responder' = 'initiator'): string => codeOf(() => end(w, role, o))
  t.equal(bad({ context: undefined }), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(bad({ keys: undefined }), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(bad({ resolve: undefined }, 'responder'), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(bad({ role: 'observer' as 'initiator' }), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(bad({ send: undefined as unknown as TunnelSessionOptions['send'] }), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(bad({ context: { ...w.ctx, toService: 'Bad Name' } }), 'PROTO_ERR_INVALID_NAME')
  t.equal(bad({ keys: { psk: new Uint8Array(31), remoteStatic: w.rKey.publicKey } }), 'PROTO_ERR_HANDSHAKE_MISSING_KEY')
})

t.test('the caller may wipe its keys once the session has them', async (t) => {
  const w = world()
  const psk = new Uint8Array(w.psks.get(1) as Uint8Array)
  const i = end(w, 'initiator', { keys: { psk, remoteStatic: w.rKey.publicKey } })
  psk.fill(0)
  const queueWipe: Uint8Array[] = []
  const r = end(w, 'responder', {
    resolve: (ctx) => {
      const copy = new Uint8Array(w.psks.get(ctx.keyVersion) as Uint8Array)
      queueWipe.push(copy)
      return { psk: copy, remoteStatic: w.iKey.publicKey }
    },
  })
  i.s.start()
  deliver(i, r)
  for (const k of queueWipe) k.fill(0)
  pump(i, r)
  i.s.write(text('fine'))
  deliver(i, r)
  t.equal(received(r).toString(), 'fine')
})

/** nodeSuite, noting every AEAD key and ephemeral secret it is handed (by reference). */
function spySuite(): { suite: CryptoSuite; keys: Uint8Array[] } {
  const keys: Uint8Array[] = []
  const note = (k: Uint8Array): void => {
    if (!keys.includes(k)) keys.push(k)
  }
  const suite: CryptoSuite = {
    ...nodeSuite,
    x25519Generate: () => {
      const kp = nodeSuite.x25519Generate()
      note(kp.secretKey)
      return kp
    },
    aeadSeal: (k, n, p, ad) => (note(k), nodeSuite.aeadSeal(k, n, p, ad)),
    aeadSealInto: (k, n, p, ad, out, off) => (note(k), nodeSuite.aeadSealInto(k, n, p, ad, out, off)),
    aeadOpen: (k, n, s, ad) => (note(k), nodeSuite.aeadOpen(k, n, s, ad)),
  }
  return { suite, keys }
}

const zero = (k: Uint8Array): boolean => k.every((b) => b === 0)

t.test('destroy wipes every key and silences the session', async (t) => {
  const spy = spySuite()
  const w = world(spy.suite)
  spy.keys.length = 0 // the agents' static keys are theirs to keep
  const { i, r } = openPair(w)
  i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  i.s.write(text('in flight'))
  t.ok(spy.keys.length >= 6 && spy.keys.some((k) => !zero(k)), 'keys in use')
  const inFlight = i.out.splice(0)
  i.s.destroy()
  r.s.destroy()
  r.s.destroy()
  t.ok(spy.keys.every(zero), `all ${spy.keys.length} keys and ephemerals zeroed`)
  t.equal(i.s.state, 'failed')
  t.equal(codeOf(() => i.s.write(text('x'))), 'PROTO_ERR_SESSION_FAILED')
  t.equal(codeOf(() => i.s.end()), 'no error')
  t.equal(i.s.rehandshake(at(w.ctx, 3), keysFor(w, 3)), false)
  for (const m of inFlight) r.s.receive(m)
  t.same([...i.errors, ...r.errors], [], 'no callbacks after destroy')
  t.same(r.data, [])

  // Mid-handshake too: the pending HandshakeState's ephemeral is wiped.
  const spy2 = spySuite()
  const w2 = world(spy2.suite)
  spy2.keys.length = 0
  const p = pair(w2)
  p.i.s.start()
  p.i.s.destroy()
  t.ok(spy2.keys.length > 0 && spy2.keys.every(zero))
  t.equal(codeOf(() => p.i.s.write(text('x'))), 'PROTO_ERR_SESSION_FAILED')
})

t.test('a responder at its hard limit refuses a request with PROTO_ERR_RECORD_LIMIT before any key work', async (t) => {
  const spy = spySuite() // the responder's only
  const w = world()
  const { i, r } = openPair(w, { r: { suite: spy.suite, limits: { maxRecords: 2 } } })
  r.s.write(text('1'))
  r.s.write(text('2'))
  deliver(r, i)
  spy.keys.length = 0
  w.resolved.length = 0
  t.ok(i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2)))
  deliver(i, r)
  t.equal(r.errors[0]?.code, 'PROTO_ERR_RECORD_LIMIT')
  t.same(r.out, [], 'no answer sent')
  t.same(w.resolved, [], 'no keys asked for')
  t.ok(spy.keys.length > 0 && spy.keys.every(zero), 'the old keys, which opened the request, are zeroed')
})

t.test('retired keys are wiped once nothing uses them, and all keys once both sides closed', async (t) => {
  const spy = spySuite()
  const w = world(spy.suite)
  spy.keys.length = 0
  const { i, r } = openPair(w)
  i.s.write(text('v1'))
  deliver(i, r)
  const v1Keys = [...spy.keys]
  i.s.rehandshake(at(w.ctx, 2), keysFor(w, 2))
  pump(i, r)
  t.same([i.rekeyed, r.rekeyed], [[2], [2]])
  t.ok(v1Keys.every(zero), 'every key of version 1 is zeroed while the tunnel stays open')
  i.s.write(text('v2'))
  deliver(i, r)
  t.ok(spy.keys.some((k) => !zero(k)), 'the version 2 keys are live')
  i.s.end()
  r.s.end()
  pump(i, r)
  t.equal(received(r).toString(), 'v1v2')
  t.ok(spy.keys.every(zero), 'closed both ways: nothing left')
  i.s.destroy()
  t.equal(i.s.state, 'closed', 'destroy after a clean close keeps the state')
})

t.test('errors thrown by the handler reach the caller and do not fail the session', async (t) => {
  const w = world()
  const { i, r } = openPair(w, { r: { handler: { onOpen() {}, onData: () => { throw new Error('handler bug') }, onEnd() {}, onRekeyed() {}, onError() {} } } })
  i.s.write(text('x'))
  t.throws(() => deliver(i, r), /handler bug/)
  t.equal(r.s.state, 'open')
  i.s.write(text('y'))
  t.throws(() => deliver(i, r), /handler bug/, 'the next record is still accepted')
})

t.test('an untyped error from send reaches the caller', async (t) => {
  const w = world()
  const { i } = pair(w)
  const r = end(w, 'responder', { send: () => { throw new Error('socket gone') } })
  i.s.start()
  t.throws(() => deliver(i, r), /socket gone/)
  t.same(r.errors, [], 'not reported as a protocol failure')
})
