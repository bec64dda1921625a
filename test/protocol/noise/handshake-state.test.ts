import t from 'tap'

import { nodeSuite as suite } from '../../../protocol/src/crypto/node-provider.js'
import { nodeSuite } from '../../../protocol/src/crypto/node-provider.js'
import { stablelibSuite } from '../../../protocol/src/crypto/stablelib-provider.js'
import { createXkInitiator, createXkResponder } from '../../../protocol/src/noise/keymesh-handshakes.js'
import { HandshakeState, MAX_NOISE_MESSAGE, type HandshakeOptions } from '../../../protocol/src/noise/handshake-state.js'
import { PATTERN_NAMES, getPattern, parseProtocolName } from '../../../protocol/src/noise/patterns.js'
import { SymmetricState } from '../../../protocol/src/noise/symmetric-state.js'

const name = (p: string): string => `Noise_${p}_25519_ChaChaPoly_SHA256`
// tap matches thrown errors against an object pattern.
const code = (c: string) => ({ name: 'KeymeshError', code: c })
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

const iS = suite.x25519Generate()
const rS = suite.x25519Generate()
const psk = new Uint8Array(32).fill(7)

/** Initiator and responder for `pattern` with every key either could need. */
function pair(pattern: string, extra: Partial<HandshakeOptions> = {}): [HandshakeState, HandshakeState] {
  const p = getPattern(pattern)
  const psks = Array.from({ length: p.pskCount }, () => psk)
  const common = { suite, protocolName: name(pattern), prologue: bytes('pro'), psks, ...extra }
  const initNeedsRs = p.responderPre.length > 0
  const respNeedsRs = p.initiatorPre.length > 0
  return [
    new HandshakeState({ ...common, initiator: true, s: iS, ...(initNeedsRs ? { rs: rS.publicKey } : {}) }),
    new HandshakeState({ ...common, initiator: false, s: rS, ...(respNeedsRs ? { rs: iS.publicKey } : {}) }),
  ]
}

/** Runs the handshake; returns every message written. */
function run(init: HandshakeState, resp: HandshakeState, payload = bytes('hi')): Uint8Array[] {
  const msgs: Uint8Array[] = []
  let i = 0
  while (!init.isComplete) {
    const [w, r] = i % 2 === 0 ? [init, resp] : [resp, init]
    const m = w.writeMessage(payload)
    msgs.push(m)
    if (r.readMessage(m).length !== payload.length) throw new Error('payload mismatch')
    i++
  }
  return msgs
}

t.test('every pattern and psk variant completes with generated ephemerals', async (t) => {
  const variants = PATTERN_NAMES.flatMap((p) => [p, `${p}psk0`, `${p}psk1`, `${p}psk0+psk1`])
  for (const p of variants) {
    const [init, resp] = pair(p)
    run(init, resp)
    t.ok(resp.isComplete, p)
    t.same(init.handshakeHash, resp.handshakeHash, `${p} hashes agree`)
    if (init.pattern.oneWay) {
      const a = init.splitOneWay().cipher
      const b = resp.splitOneWay().cipher
      t.same(b.decryptWithAd(new Uint8Array(0), a.encryptWithAd(new Uint8Array(0), bytes('x'))), bytes('x'))
    } else {
      const a = init.split()
      const b = resp.split()
      t.same(a.recv.decryptWithAd(new Uint8Array(0), b.send.encryptWithAd(new Uint8Array(0), bytes('y'))), bytes('y'))
    }
  }
})

t.test('rejects bad protocol names and pattern names', async (t) => {
  const bad = [
    'Noise_XK_448_ChaChaPoly_SHA256',
    'Noise_XK_25519_AESGCM_SHA256',
    'Noise__25519_ChaChaPoly_SHA256',
    name('ZZ'),
    name('XKfallback'),
    name('xk'),
    name('NNpsk3'),
    name('NNpsk0+psk0'),
    name('NNpsk0+hfs'),
    name('NNpsk'),
    name('NNpsk00'),
    name('NNpsk123'),
    'XK',
  ]
  for (const n of bad) t.throws(() => parseProtocolName(n), code('PROTO_ERR_UNKNOWN_PATTERN'), n)
  t.throws(() => parseProtocolName(42 as unknown as string), code('PROTO_ERR_UNKNOWN_PATTERN'))
  t.throws(() => new HandshakeState({ suite, protocolName: name('QQ'), initiator: true }), code('PROTO_ERR_UNKNOWN_PATTERN'))
  t.equal(getPattern('XK'), getPattern('XK'), 'parsed patterns are cached')
  t.same(getPattern('KKpsk0').messages[0], ['psk', 'e', 'es', 'ss'], 'psk0 leads the first message')
  t.same(getPattern('XXpsk3').messages[2], ['s', 'se', 'psk'], 'psk3 ends the third message')
})

t.test('checks options before any work', async (t) => {
  t.throws(() => new HandshakeState({ suite, protocolName: name('XK'), initiator: true, s: iS }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'), 'XK initiator without pinned key')
  t.throws(() => new HandshakeState({ suite, protocolName: name('XK'), initiator: true, rs: rS.publicKey }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'), 'XK initiator without static')
  t.throws(() => new HandshakeState({ suite, protocolName: name('XK'), initiator: false }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'), 'XK responder without static')
  t.throws(() => new HandshakeState({ suite, protocolName: name('KK'), initiator: false, s: rS }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'), 'KK responder without remote static')
  t.throws(() => new HandshakeState({ suite, protocolName: name('NX'), initiator: false }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'), 'es needs the responder static')
  t.throws(() => pair('NNpsk0', { psks: [] }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'), 'missing psk')
  t.throws(() => pair('NNpsk0', { psks: [psk, psk] }), code('PROTO_ERR_INVALID_ARGUMENT'), 'extra psk')
  t.throws(() => pair('NN', { psks: [psk] }), code('PROTO_ERR_INVALID_ARGUMENT'), 'psk for a non-psk pattern')
  t.throws(() => pair('NNpsk0', { psks: [new Uint8Array(31)] }), code('PROTO_ERR_INVALID_KEY'), 'short psk')
  t.throws(() => pair('NNpsk0', { psks: ['x' as unknown as Uint8Array] }), code('PROTO_ERR_INVALID_KEY'), 'psk not bytes')
  t.throws(() => pair('NN', { prologue: 'p' as unknown as Uint8Array }), code('PROTO_ERR_INVALID_ARGUMENT'), 'prologue not bytes')
  for (const max of [0, 65536, 1.5]) t.throws(() => pair('NN', { maxMessageLength: max }), code('PROTO_ERR_INVALID_ARGUMENT'), `max ${max}`)
  const shortKey = { publicKey: new Uint8Array(31), secretKey: new Uint8Array(32) }
  t.throws(() => new HandshakeState({ suite, protocolName: name('XX'), initiator: true, s: shortKey }), code('PROTO_ERR_INVALID_KEY'))
  t.throws(() => new HandshakeState({ suite, protocolName: name('XX'), initiator: true, e: shortKey }), code('PROTO_ERR_INVALID_KEY'))
  t.throws(() => new HandshakeState({ suite, protocolName: name('NK'), initiator: true, rs: new Uint8Array(33) }), code('PROTO_ERR_INVALID_KEY'))
})

t.test('enforces turn order and fails the state', async (t) => {
  const [init, resp] = pair('XK')
  t.ok(init.isMyTurn)
  t.notOk(resp.isMyTurn)
  t.throws(() => resp.writeMessage(), code('PROTO_ERR_HANDSHAKE_STATE'), 'responder cannot speak first')
  t.ok(resp.isFailed, 'an out-of-turn call fails the state')
  t.throws(() => resp.readMessage(init.writeMessage()), code('PROTO_ERR_HANDSHAKE_STATE'), 'failed state refuses reads')
  const [init2] = pair('XK')
  t.throws(() => init2.readMessage(new Uint8Array(48)), code('PROTO_ERR_HANDSHAKE_STATE'), 'initiator cannot read first')
  t.notOk(init2.isMyTurn, 'no turn on a failed state')
  t.throws(() => init2.writeMessage(), code('PROTO_ERR_HANDSHAKE_STATE'))
})

t.test('writeMessage and readMessage after completion throw', async (t) => {
  const [init, resp] = pair('NN')
  t.throws(() => init.handshakeHash, code('PROTO_ERR_HANDSHAKE_STATE'), 'no hash before completion')
  t.throws(() => init.split(), code('PROTO_ERR_HANDSHAKE_STATE'), 'no split before completion')
  run(init, resp)
  t.notOk(init.isMyTurn)
  t.throws(() => init.writeMessage(), code('PROTO_ERR_HANDSHAKE_STATE'))
  t.throws(() => resp.writeMessage(), code('PROTO_ERR_HANDSHAKE_STATE'))
  t.throws(() => init.readMessage(new Uint8Array(48)), code('PROTO_ERR_HANDSHAKE_STATE'))
  t.throws(() => init.splitOneWay(), code('PROTO_ERR_HANDSHAKE_STATE'), 'interactive pattern has no one-way split')
  init.split()
  t.throws(() => init.split(), code('PROTO_ERR_HANDSHAKE_STATE'), 'split only once')
  const [n1, n2] = pair('N')
  run(n1, n2)
  t.throws(() => n1.split(), code('PROTO_ERR_HANDSHAKE_STATE'), 'one-way pattern has no two-way split')
  resp.destroy()
  t.throws(() => resp.handshakeHash, code('PROTO_ERR_HANDSHAKE_STATE'), 'destroyed state has no hash')
  t.throws(() => resp.split(), code('PROTO_ERR_HANDSHAKE_STATE'))
})

t.test('validates message lengths before use', async (t) => {
  // XK message 1 is e (32) + payload tag (16): 48 bytes at least.
  for (const len of [0, 31, 47]) {
    const [, resp] = pair('XK')
    t.throws(() => resp.readMessage(new Uint8Array(len)), code('PROTO_ERR_HANDSHAKE_MESSAGE'), `length ${len}`)
    t.ok(resp.isFailed)
  }
  const [, resp] = pair('XK')
  t.throws(() => resp.readMessage(new Uint8Array(MAX_NOISE_MESSAGE + 1)), code('PROTO_ERR_HANDSHAKE_MESSAGE'), 'over 65535')
  const [, resp2] = pair('XK')
  t.throws(() => resp2.readMessage('abc' as unknown as Uint8Array), code('PROTO_ERR_HANDSHAKE_MESSAGE'), 'not bytes')
  const [init] = pair('XK')
  t.throws(() => init.writeMessage(new Uint8Array(MAX_NOISE_MESSAGE - 47)), code('PROTO_ERR_HANDSHAKE_MESSAGE'), 'payload too large')
  t.ok(init.isFailed)
  const [init2, resp3] = pair('XK')
  t.equal(init2.writeMessage(new Uint8Array(MAX_NOISE_MESSAGE - 48)).length, MAX_NOISE_MESSAGE, 'exactly 65535 is allowed')
  const [init3] = pair('XK')
  t.throws(() => init3.writeMessage('x' as unknown as Uint8Array), code('PROTO_ERR_INVALID_ARGUMENT'), 'payload not bytes')
  const keyless = new HandshakeState({ suite, protocolName: name('NN'), initiator: false })
  t.throws(() => keyless.readMessage(new Uint8Array(3)), code('PROTO_ERR_HANDSHAKE_MESSAGE'), 'NN message 1 is at least 32 bytes')
  const [small] = pair('NN', { maxMessageLength: 40 })
  t.throws(() => small.writeMessage(new Uint8Array(9)), code('PROTO_ERR_HANDSHAKE_MESSAGE'), 'custom limit')
  t.notOk(resp3.isFailed)
})

/** Fresh pair with the first `m` messages exchanged; returns the writer's message m too. */
function upTo(pattern: string, m: number): { writer: HandshakeState; reader: HandshakeState; msg: Uint8Array } {
  const [init, resp] = pair(pattern)
  for (let i = 0; i < m; i++) {
    const [w, r] = i % 2 === 0 ? [init, resp] : [resp, init]
    r.readMessage(w.writeMessage(bytes('p')))
  }
  const [writer, reader] = m % 2 === 0 ? [init, resp] : [resp, init]
  return { writer, reader, msg: writer.writeMessage(bytes('p')) }
}

t.test('a bit flip anywhere in a handshake message fails decryption and the state', async (t) => {
  for (const pattern of ['XK', 'KKpsk0', 'IK']) {
    const count = getPattern(pattern).messages.length
    let flips = 0
    for (let m = 0; m < count; m++) {
      const len = upTo(pattern, m).msg.length
      for (let byte = 0; byte < len; byte++) {
        const { reader, msg } = upTo(pattern, m)
        msg[byte] = (msg[byte] as number) ^ (1 << (byte % 8))
        t.throws(() => reader.readMessage(msg), code('PROTO_ERR_DECRYPT'), `${pattern} message ${m + 1} byte ${byte}`)
        t.ok(reader.isFailed)
        t.throws(() => reader.readMessage(msg), code('PROTO_ERR_HANDSHAKE_STATE'), 'no retry on a broken state')
        flips++
      }
    }
    t.comment(`${pattern}: ${flips} single-bit flips, all rejected`)
  }
  // XX message 1 is unauthenticated (e and a cleartext payload): tampering shows at message 2.
  const { writer, reader, msg } = upTo('XX', 0)
  msg[0] = (msg[0] as number) ^ 1
  reader.readMessage(msg)
  const reply = reader.writeMessage()
  t.throws(() => writer.readMessage(reply), code('PROTO_ERR_DECRYPT'), 'XX tampering caught at message 2')
})

t.test('a low-order ephemeral from the peer is rejected', async (t) => {
  const [, resp] = pair('XK')
  t.throws(() => resp.readMessage(new Uint8Array(48)), code('PROTO_ERR_LOW_ORDER_POINT'))
  t.ok(resp.isFailed)
})

t.test('remoteStatic is exposed once learned', async (t) => {
  const [init, resp] = pair('XK')
  t.same(init.remoteStatic, rS.publicKey, 'pinned key known from the start')
  t.equal(resp.remoteStatic, undefined)
  resp.readMessage(init.writeMessage())
  init.readMessage(resp.writeMessage())
  t.equal(resp.remoteStatic, undefined, 'not before message 3')
  resp.readMessage(init.writeMessage())
  t.same(resp.remoteStatic, iS.publicKey)
})

t.test('rekey interplays with the split cipher states', async (t) => {
  const [init, resp] = pair('KKpsk0')
  run(init, resp)
  const a = init.split()
  const b = resp.split()
  const ad = new Uint8Array(0)
  t.same(b.recv.decryptWithAd(ad, a.send.encryptWithAd(ad, bytes('one'))), bytes('one'))
  a.send.rekey()
  b.recv.rekey()
  t.same(b.recv.decryptWithAd(ad, a.send.encryptWithAd(ad, bytes('two'))), bytes('two'), 'both rekeyed')
  t.equal(a.send.nonce, 2, 'rekey keeps the nonce')
  a.send.rekey()
  t.throws(() => b.recv.decryptWithAd(ad, a.send.encryptWithAd(ad, bytes('three'))), code('PROTO_ERR_DECRYPT'), 'one-sided rekey')
  t.same(a.recv.decryptWithAd(ad, b.send.encryptWithAd(ad, bytes('back'))), bytes('back'), 'other direction unaffected')
})

t.test('SymmetricState follows InitializeSymmetric and refuses a second split', async (t) => {
  const short = new SymmetricState(suite, 'Noise_NN_25519_ChaChaPoly_SHA256')
  const padded = new Uint8Array(32)
  padded.set(bytes('Noise_NN_25519_ChaChaPoly_SHA256'))
  t.same(short.getHandshakeHash(), padded, 'names of HASHLEN bytes are padded, not hashed')
  const long = new SymmetricState(suite, 'Noise_KKpsk0_25519_ChaChaPoly_SHA256')
  t.same(long.getHandshakeHash(), suite.sha256(bytes('Noise_KKpsk0_25519_ChaChaPoly_SHA256')), 'longer names are hashed')
  t.notOk(long.hasKey())
  t.same(long.encryptAndHash(bytes('clear')), bytes('clear'), 'no key: plaintext passes through')
  long.mixKeyAndHash(new Uint8Array(32))
  t.ok(long.hasKey())
  long.split()
  t.throws(() => long.split(), code('PROTO_ERR_HANDSHAKE_STATE'))
})

t.test('a finished or failed handshake has its provider forget the ephemeral key', async (t) => {
  const forgotten: Uint8Array[] = []
  const suite = { ...nodeSuite, x25519Forget: (k: Uint8Array) => { forgotten.push(new Uint8Array(k)); nodeSuite.x25519Forget(k) } }
  const cp = nodeSuite.x25519Generate()
  const agent = nodeSuite.x25519Generate()
  const ie = nodeSuite.x25519Generate()
  const re = nodeSuite.x25519Generate()
  const init = createXkInitiator({ suite, staticKey: agent, controlPlaneKey: cp.publicKey, ephemeral: ie })
  const resp = createXkResponder({ suite, staticKey: cp, ephemeral: re })
  resp.readMessage(init.writeMessage())
  init.readMessage(resp.writeMessage())
  resp.readMessage(init.writeMessage())
  init.split()
  resp.split()
  t.same(forgotten.map((k) => Buffer.from(k).toString('hex')).sort(), [ie, re].map((k) => Buffer.from(k.secretKey).toString('hex')).sort(), 'both ephemerals, read before they were wiped')
  // The provider still answers for a forgotten key: it imports it again.
  const peer = nodeSuite.x25519Generate()
  const once = nodeSuite.x25519(ie.secretKey, peer.publicKey)
  nodeSuite.x25519Forget(ie.secretKey)
  t.same(nodeSuite.x25519(ie.secretKey, peer.publicKey), once)
  stablelibSuite.x25519Forget(ie.secretKey)
})
