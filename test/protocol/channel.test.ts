// The pure Noise channel driver: handshake over an in-memory transport, control
// messages in records, authenticated close, limits, and typed failures.
import t from 'tap'

import { CLOSE_NORMAL, NoiseChannel, type ChannelHandler, type ChannelLimits, type HandshakeResult } from '../../protocol/src/channel.js'
import { nodeSuite } from '../../protocol/src/crypto/node-provider.js'
import { PROTO_ERRORS, type KeymeshError } from '../../protocol/src/errors.js'
import { encodeMessage, type Message } from '../../protocol/src/messages/index.js'
import { HandshakeState } from '../../protocol/src/noise/handshake-state.js'
import { createXkInitiator, createXkResponder } from '../../protocol/src/noise/keymesh-handshakes.js'
import { PROTOCOL_VERSION } from '../../protocol/src/version.js'

const suite = nodeSuite

interface End {
  channel: NoiseChannel
  /** Messages this end put on the wire, not yet delivered. */
  wire: Uint8Array[]
  closes: { code: number; reason: string }[]
  messages: Message[]
  errors: KeymeshError[]
  handshakes: HandshakeResult[]
  peerCloses: { code: number; reason: string }[]
}

function end(handshake: HandshakeState, opts: { limits?: ChannelLimits; payload?: (i: number) => Uint8Array } = {}): End {
  const e = { wire: [], closes: [], messages: [], errors: [], handshakes: [], peerCloses: [] } as unknown as End
  const handler: ChannelHandler = {
    onHandshake: (r) => e.handshakes.push(r),
    onMessage: (m) => e.messages.push(m),
    onError: (err) => e.errors.push(err),
    onPeerClose: (code, reason) => e.peerCloses.push({ code, reason }),
  }
  e.channel = new NoiseChannel({
    handshake,
    transport: { send: (b) => e.wire.push(new Uint8Array(b)), close: (code, reason) => e.closes.push({ code, reason }) },
    handler,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.payload ? { payload: opts.payload } : {}),
  })
  return e
}

/** Delivers everything in flight, both ways, until quiet. */
function pump(a: End, b: End): void {
  while (a.wire.length > 0 || b.wire.length > 0) {
    for (const m of a.wire.splice(0)) if (b.channel.state !== 'closed' && b.channel.state !== 'failed') b.channel.receive(m)
    for (const m of b.wire.splice(0)) if (a.channel.state !== 'closed' && a.channel.state !== 'failed') a.channel.receive(m)
  }
}

const hello = (): Uint8Array => encodeMessage({ type: 'hello', protocol: PROTOCOL_VERSION, service: 'orders', agentVersion: '1.0.0' })

function xkPair(limits?: ChannelLimits) {
  const cp = suite.x25519Generate()
  const agentKey = suite.x25519Generate()
  const agent = end(createXkInitiator({ suite, staticKey: agentKey, controlPlaneKey: cp.publicKey }), { payload: (i) => (i === 2 ? hello() : new Uint8Array(0)), ...(limits ? { limits } : {}) })
  const server = end(createXkResponder({ suite, staticKey: cp }), limits ? { limits } : {})
  return { agent, server, agentKey, cp }
}

const code = (c: keyof typeof PROTO_ERRORS): number => PROTO_ERRORS[c].closeCode

t.test('runs Noise XK and hands the responder the initiator key and the message-3 payload', async (t) => {
  const { agent, server, agentKey } = xkPair()
  t.equal(agent.channel.state, 'new')
  agent.channel.start()
  agent.channel.start()
  t.equal(agent.wire.length, 1, 'start is idempotent')
  pump(agent, server)
  t.equal(agent.channel.state, 'open')
  t.equal(server.channel.state, 'open')
  const [r] = server.handshakes
  t.same(Buffer.from(r?.remoteStatic ?? []), Buffer.from(agentKey.publicKey))
  t.equal(r?.payloads.length, 2)
  t.equal(r?.payloads[0]?.length, 0)
  t.same(Buffer.from(r?.payloads[1] ?? []), Buffer.from(hello()))
  t.same(Buffer.from(agent.handshakes[0]?.handshakeHash ?? []), Buffer.from(r?.handshakeHash ?? []), 'both sides agree on the handshake hash')

  server.channel.send({ type: 'usage.ack', seq: 7 })
  agent.channel.send({ type: 'usage.batch', seq: 1, events: [{ kind: 'conn.open', at: 1 }] })
  pump(agent, server)
  t.same(agent.messages, [{ type: 'usage.ack', seq: 7 }])
  t.same(server.messages, [{ type: 'usage.batch', seq: 1, events: [{ kind: 'conn.open', at: 1 }] }])
})

t.test('works with any pattern: Noise NN, responder fed first', async (t) => {
  const a = end(new HandshakeState({ suite, protocolName: 'Noise_NN_25519_ChaChaPoly_SHA256', initiator: true }))
  const b = end(new HandshakeState({ suite, protocolName: 'Noise_NN_25519_ChaChaPoly_SHA256', initiator: false }))
  a.channel.start()
  b.channel.receive(a.wire.shift() as Uint8Array)
  pump(a, b)
  t.equal(a.channel.state, 'open')
  t.equal(b.channel.state, 'open')
  t.equal(b.handshakes[0]?.remoteStatic, undefined)
})

t.test('close sends an authenticated CLOSE, and the peer answers it', async (t) => {
  const { agent, server } = xkPair()
  agent.channel.start()
  pump(agent, server)
  server.channel.close(4611, 'CP_ERR_AGENT_REVOKED')
  t.same(server.closes, [{ code: 4611, reason: 'CP_ERR_AGENT_REVOKED' }])
  server.channel.close(4000, 'again')
  t.equal(server.closes.length, 1, 'close is idempotent')
  t.throws(() => server.channel.send({ type: 'usage.ack', seq: 1 }), { code: 'PROTO_ERR_SESSION_CLOSED' })
  t.throws(() => server.channel.receive(new Uint8Array(30)), { code: 'PROTO_ERR_SESSION_CLOSED' })
  agent.channel.receive(server.wire.shift() as Uint8Array)
  t.same(agent.peerCloses, [{ code: 4611, reason: 'CP_ERR_AGENT_REVOKED' }])
  t.same(agent.closes, [{ code: CLOSE_NORMAL, reason: '' }])
  t.equal(agent.wire.length, 1, 'the answer is a CLOSE record of our own')
})

t.test('closing during the handshake closes the transport without a record', async (t) => {
  const { agent } = xkPair()
  agent.channel.start()
  agent.wire.length = 0
  agent.channel.close(4614, 'CP_ERR_HANDSHAKE_TIMEOUT')
  t.same(agent.closes, [{ code: 4614, reason: 'CP_ERR_HANDSHAKE_TIMEOUT' }])
  t.equal(agent.wire.length, 0)
})

t.test('sending before the handshake completes is refused', async (t) => {
  const { agent } = xkPair()
  t.throws(() => agent.channel.send({ type: 'usage.ack', seq: 1 }), { code: 'PROTO_ERR_HANDSHAKE_STATE' })
})

t.test('bad handshake bytes fail the channel with the typed close code', async (t) => {
  const { server } = xkPair()
  server.channel.receive(new Uint8Array(48).fill(9))
  t.equal(server.channel.state, 'failed')
  t.same(server.closes, [{ code: code('PROTO_ERR_DECRYPT'), reason: 'PROTO_ERR_DECRYPT' }])
  t.equal(server.errors[0]?.code, 'PROTO_ERR_DECRYPT')
  t.throws(() => server.channel.receive(new Uint8Array(48)), { code: 'PROTO_ERR_SESSION_FAILED' })
  t.throws(() => server.channel.send({ type: 'usage.ack', seq: 1 }), { code: 'PROTO_ERR_SESSION_FAILED' })
  server.channel.close(1000, '')
  server.channel.fail(server.errors[0] as KeymeshError)
  t.equal(server.closes.length, 1, 'nothing more after failure')
})

t.test('a wrong pinned responder key fails at the responder', async (t) => {
  const cp = suite.x25519Generate()
  const agent = end(createXkInitiator({ suite, staticKey: suite.x25519Generate(), controlPlaneKey: suite.x25519Generate().publicKey }))
  const server = end(createXkResponder({ suite, staticKey: cp }))
  agent.channel.start()
  pump(agent, server)
  t.equal(server.errors[0]?.code, 'PROTO_ERR_DECRYPT')
})

t.test('a message out of turn in the handshake fails the channel', async (t) => {
  const { agent } = xkPair()
  agent.channel.start()
  // The initiator now waits for message 2; a stray message 1 shape is not it.
  agent.channel.receive(new Uint8Array(10))
  t.equal(agent.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MESSAGE')
})

t.test('handshake and message size limits are enforced with their codes', async (t) => {
  const small = xkPair({ maxHandshakeBytes: 40 })
  small.server.channel.receive(new Uint8Array(41))
  t.equal(small.server.errors[0]?.code, 'PROTO_ERR_HANDSHAKE_MESSAGE')

  const { agent, server } = xkPair({ maxMessageBytes: 64 })
  agent.channel.start()
  pump(agent, server)
  t.throws(() => server.channel.sendEncoded(new Uint8Array(65)), { code: 'PROTO_ERR_MESSAGE_TOO_LARGE' })
  // The peer's limit holds even when the sender does not apply one.
  const big = xkPair({ maxMessageBytes: 64 })
  const loose = end(createXkInitiator({ suite, staticKey: suite.x25519Generate(), controlPlaneKey: big.cp.publicKey }), { payload: (i) => (i === 2 ? hello() : new Uint8Array(0)) })
  loose.channel.start()
  pump(loose, big.server)
  loose.channel.send({ type: 'usage.batch', seq: 1, events: [{ kind: 'conn.open', at: 1, pairId: 'a:b', peerService: 'b' }] })
  pump(loose, big.server)
  t.equal(big.server.errors[0]?.code, 'PROTO_ERR_MESSAGE_TOO_LARGE')
  t.same(big.server.closes, [{ code: code('PROTO_ERR_MESSAGE_TOO_LARGE'), reason: 'PROTO_ERR_MESSAGE_TOO_LARGE' }])

  for (const bad of [0, 70_000, 1.5]) {
    t.throws(() => xkPair({ maxMessageBytes: bad }), { code: 'PROTO_ERR_INVALID_ARGUMENT' })
    t.throws(() => xkPair({ maxHandshakeBytes: bad }), { code: 'PROTO_ERR_INVALID_ARGUMENT' })
  }
  const limited = xkPair({ maxRecords: 1 })
  limited.agent.channel.start()
  pump(limited.agent, limited.server)
  limited.server.channel.send({ type: 'usage.ack', seq: 1 })
  t.throws(() => limited.server.channel.send({ type: 'usage.ack', seq: 2 }), { code: 'PROTO_ERR_RECORD_LIMIT' })
})

t.test('tampered records and undecodable messages fail with their codes', async (t) => {
  const { agent, server } = xkPair()
  agent.channel.start()
  pump(agent, server)
  server.channel.send({ type: 'usage.ack', seq: 1 })
  const wire = server.wire.shift() as Uint8Array
  wire[wire.length - 1] = (wire[wire.length - 1] as number) ^ 1
  agent.channel.receive(wire)
  t.equal(agent.errors[0]?.code, 'PROTO_ERR_DECRYPT')

  const p = xkPair()
  p.agent.channel.start()
  pump(p.agent, p.server)
  p.agent.channel.sendEncoded(new TextEncoder().encode('{"type":'))
  pump(p.agent, p.server)
  t.equal(p.server.errors[0]?.code, 'PROTO_ERR_MESSAGE_MALFORMED')
  p.agent.channel.sendEncoded(new Uint8Array(1))
  t.equal(p.agent.channel.state, 'open', 'the sender is unaffected')
})

t.test('plaintext is wiped after sealing when asked', async (t) => {
  const { agent, server } = xkPair()
  agent.channel.start()
  pump(agent, server)
  const encoded = encodeMessage({ type: 'usage.ack', seq: 3 })
  server.channel.sendEncoded(encoded, true)
  t.ok(encoded.every((b) => b === 0), 'wiped')
  pump(agent, server)
  t.same(agent.messages, [{ type: 'usage.ack', seq: 3 }])
  const kept = encodeMessage({ type: 'usage.ack', seq: 4 })
  server.channel.sendEncoded(kept)
  t.ok(kept.some((b) => b !== 0), 'kept when not asked')
})

t.test('errors thrown by the handler reach the caller and do not fail the channel', async (t) => {
  const cp = suite.x25519Generate()
  const queue: Uint8Array[] = []
  const server = new NoiseChannel({
    handshake: createXkResponder({ suite, staticKey: cp }),
    transport: { send: (b) => client.receive(b), close: () => {} },
    handler: { onMessage: () => { throw new Error('handler bug') } },
  })
  const client: NoiseChannel = new NoiseChannel({
    handshake: createXkInitiator({ suite, staticKey: suite.x25519Generate(), controlPlaneKey: cp.publicKey }),
    transport: { send: (b) => queue.push(b), close: () => {} },
    handler: {},
    payload: (i) => (i === 2 ? hello() : new Uint8Array(0)),
  })
  client.start()
  while (queue.length > 0) server.receive(queue.shift() as Uint8Array)
  t.equal(server.state, 'open')
  client.send({ type: 'usage.ack', seq: 1 })
  t.throws(() => server.receive(queue.shift() as Uint8Array), /handler bug/)
  t.equal(server.state, 'open')
})
