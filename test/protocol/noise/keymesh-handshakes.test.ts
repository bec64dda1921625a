import t from 'tap'

import { nodeSuite as suite } from '../../../protocol/src/crypto/node-provider.js'
import type { HandshakeState } from '../../../protocol/src/noise/handshake-state.js'
import {
  KK_PROTOCOL,
  XK_PROTOCOL,
  createKkInitiator,
  createKkResponder,
  createXkInitiator,
  createXkResponder,
} from '../../../protocol/src/noise/keymesh-handshakes.js'
import {
  MAX_PREAMBLE_BYTES,
  decodeTunnelPreamble,
  encodePrologue,
  encodeTunnelPreamble,
  tunnelPrologue,
  type TunnelContext,
} from '../../../protocol/src/noise/tunnel-preamble.js'

const code = (c: string) => ({ name: 'KeymeshError', code: c })
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const ad = new Uint8Array(0)

const cp = suite.x25519Generate()
const agentA = suite.x25519Generate()
const agentB = suite.x25519Generate()
const pairKeyV1 = new Uint8Array(32).fill(0x11)
const pairKeyV2 = new Uint8Array(32).fill(0x22)
const AGENT_A = 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa'
const AGENT_Z = 'agt_zzzzzzzzzzzzzzzzzzzzzzzzzq'
const ctx: TunnelContext = { pairId: 'billing:orders', keyVersion: 2, fromService: 'orders', toService: 'billing', fromAgent: AGENT_A }

/** Runs messages in order; returns the payloads each reader got. */
function exchange(init: HandshakeState, resp: HandshakeState, payloads: string[]): string[] {
  return payloads.map((p, i) => {
    const [w, r] = i % 2 === 0 ? [init, resp] : [resp, init]
    return text(r.readMessage(w.writeMessage(bytes(p))))
  })
}

t.test('XK: agent and control plane complete with payloads and agree on keys', async (t) => {
  const agent = createXkInitiator({ suite, staticKey: agentA, controlPlaneKey: cp.publicKey })
  const plane = createXkResponder({ suite, staticKey: cp })
  t.equal(agent.pattern.name, 'XK')
  t.same(exchange(agent, plane, ['hello', 'welcome', 'join-token-123']), ['hello', 'welcome', 'join-token-123'])
  t.same(plane.remoteStatic, agentA.publicKey, 'control plane learned the agent key from message 3')
  const a = agent.split()
  const p = plane.split()
  t.same(a.handshakeHash, p.handshakeHash)
  t.equal(text(p.recv.decryptWithAd(ad, a.send.encryptWithAd(ad, bytes('up')))), 'up')
  t.equal(text(a.recv.decryptWithAd(ad, p.send.encryptWithAd(ad, bytes('keys')))), 'keys')
  t.equal(XK_PROTOCOL, 'Noise_XK_25519_ChaChaPoly_SHA256')
})

t.test('XK: preset ephemerals give reproducible messages', async (t) => {
  const e1 = suite.x25519FromSecret(new Uint8Array(32).fill(3))
  const e2 = suite.x25519FromSecret(new Uint8Array(32).fill(4))
  const once = () => {
    const agent = createXkInitiator({ suite, staticKey: agentA, controlPlaneKey: cp.publicKey, ephemeral: e1 })
    const plane = createXkResponder({ suite, staticKey: cp, ephemeral: e2 })
    const m1 = agent.writeMessage()
    plane.readMessage(m1)
    return [m1, plane.writeMessage()]
  }
  t.same(once(), once())
})

t.test('XK: an agent pinning the wrong control-plane key fails at message 1', async (t) => {
  const agent = createXkInitiator({ suite, staticKey: agentA, controlPlaneKey: suite.x25519Generate().publicKey })
  const plane = createXkResponder({ suite, staticKey: cp })
  t.throws(() => plane.readMessage(agent.writeMessage()), code('PROTO_ERR_DECRYPT'))
  t.ok(plane.isFailed)
  t.throws(() => createXkInitiator({ suite, staticKey: agentA, controlPlaneKey: undefined as unknown as Uint8Array }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'))
})

function kk(overrides: { initCtx?: TunnelContext; respCtx?: TunnelContext; initPsk?: Uint8Array; respPsk?: Uint8Array; respRemote?: Uint8Array } = {}) {
  const init = createKkInitiator({ suite, staticKey: agentA, remoteStatic: agentB.publicKey, psk: overrides.initPsk ?? pairKeyV2, context: overrides.initCtx ?? ctx })
  const resp = createKkResponder({ suite, staticKey: agentB, remoteStatic: overrides.respRemote ?? agentA.publicKey, psk: overrides.respPsk ?? pairKeyV2, context: overrides.respCtx ?? ctx })
  return { init, resp }
}

t.test('KKpsk0: two agents complete through the preamble with payloads', async (t) => {
  const preamble = encodeTunnelPreamble(ctx)
  const seen = decodeTunnelPreamble(preamble)
  t.same(seen, ctx, 'preamble round-trips')
  const { init, resp } = kk({ respCtx: seen })
  t.equal(init.pattern.name, 'KKpsk0')
  t.equal(KK_PROTOCOL, 'Noise_KKpsk0_25519_ChaChaPoly_SHA256')
  t.same(exchange(init, resp, ['open orders→billing', 'accepted']), ['open orders→billing', 'accepted'])
  const a = init.split()
  const b = resp.split()
  t.equal(text(b.recv.decryptWithAd(ad, a.send.encryptWithAd(ad, bytes('tcp bytes')))), 'tcp bytes')
  t.equal(text(a.recv.decryptWithAd(ad, b.send.encryptWithAd(ad, bytes('reply')))), 'reply')
})

t.test('KKpsk0: every mismatch fails at message 1 with PROTO_ERR_DECRYPT', async (t) => {
  const cases: [string, Parameters<typeof kk>[0]][] = [
    ['wrong pair key', { respPsk: pairKeyV1 }],
    ['wrong key version in the prologue', { respCtx: { ...ctx, keyVersion: 1 } }],
    ['different initiator service', { respCtx: { ...ctx, fromService: 'orders2', pairId: 'billing:orders2' } }],
    ['different responder service', { respCtx: { ...ctx, toService: 'payments', pairId: 'orders:payments' } }],
    ['reversed direction', { respCtx: { ...ctx, fromService: 'billing', toService: 'orders' } }],
    ['different agent id', { respCtx: { ...ctx, fromAgent: AGENT_Z } }],
    ['impersonator with the pair key but not the static key', { respRemote: suite.x25519Generate().publicKey }],
  ]
  for (const [what, o] of cases) {
    const { init, resp } = kk(o)
    t.throws(() => resp.readMessage(init.writeMessage(bytes('x'))), code('PROTO_ERR_DECRYPT'), what)
    t.ok(resp.isFailed, `${what}: responder state failed`)
  }
})

t.test('KKpsk0: a tampered preamble makes the handshake fail', async (t) => {
  // Each tampering still decodes to a valid, self-consistent context, so only the
  // prologue (and, for the agent id, the expected static key) can catch it.
  const tamper = (edit: (b: Uint8Array) => void): TunnelContext => {
    const b = encodeTunnelPreamble(ctx)
    edit(b)
    return decodeTunnelPreamble(b)
  }
  const cases: [string, TunnelContext][] = [
    ['key version', tamper((b) => (b[4] = 9))],
    ['agent id', tamper((b) => (b[b.length - 2] = 'b'.charCodeAt(0)))],
  ]
  const swapped = encodeTunnelPreamble({ ...ctx, fromService: 'billing', toService: 'orders' })
  cases.push(['direction', decodeTunnelPreamble(swapped)])
  for (const [what, seen] of cases) {
    t.notSame(seen, ctx, `${what}: preamble decodes to a different context`)
    const { init, resp } = kk({ respCtx: seen })
    t.throws(() => resp.readMessage(init.writeMessage()), code('PROTO_ERR_DECRYPT'), `${what}: message 1 fails`)
  }
  // Tampering the preamble so the pair id no longer matches the services is caught at decode.
  const b = encodeTunnelPreamble(ctx)
  b[b.indexOf('o'.charCodeAt(0), 6 + ctx.pairId.length)] = 'p'.charCodeAt(0)
  t.throws(() => decodeTunnelPreamble(b), code('PROTO_ERR_HANDSHAKE_PROLOGUE'), 'pair id and services disagree')
  // Message 2 is authenticated too.
  const { init: i2, resp: r2 } = kk()
  r2.readMessage(i2.writeMessage())
  const m2 = r2.writeMessage()
  m2[m2.length - 1] = (m2[m2.length - 1] as number) ^ 0x80
  t.throws(() => i2.readMessage(m2), code('PROTO_ERR_DECRYPT'), 'tampered message 2')
})

t.test('KKpsk0: factories validate keys and context', async (t) => {
  t.throws(() => kk({ initPsk: new Uint8Array(16) }), code('PROTO_ERR_HANDSHAKE_MISSING_KEY'))
  t.throws(
    () => createKkResponder({ suite, staticKey: agentB, remoteStatic: agentA.publicKey, psk: 'k' as unknown as Uint8Array, context: ctx }),
    code('PROTO_ERR_HANDSHAKE_MISSING_KEY'),
  )
  t.throws(() => kk({ initCtx: { ...ctx, fromService: 'Orders' } }), code('PROTO_ERR_INVALID_NAME'))
  t.throws(
    () => createKkInitiator({ suite, staticKey: agentA, remoteStatic: agentB.publicKey, psk: pairKeyV1, context: null as unknown as TunnelContext }),
    code('PROTO_ERR_INVALID_ARGUMENT'),
  )
  t.throws(() => createKkInitiator({ suite, staticKey: agentA, remoteStatic: new Uint8Array(3), psk: pairKeyV1, context: ctx }), code('PROTO_ERR_INVALID_KEY'))
  const e = suite.x25519Generate()
  const init = createKkInitiator({ suite, staticKey: agentA, remoteStatic: agentB.publicKey, psk: pairKeyV2, context: ctx, ephemeral: e })
  t.same(init.writeMessage().subarray(0, 32), e.publicKey, 'preset ephemeral is sent')
})

t.test('the noise index and the package index list the public surface', async (t) => {
  const noise = await import('../../../protocol/src/noise/index.js')
  for (const name of ['HandshakeState', 'CipherState', 'SymmetricState', 'parseProtocolName', 'createXkInitiator', 'createXkResponder', 'createKkInitiator', 'createKkResponder', 'encodeTunnelPreamble', 'decodeTunnelPreamble']) {
    t.ok(name in noise, name)
  }
  const protocol = await import('../../../protocol/src/index.js')
  for (const name of ['createXkResponder', 'RecordSession', 'encodeMessage', 'decodeMessage', 'pairId', 'nodeSuite', 'stablelibSuite', 'protoError']) {
    t.ok(name in protocol, `protocol index exports ${name}`)
  }
  t.equal(protocol.PROTOCOL_VERSION, 'keymesh/1')
})

t.test('prologue encoding is unambiguous', async (t) => {
  t.notSame(encodePrologue(['ab', 'c']), encodePrologue(['a', 'bc']))
  t.same(encodePrologue(['ab', '']), Uint8Array.from([0, 2, 0x61, 0x62, 0, 0]))
  t.throws(() => encodePrologue(['x'.repeat(0x10000)]), code('PROTO_ERR_HANDSHAKE_PROLOGUE'))
  t.notSame(tunnelPrologue(ctx), tunnelPrologue({ ...ctx, keyVersion: 22 }))
})

t.test('the preamble codec rejects bad input with typed errors', async (t) => {
  const good = encodeTunnelPreamble(ctx)
  const withByte = (i: number, v: number): Uint8Array => {
    const b = new Uint8Array(good)
    b[i] = v
    return b
  }
  const decodeCases: [string, unknown, string][] = [
    ['not bytes', 'abc', 'PROTO_ERR_HANDSHAKE_MESSAGE'],
    ['empty', new Uint8Array(0), 'PROTO_ERR_HANDSHAKE_MESSAGE'],
    ['header only', good.subarray(0, 5), 'PROTO_ERR_HANDSHAKE_MESSAGE'],
    ['truncated field', good.subarray(0, good.length - 1), 'PROTO_ERR_HANDSHAKE_MESSAGE'],
    ['trailing byte', Uint8Array.from([...good, 0]), 'PROTO_ERR_HANDSHAKE_MESSAGE'],
    ['too long', new Uint8Array(MAX_PREAMBLE_BYTES + 1).fill(1), 'PROTO_ERR_HANDSHAKE_MESSAGE'],
    ['unknown version', withByte(0, 2), 'PROTO_ERR_VERSION'],
    ['key version 0', Uint8Array.from([1, 0, 0, 0, 0, ...good.subarray(5)]), 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['empty pair id', Uint8Array.from([1, 0, 0, 0, 1, 0, ...good.subarray(6 + ctx.pairId.length)]), 'PROTO_ERR_INVALID_NAME'],
    ['non-ASCII pair id', withByte(6, 0xe9), 'PROTO_ERR_INVALID_NAME'],
    ['uppercase service', withByte(6 + ctx.pairId.length + 1, 'O'.charCodeAt(0)), 'PROTO_ERR_INVALID_NAME'],
    ['control byte in agent id', withByte(good.length - 1, 0x0a), 'PROTO_ERR_INVALID_ID'],
  ]
  for (const [what, input, c] of decodeCases) t.throws(() => decodeTunnelPreamble(input as Uint8Array), code(c), what)
  t.same(decodeTunnelPreamble(Uint8Array.from([1, 0xff, 0xff, 0xff, 0xff, ...good.subarray(5)])).keyVersion, 0xffff_ffff, 'largest key version')

  const encodeCases: [string, Partial<TunnelContext> | Record<string, unknown>, string][] = [
    ['key version 0', { keyVersion: 0 }, 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['fractional key version', { keyVersion: 1.5 }, 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['key version over u32', { keyVersion: 2 ** 32 }, 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['string key version', { keyVersion: '2' }, 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['leading hyphen', { fromService: '-orders' }, 'PROTO_ERR_INVALID_NAME'],
    ['trailing hyphen', { toService: 'billing-' }, 'PROTO_ERR_INVALID_NAME'],
    ['64-char service', { toService: 'a'.repeat(64) }, 'PROTO_ERR_INVALID_NAME'],
    ['empty service', { toService: '' }, 'PROTO_ERR_INVALID_NAME'],
    ['service with dot', { fromService: 'a.b' }, 'PROTO_ERR_INVALID_NAME'],
    ['long pair id', { pairId: 'p'.repeat(129) }, 'PROTO_ERR_INVALID_NAME'],
    ['pair id with space', { pairId: 'a b' }, 'PROTO_ERR_INVALID_NAME'],
    ['pair id of other services', { pairId: 'billing:payments' }, 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['same service twice', { fromService: 'billing', toService: 'billing' }, 'PROTO_ERR_HANDSHAKE_PROLOGUE'],
    ['agent id not a string', { fromAgent: 7 }, 'PROTO_ERR_INVALID_ID'],
    ['agent id without prefix', { fromAgent: 'agent-a' }, 'PROTO_ERR_INVALID_ID'],
  ]
  for (const [what, o, c] of encodeCases) t.throws(() => encodeTunnelPreamble({ ...ctx, ...o } as TunnelContext), code(c), what)
  const maxCtx = { ...ctx, pairId: `${'a'.repeat(63)}:${'b'.repeat(63)}`, fromService: 'a'.repeat(63), toService: 'b'.repeat(63) }
  t.same(decodeTunnelPreamble(encodeTunnelPreamble(maxCtx)), maxCtx, 'longest fields round-trip')
  t.equal(encodeTunnelPreamble(maxCtx).length, MAX_PREAMBLE_BYTES, 'MAX_PREAMBLE_BYTES is the largest preamble')
})
