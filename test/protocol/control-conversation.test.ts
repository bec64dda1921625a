// The control conversation as a pure machine: both ends driven against each other
// without sockets (through the message codec, and once through two Noise channels),
// the transition table checked cell by cell, and every out-of-order or malformed
// input answered with its typed PROTO_ERR_* and its secrets wiped.
import t from 'tap'

import { NoiseChannel } from '../../protocol/src/channel.js'
import {
  AGENT_MESSAGE_TYPES,
  CONVERSATION_ERROR_CODES,
  CONVERSATION_TRANSITIONS,
  CP_MESSAGE_TYPES,
  advanceConversation,
  wipeMessage,
  type ConversationPhase,
  type PhaseName,
} from '../../protocol/src/control-conversation.js'
import { AgentConversation, type AgentEffect } from '../../protocol/src/control-conversation-agent.js'
import { CONTROL_FEATURES, agreeFeatures, encodeFeatureOffer, knownFeatures, readFeatureOffer, type ControlFeature } from '../../protocol/src/control-features.js'
import { CpConversation, DEFAULT_MAX_BACKLOG, type HelloResult } from '../../protocol/src/control-conversation-cp.js'
import { nodeSuite as suite } from '../../protocol/src/crypto/node-provider.js'
import { PROTO_ERRORS } from '../../protocol/src/errors.js'
import { MESSAGE_TYPES, decodeMessage, encodeKmsBatchFrame, encodeKmsResponseFrames, encodeMessage, type Message, type MessageOf, type PairEntry } from '../../protocol/src/messages/index.js'
import { createXkInitiator, createXkResponder } from '../../protocol/src/noise/keymesh-handshakes.js'
import { PROTOCOL_VERSION } from '../../protocol/src/version.js'
import { codeOf } from '../kit/errors.js'

const SERVICE = 'orders'
const EMPTY = new Uint8Array(0)

const helloBytes = (o: Partial<MessageOf<'hello'>> = {}): Uint8Array =>
  encodeMessage({ type: 'hello', protocol: PROTOCOL_VERSION, service: SERVICE, agentVersion: '1.0.0', joinToken: 'a-join-token-of-sixteen', ...o })

function pair(fill = 7, pairId = 'billing:orders'): PairEntry {
  return {
    pairId,
    peerService: 'billing',
    mayInitiate: true,
    mayAccept: false,
    versions: [{ version: 1, key: new Uint8Array(32).fill(fill), state: 'current', notAfter: null }],
    peers: [],
  }
}

const welcome = (service = SERVICE): Message => ({ type: 'welcome', agentId: 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa', service, serverTime: 1 })
const usage = (seq: number): Message => ({ type: 'usage.batch', seq, events: [{ kind: 'conn.open', at: 1 }] })
const kmsRequest = (id: number): Message => ({ type: 'kms.request', id, op: 'encrypt', key: 'k', plaintext: new Uint8Array(4).fill(9) })
const kmsResponse = (id: number): MessageOf<'kms.response'> => ({ type: 'kms.response', id, ok: true, result: { plaintext: new Uint8Array(4).fill(5) } })
const kmsBatchResponse = (id: number): MessageOf<'kms.batch.response'> => ({
  type: 'kms.batch.response', id, last: true, items: [{ id: 1, ok: true, result: { plaintext: new Uint8Array(4).fill(5) } }],
})

/** The message as the other end decodes it: through the codec, so the two ends share no object. */
const wire = (m: Message): Message => decodeMessage(encodeMessage(m))

const zeroed = (b: Uint8Array | undefined): boolean => b !== undefined && b.every((x) => x === 0)

/**
 * Both ends, opened: the control plane has read hello, the agent has written it.
 * With `features`, the hello names them (the control plane offered every feature).
 */
function opened(o: { maxBacklog?: number; features?: ControlFeature[] } = {}): { agent: AgentConversation; cp: CpConversation } {
  const agent = new AgentConversation({ service: SERVICE })
  const cp = new CpConversation({ ...(o.maxBacklog !== undefined ? { maxBacklog: o.maxBacklog } : {}) })
  const r = cp.opened([new Uint8Array(0), helloBytes(o.features ? { features: o.features } : {})])
  if (r.kind !== 'hello') throw new Error('hello refused')
  agent.opened(o.features)
  return { agent, cp }
}

/** The control plane sends `m` (its end checks the order) and the agent receives it. */
function say(ends: { agent: AgentConversation; cp: CpConversation }, m: Message): { effect: AgentEffect; released: Message[] } {
  const released = ends.cp.send(m)
  return { effect: ends.agent.receive(wire(m)), released }
}

const violation = (e: AgentEffect | { kind: string; error?: { code: string } }): string => (e.kind === 'violation' && 'error' in e && e.error ? e.error.code : `no violation (${e.kind})`)

t.test('both ends walk a whole conversation and agree at every step', async (t) => {
  const ends = opened()
  t.equal(ends.cp.phase.name, 'admitting')
  t.equal(ends.agent.phase.name, 'admitting')
  t.equal(ends.agent.mayCarry('usage.batch'), false, 'the agent says nothing before its key set')

  t.same(ends.cp.receive(wire(usage(1))), { kind: 'none' }, 'an early batch is held')
  t.same(ends.cp.receive(wire(kmsRequest(1))), { kind: 'none' })

  t.match(say(ends, welcome()), { effect: { kind: 'welcome', welcome: { service: SERVICE } }, released: [] })
  t.same(ends.cp.receive(wire(usage(2))), { kind: 'none' }, 'still held while the first key set is under way')
  t.same(say(ends, { type: 'keyset.begin', generation: 3, pairCount: 2 }).effect, { kind: 'none' })
  t.same(ends.agent.phase, { name: 'keyset', generation: 3, pairCount: 2, pairs: 0 })
  t.same(say(ends, { type: 'keyset.pair', pair: pair(1, 'billing:orders') }).effect, { kind: 'none' })
  t.same(say(ends, { type: 'keyset.pair', pair: pair(2, 'billing:web') }).effect, { kind: 'none' })
  t.same(ends.cp.phase, ends.agent.phase, 'both ends count the same pairs')
  const end = say(ends, { type: 'keyset.end', generation: 3 })
  t.equal(end.effect.kind, 'keyset')
  t.same(end.effect.kind === 'keyset' && end.effect.pairs.map((p) => [p.pairId, p.versions[0]?.key[0]]), [['billing:orders', 1], ['billing:web', 2]], 'the whole set, in order, keys intact')
  t.same(end.released.map((m) => m.type), ['usage.batch', 'kms.request', 'usage.batch'], 'keyset.end releases what was held, in order')
  t.equal(ends.agent.synced, true)
  t.equal(ends.agent.mayCarry('kms.batch'), true)

  t.match(ends.cp.receive(wire(usage(3))), { kind: 'deliver', message: { type: 'usage.batch', seq: 3 } }, 'delivered at once now')
  t.match(say(ends, { type: 'pair.update', pair: pair(4) }).effect, { kind: 'update', pair: { pairId: 'billing:orders' } })
  t.same(say(ends, { type: 'pair.remove', pairId: 'billing:web' }).effect, { kind: 'remove', pairId: 'billing:web' })
  t.same(say(ends, { type: 'usage.ack', seq: 3 }).effect, { kind: 'usage-ack', seq: 3 })
  t.match(say(ends, kmsResponse(1)).effect, { kind: 'kms-response', message: { id: 1 } })
  t.match(say(ends, kmsBatchResponse(2)).effect, { kind: 'kms-batch-response', message: { id: 2, last: true } })
  t.same(ends.cp.phase, { name: 'synced' })

  t.same(say(ends, { type: 'error', code: 'CP_ERR_AGENT_REVOKED', message: 'revoked' }).effect, { kind: 'refused', code: 'CP_ERR_AGENT_REVOKED', message: 'revoked' })
  t.same(ends.agent.phase, { name: 'ended', synced: true })
  t.same(ends.cp.phase, { name: 'ended', synced: true })
  t.equal(ends.agent.hadKeySet, true, 'the end remembers that the key set had come')
  t.equal(ends.cp.hadKeySet, true)
  t.equal(ends.agent.mayCarry('usage.batch'), false)
  t.same(ends.agent.receive(wire(usage(4))), { kind: 'none' }, 'nothing after the end')
})

/**
 * Both ends over two Noise channels (XK), pumped by hand. With `offer`, the control
 * plane writes its feature offer in message 2 (else nothing, as one that predates
 * features); the agent answers it as agent/src/control/session.ts does, naming
 * `agentFeatures` in hello only when an offer came.
 */
function overNoise(o: { offer: boolean; agentFeatures: readonly ControlFeature[]; cpFeatures?: readonly ControlFeature[] }) {
  const identity = suite.x25519Generate()
  const agent = new AgentConversation({ service: SERVICE })
  const cp = new CpConversation(o.cpFeatures === undefined ? {} : { features: o.cpFeatures })
  const toCp: Uint8Array[] = []
  const toAgent: Uint8Array[] = []
  const effects: AgentEffect[] = []
  const delivered: string[] = []
  const seen: { opened?: HelloResult; wiped?: boolean; hello?: MessageOf<'hello'> } = {}
  let agentAgreed: ControlFeature[] = []
  const initiator: NoiseChannel = new NoiseChannel({
    handshake: createXkInitiator({ suite, staticKey: suite.x25519Generate(), controlPlaneKey: identity.publicKey }),
    transport: { send: (b) => toCp.push(b), close: () => {} },
    handler: { onHandshake: () => agent.opened(agentAgreed), onMessage: (m) => effects.push(agent.receive(m)) },
    kmsFrames: () => agent.speaks('kms.frame'),
    payload: (i, read) => {
      if (i !== 2) return EMPTY
      const offered = readFeatureOffer(read[0])
      agentAgreed = offered === undefined ? [] : agreeFeatures(o.agentFeatures, offered)
      const bytes = helloBytes(offered === undefined ? {} : { features: [...o.agentFeatures] })
      seen.hello = decodeMessage(bytes) as MessageOf<'hello'>
      return bytes
    },
  })
  const responder: NoiseChannel = new NoiseChannel({
    handshake: createXkResponder({ suite, staticKey: identity }),
    transport: { send: (b) => toAgent.push(b), close: () => {} },
    handler: {
      onHandshake: (r) => {
        seen.opened = cp.opened(r.payloads)
        seen.wiped = r.payloads.every((p) => p.every((x) => x === 0))
      },
      onMessage: (m) => {
        const e = cp.receive(m)
        delivered.push(e.kind === 'deliver' ? e.message.type : e.kind === 'violation' ? e.error.code : 'none')
      },
    },
    payload: (i) => (i === 1 && o.offer ? cp.offer() : EMPTY),
    kmsFrames: () => cp.speaks('kms.frame'),
  })
  const pump = (): void => {
    while (toCp.length > 0 || toAgent.length > 0) {
      for (const b of toCp.splice(0)) responder.receive(b)
      for (const b of toAgent.splice(0)) initiator.receive(b)
    }
  }
  /** The control plane sends `m` (its end checks the order first). */
  const send = (m: Message): void => {
    for (const held of cp.send(m)) delivered.push(held.type)
    responder.send(m)
  }
  initiator.start()
  pump()
  return { agent, cp, initiator, responder, effects, delivered, seen, pump, send }
}

t.test('the ends run over two Noise channels, hello in XK message 3', async (t) => {
  const ends = overNoise({ offer: false, agentFeatures: CONTROL_FEATURES })
  t.match(ends.seen.opened, { kind: 'hello', hello: { service: SERVICE, joinToken: 'a-join-token-of-sixteen' } })
  t.equal(ends.seen.wiped, true, 'the payloads (join token) are wiped once read')
  ends.initiator.send(usage(1))
  ends.pump()
  ends.send(welcome())
  ends.send({ type: 'keyset.begin', generation: 1, pairCount: 1 })
  ends.send({ type: 'keyset.pair', pair: pair() })
  ends.send({ type: 'keyset.end', generation: 1 })
  ends.pump()
  t.same(ends.effects.map((e) => e.kind), ['welcome', 'none', 'none', 'keyset'])
  t.same(ends.delivered, ['none', 'usage.batch'], 'the early batch is held, then handled once the key set is out')
  t.equal(ends.agent.synced, true)
})

t.test('features: the offer in XK message 2, hello naming what the agent speaks, each end using only what both named', async (t) => {
  const run = (o: { offer: boolean; agentFeatures: readonly ControlFeature[] }) => {
    const ends = overNoise(o)
    for (const m of [welcome(), { type: 'keyset.begin', generation: 1, pairCount: 0 }, { type: 'keyset.end', generation: 1 }] as Message[]) ends.send(m)
    ends.pump()
    ends.delivered.length = 0
    return { ...ends, hello: ends.seen.hello }
  }
  const both = run({ offer: true, agentFeatures: CONTROL_FEATURES })
  t.same(both.hello?.features, [...CONTROL_FEATURES], 'offered: hello names what the agent speaks')
  t.ok(both.cp.speaks('peer.up') && both.cp.speaks('keyset.request') && both.agent.speaks('peer.up'), 'both ends agree to both')
  t.equal(both.agent.mayCarry('keyset.request'), true)
  const up: Message = { type: 'peer.up', pairId: 'billing:orders', agentId: 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbq' }
  both.send(up)
  both.initiator.send({ type: 'keyset.request', pairId: 'billing:orders' })
  both.pump()
  t.same(both.effects.at(-1), { kind: 'peer-up', pairId: 'billing:orders', agentId: 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbq' })
  t.same(both.delivered, ['keyset.request'])

  const oldCp = run({ offer: false, agentFeatures: CONTROL_FEATURES })
  t.equal(oldCp.hello?.features, undefined, 'no offer (an older control plane): hello carries no features field it would refuse')
  t.equal(oldCp.agent.mayCarry('keyset.request'), false, 'and the agent never asks')
  t.equal(oldCp.agent.mayCarry('usage.batch'), true)
  t.equal(violation(oldCp.agent.receive(wire(up))), 'PROTO_ERR_MESSAGE_ORDER', 'a peer.up it did not agree to is out of order')

  const oldAgent = run({ offer: true, agentFeatures: [] })
  t.same(oldAgent.hello?.features, [], 'an agent that speaks none names none')
  t.equal(oldAgent.cp.speaks('peer.up'), false)
  t.equal(codeOf(() => oldAgent.cp.send(up)), 'PROTO_ERR_MESSAGE_ORDER', 'the control plane cannot send peer.up to it: its own bug, typed')
  const someAgent = run({ offer: true, agentFeatures: ['peer.up'] })
  t.ok(someAgent.cp.speaks('peer.up') && !someAgent.cp.speaks('keyset.request'), 'only what both named')
  someAgent.cp.receive(wire({ type: 'keyset.request', pairId: 'billing:orders' }))
  t.equal(someAgent.cp.phase.name, 'ended', 'a keyset.request it did not agree to is a violation')
})

t.test('kms.frame: binary KMS frames only where both ends named it; an older end on either side keeps JSON', async (t) => {
  const synced = (o: Parameters<typeof overNoise>[0]) => {
    const ends = overNoise(o)
    for (const m of [welcome(), { type: 'keyset.begin', generation: 1, pairCount: 0 }, { type: 'keyset.end', generation: 1 }] as Message[]) ends.send(m)
    ends.pump()
    ends.delivered.length = 0
    return ends
  }
  const frame = (): Uint8Array => encodeKmsBatchFrame({ type: 'kms.batch', id: 1, items: [{ id: 2, op: 'encrypt', key: 'k', plaintext: new Uint8Array(3) }] }) as Uint8Array
  const both = synced({ offer: true, agentFeatures: CONTROL_FEATURES })
  t.ok(both.cp.speaks('kms.frame') && both.agent.speaks('kms.frame'), 'both name it: agreed')
  both.initiator.sendEncoded(frame(), true)
  both.pump()
  t.same(both.delivered, ['kms.batch'], 'a frame is delivered as the kms.batch it holds')
  const reply = encodeKmsResponseFrames(1, [{ id: 2, ok: true, result: { ciphertext: 'km1:k:1:AAAA', key: 'k', version: 1 } }])[0] as Uint8Array
  both.cp.send({ type: 'kms.batch.response' })
  both.responder.sendEncoded(reply, true)
  both.pump()
  t.match(both.effects.at(-1), { kind: 'kms-batch-response', message: { type: 'kms.batch.response', id: 1, last: true, items: [{ id: 2, ok: true }] } })

  for (const [what, o] of [
    ['an older control plane (offers keyset.request and peer.up only)', { offer: true, agentFeatures: CONTROL_FEATURES, cpFeatures: ['keyset.request', 'peer.up'] as ControlFeature[] }],
    ['an older agent (names keyset.request and peer.up only)', { offer: true, agentFeatures: ['keyset.request', 'peer.up'] as ControlFeature[] }],
    ['a control plane from before features', { offer: false, agentFeatures: CONTROL_FEATURES }],
  ] as const) {
    const ends = synced(o)
    t.notOk(ends.cp.speaks('kms.frame') || ends.agent.speaks('kms.frame'), `${what}: not agreed`)
    ends.initiator.sendEncoded(frame(), true)
    ends.pump()
    t.equal(ends.responder.state, 'failed', `${what}: a frame is not a message there`)
  }
})

t.test('the feature offer: unknown names are ignored, anything but a features message is refused', async (t) => {
  t.equal(readFeatureOffer(undefined), undefined)
  t.equal(readFeatureOffer(EMPTY), undefined, 'an empty payload is no offer')
  t.same(readFeatureOffer(encodeMessage({ type: 'features', features: ['later.thing', 'peer.up', 'peer.up'] })), ['peer.up'])
  t.same(readFeatureOffer(encodeFeatureOffer([...CONTROL_FEATURES])), [...CONTROL_FEATURES])
  const pairMessage = encodeMessage({ type: 'keyset.pair', pair: pair(9) })
  t.equal(codeOf(() => readFeatureOffer(pairMessage)), 'PROTO_ERR_MESSAGE_ORDER')
  t.equal(codeOf(() => readFeatureOffer(new Uint8Array([1, 2, 3]))), 'PROTO_ERR_MESSAGE_MALFORMED')
  t.same(readFeatureOffer(encodeFeatureOffer([])), [], 'an offer of none is an offer (hello then names what the agent speaks)')
  t.same(knownFeatures(['peer.up', 'x', 'keyset.request']), ['keyset.request', 'peer.up'], 'in CONTROL_FEATURES order')
  t.same(agreeFeatures(['peer.up', 'keyset.request'], ['keyset.request', 'zzz']), ['keyset.request'])
  t.same(readFeatureOffer(new CpConversation({ features: ['peer.up'] }).offer()), ['peer.up'], 'a control plane offers what it is told to')
})

t.test('the table: every control-plane message is allowed exactly where a cell says so', async (t) => {
  const phases: Record<PhaseName, ConversationPhase> = {
    handshake: { name: 'handshake' },
    admitting: { name: 'admitting' },
    welcomed: { name: 'welcomed' },
    keyset: { name: 'keyset', generation: 1, pairCount: 1, pairs: 0 },
    synced: { name: 'synced' },
    ended: { name: 'ended', synced: false },
  }
  const heads = { 'keyset.begin': { generation: 1, pairCount: 0 }, 'keyset.end': { generation: 1 } } as Record<string, object>
  for (const [name, phase] of Object.entries(phases)) {
    const row: Partial<Record<string, string>> = CONVERSATION_TRANSITIONS[name as PhaseName]
    for (const type of CP_MESSAGE_TYPES) {
      const head = { type, ...(heads[type] ?? {}) }
      if (type === 'keyset.end' && name === 'keyset') continue // needs its pair first: below
      const code = codeOf(() => advanceConversation(phase, head))
      const to = row[type]
      if (to === undefined) t.equal(code, 'PROTO_ERR_MESSAGE_ORDER', `${type} in ${name} is out of order`)
      else t.equal(advanceConversation(phase, head).name, to, `${type} in ${name} leads to ${to}`)
    }
    for (const type of ['hello', ...AGENT_MESSAGE_TYPES.filter((x) => x !== 'error')] as const) {
      t.equal(codeOf(() => advanceConversation(phase, { type })), 'PROTO_ERR_MESSAGE_DIRECTION', `${type} never comes from the control plane`)
    }
  }
  const inSet = advanceConversation(phases.keyset, { type: 'keyset.pair' })
  t.same(advanceConversation(inSet, { type: 'keyset.end', generation: 1 }), { name: 'synced' })
  t.same(advanceConversation(phases.synced, { type: 'error' }), { name: 'ended', synced: true })
  t.equal(advanceConversation(phases.synced, { type: 'pair.remove' }), phases.synced, 'a push keeps the phase as it is')
  t.equal(codeOf(() => advanceConversation(phases.welcomed, { type: 'keyset.begin' })), 'PROTO_ERR_INVALID_ARGUMENT', 'keyset.begin without its numbers is a caller bug')
  t.same(new Set([...CP_MESSAGE_TYPES, ...AGENT_MESSAGE_TYPES, 'hello', 'features']), new Set(MESSAGE_TYPES), 'every message type has a direction (hello and features travel in the handshake)')
  for (const code of CONVERSATION_ERROR_CODES) t.ok(code in PROTO_ERRORS, `${code} is in the table`)
})

t.test('the agent refuses what comes out of order, with typed errors, and wipes what it drops', async (t) => {
  const fresh = (): AgentConversation => {
    const a = new AgentConversation({ service: SERVICE })
    a.opened()
    return a
  }
  const welcomed = (): AgentConversation => {
    const a = fresh()
    a.receive(welcome())
    return a
  }
  const early = new AgentConversation({ service: SERVICE })
  t.equal(violation(early.receive(welcome())), 'PROTO_ERR_MESSAGE_ORDER', 'nothing before the handshake is over')

  t.equal(violation(fresh().receive({ type: 'keyset.begin', generation: 1, pairCount: 0 })), 'PROTO_ERR_MESSAGE_ORDER', 'a key set before welcome')
  t.equal(violation(fresh().receive(welcome('billing'))), 'PROTO_ERR_WELCOME_SERVICE', 'a welcome for another service')
  t.equal(violation(welcomed().receive(welcome())), 'PROTO_ERR_MESSAGE_ORDER', 'a second welcome')
  t.equal(violation(welcomed().receive(usage(1))), 'PROTO_ERR_MESSAGE_DIRECTION', 'a message agents never get')

  const push = { type: 'pair.update', pair: pair() } as const
  const a = welcomed()
  t.equal(violation(a.receive(push)), 'PROTO_ERR_MESSAGE_ORDER', 'a push before the first key set')
  t.ok(zeroed(push.pair.versions[0]?.key), 'its key is wiped')
  t.same(a.phase, { name: 'ended', synced: false })
  t.same(a.receive({ type: 'keyset.begin', generation: 1, pairCount: 0 }), { kind: 'none' }, 'after a violation, nothing more')

  const response = kmsResponse(1)
  t.equal(violation(welcomed().receive(response)), 'PROTO_ERR_MESSAGE_ORDER', 'a KMS answer before the first key set')
  t.ok(zeroed(response.result?.plaintext), 'its plaintext is wiped')
  const batch = kmsBatchResponse(1)
  t.equal(violation(welcomed().receive(batch)), 'PROTO_ERR_MESSAGE_ORDER')
  t.ok(zeroed(batch.items[0]?.result?.plaintext))

  const short = welcomed()
  const first = pair(3)
  short.receive({ type: 'keyset.begin', generation: 1, pairCount: 2 })
  short.receive({ type: 'keyset.pair', pair: first })
  t.equal(violation(short.receive({ type: 'keyset.end', generation: 1 })), 'PROTO_ERR_KEYSET', 'a key set that ends short')
  t.ok(zeroed(first.versions[0]?.key), 'the half-received set is wiped')

  const other = welcomed()
  other.receive({ type: 'keyset.begin', generation: 1, pairCount: 0 })
  t.equal(violation(other.receive({ type: 'keyset.end', generation: 2 })), 'PROTO_ERR_KEYSET', 'another generation')

  const over = welcomed()
  over.receive({ type: 'keyset.begin', generation: 1, pairCount: 0 })
  const extra = pair()
  t.equal(violation(over.receive({ type: 'keyset.pair', pair: extra })), 'PROTO_ERR_KEYSET', 'more pairs than announced')
  t.ok(zeroed(extra.versions[0]?.key))

  const again = welcomed()
  again.receive({ type: 'keyset.begin', generation: 1, pairCount: 0 })
  t.equal(again.receive({ type: 'keyset.end', generation: 1 }).kind, 'keyset')
  t.equal(violation(again.receive({ type: 'keyset.begin', generation: 2, pairCount: 0 })), 'PROTO_ERR_MESSAGE_ORDER', 'a second key set')

  const closing = welcomed()
  const held = pair(8)
  closing.receive({ type: 'keyset.begin', generation: 1, pairCount: 2 })
  closing.receive({ type: 'keyset.pair', pair: held })
  closing.end()
  closing.end()
  t.ok(zeroed(held.versions[0]?.key), 'end() wipes a half-received set')
  t.equal(closing.hadKeySet, false)

  const refused = welcomed()
  const partial = pair(6)
  refused.receive({ type: 'keyset.begin', generation: 1, pairCount: 2 })
  refused.receive({ type: 'keyset.pair', pair: partial })
  t.same(refused.receive({ type: 'error', code: 'CP_ERR_AGENT_REVOKED', message: 'revoked' }), { kind: 'refused', code: 'CP_ERR_AGENT_REVOKED', message: 'revoked' }, 'a refusal may come at any point')
  t.ok(zeroed(partial.versions[0]?.key), 'and wipes the set under way')
  t.same(refused.receive({ type: 'error', code: 'CP_ERR_INTERNAL', message: 'x' }), { kind: 'none' }, 'one refusal only')

  const opening = fresh()
  opening.opened()
  t.same(opening.phase, { name: 'admitting' }, 'opened() twice changes nothing')
})

t.test('the control plane reads hello from message 3 only, and refuses any other first word', async (t) => {
  const cp = (): CpConversation => new CpConversation()
  const result = (payloads: Uint8Array[]): string => {
    const r = cp().opened(payloads)
    return r.kind === 'violation' ? r.error.code : r.kind
  }
  t.equal(result([EMPTY, helloBytes()]), 'hello')
  t.equal(result([new Uint8Array(1), helloBytes()]), 'PROTO_ERR_MESSAGE_ORDER', 'message 1 must carry nothing')
  t.equal(result([EMPTY]), 'PROTO_ERR_MESSAGE_ORDER', 'message 3 must carry hello')
  t.equal(result([EMPTY, helloBytes(), EMPTY]), 'PROTO_ERR_MESSAGE_ORDER')
  t.equal(result([EMPTY, new TextEncoder().encode('{"type":')]), 'PROTO_ERR_MESSAGE_MALFORMED', 'a hello that does not decode keeps the decoder\'s code')
  const otherVersion = new TextEncoder().encode(JSON.stringify({ type: 'hello', protocol: 'keymesh/9', service: SERVICE, agentVersion: '1' }))
  t.equal(result([EMPTY, otherVersion]), 'PROTO_ERR_VERSION')
  const notHello = encodeMessage(kmsRequest(1))
  const decodedFirst = cp()
  t.match(decodedFirst.opened([EMPTY, notHello]), { kind: 'violation', error: { code: 'PROTO_ERR_MESSAGE_ORDER', message: /expected hello, got kms.request/ } })
  t.same(decodedFirst.phase, { name: 'ended', synced: false })
  t.ok(zeroed(notHello), 'the payload is wiped whatever it held')

  const twice = cp()
  twice.opened([EMPTY, helloBytes()])
  t.match(twice.opened([EMPTY, helloBytes()]), { kind: 'violation', error: { code: 'PROTO_ERR_MESSAGE_ORDER' } }, 'the handshake opens once')
})

t.test('the control plane refuses what an agent never sends and bounds what it holds', async (t) => {
  const before = new CpConversation()
  t.equal(violation(before.receive(usage(1))), 'PROTO_ERR_MESSAGE_ORDER', 'nothing before the handshake is over')

  t.equal(violation(opened().cp.receive(wire({ type: 'hello', protocol: PROTOCOL_VERSION, service: SERVICE, agentVersion: '1' }))), 'PROTO_ERR_MESSAGE_ORDER', 'hello in a record')
  t.equal(violation(opened().cp.receive(welcome())), 'PROTO_ERR_MESSAGE_DIRECTION', 'a control-plane message from the agent')
  t.equal(violation(opened().cp.receive(wire({ type: 'keyset.end', generation: 1 }))), 'PROTO_ERR_MESSAGE_DIRECTION')

  t.equal(DEFAULT_MAX_BACKLOG, 16)
  const flood = opened()
  for (let seq = 1; seq <= DEFAULT_MAX_BACKLOG; seq++) t.same(flood.cp.receive(usage(seq)), { kind: 'none' })
  t.equal(violation(flood.cp.receive(usage(17))), 'PROTO_ERR_MESSAGE_BACKLOG', 'the 17th early message is one too many')
  t.same(flood.cp.receive(usage(18)), { kind: 'none' }, 'dropped after the violation')

  const small = opened({ maxBacklog: 1 })
  const held = kmsRequest(1) as MessageOf<'kms.request'>
  small.cp.receive(held)
  const batch: Message = { type: 'kms.batch', id: 2, items: [{ id: 3, op: 'encrypt', key: 'k', plaintext: new Uint8Array(2).fill(4) }] }
  t.equal(violation(small.cp.receive(batch)), 'PROTO_ERR_MESSAGE_BACKLOG')
  t.ok(zeroed(held.plaintext), 'held plaintext is wiped when the conversation ends')
  t.ok(zeroed(batch.items[0]?.plaintext), 'so is the refused message\'s')

  const none = opened({ maxBacklog: 0 })
  t.equal(violation(none.cp.receive(usage(1))), 'PROTO_ERR_MESSAGE_BACKLOG', 'a backlog of 0 takes nothing early')
  t.equal(codeOf(() => new CpConversation({ maxBacklog: -1 })), 'PROTO_ERR_INVALID_ARGUMENT')
  t.equal(codeOf(() => new CpConversation({ maxBacklog: 1.5 })), 'PROTO_ERR_INVALID_ARGUMENT')

  const ended = opened()
  ended.cp.end()
  const late = kmsRequest(5) as MessageOf<'kms.request'>
  t.same(ended.cp.receive(late), { kind: 'none' })
  t.ok(zeroed(late.plaintext), 'a message after the end is dropped and wiped')
})

t.test('the control plane cannot send out of order: its own bug is a typed error before any byte goes', async (t) => {
  const { cp } = opened()
  t.equal(codeOf(() => cp.send({ type: 'keyset.begin', generation: 1, pairCount: 0 })), 'PROTO_ERR_MESSAGE_ORDER', 'no key set before welcome')
  cp.send(welcome())
  cp.send({ type: 'keyset.begin', generation: 1, pairCount: 1 })
  t.equal(codeOf(() => cp.send({ type: 'pair.update' })), 'PROTO_ERR_MESSAGE_ORDER', 'no push while the first set is under way')
  t.equal(codeOf(() => cp.send({ type: 'kms.response' })), 'PROTO_ERR_MESSAGE_ORDER', 'no KMS answer before the first set is out')
  t.equal(codeOf(() => cp.send({ type: 'keyset.end', generation: 1 })), 'PROTO_ERR_KEYSET', 'not before its pairs')
  cp.send({ type: 'keyset.pair' })
  t.equal(codeOf(() => cp.send({ type: 'keyset.pair' })), 'PROTO_ERR_KEYSET', 'not more pairs than announced')
  t.same(cp.send({ type: 'keyset.end', generation: 1 }), [])
  t.equal(codeOf(() => cp.send({ type: 'usage.batch' })), 'PROTO_ERR_MESSAGE_DIRECTION')
  t.same(cp.send({ type: 'pair.update' }), [])

  const refusing = opened()
  t.equal(violation(refusing.cp.receive(welcome())), 'PROTO_ERR_MESSAGE_DIRECTION')
  t.same(refusing.cp.send({ type: 'error' }), [], 'a refusal may follow a violation, to say why')
  t.equal(codeOf(() => refusing.cp.send({ type: 'welcome' })), 'PROTO_ERR_MESSAGE_ORDER', 'and nothing else')
  t.equal(codeOf(() => new CpConversation().send({ type: 'error' })), 'PROTO_ERR_MESSAGE_ORDER', 'not even a refusal before the handshake is over')

  const admitting = opened()
  const held = kmsRequest(1) as MessageOf<'kms.request'>
  admitting.cp.receive(held)
  admitting.cp.send({ type: 'error' })
  t.ok(zeroed(held.plaintext), 'a refusal drops and wipes what was held')
})

// A differential check of the one-table claim: for random control-plane message
// sequences, the control plane's end refuses to send exactly what the agent's end
// would refuse to receive, with the same code.
t.test('for random sequences, what the control plane may send is what the agent accepts', async (t) => {
  let seed = 0x2545f491
  const rand = (n: number): number => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) % n
  }
  const pick = (): Message => {
    switch (rand(10)) {
      case 8: return { type: 'peer.up', pairId: 'billing:orders', agentId: 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbq' }
      case 0: return welcome()
      case 1: return { type: 'keyset.begin', generation: 1 + rand(2), pairCount: rand(3) }
      case 2: return { type: 'keyset.pair', pair: pair() }
      case 3: return { type: 'keyset.end', generation: 1 + rand(2) }
      case 4: return { type: 'pair.update', pair: pair() }
      case 5: return { type: 'pair.remove', pairId: 'billing:orders' }
      case 6: return { type: 'usage.ack', seq: 1 }
      case 7: return kmsResponse(1)
      default: return rand(4) === 0 ? { type: 'error', code: 'CP_ERR_INTERNAL', message: 'x' } : { type: 'keyset.pair', pair: pair() }
    }
  }
  let agreed = 0
  let refusals = 0
  for (let run = 0; run < 300; run++) {
    // Half the runs with peer.up agreed, half without (an older agent): either way both ends agree.
    const ends = opened(run % 2 === 0 ? { features: ['peer.up'] } : {})
    for (let step = 0; step < 12 && ends.cp.phase.name !== 'ended'; step++) {
      const m = pick()
      const sendCode = codeOf(() => ends.cp.send(m))
      const effect = ends.agent.receive(wire(m))
      const receiveCode = effect.kind === 'violation' ? effect.error.code : 'no error'
      if (receiveCode !== sendCode) {
        t.fail(`run ${run} step ${step}: ${m.type} — control plane ${sendCode}, agent ${receiveCode}`)
        return
      }
      agreed++
      if (sendCode !== 'no error') {
        refusals++
        break
      }
      t.same(ends.agent.phase, ends.cp.phase, 'the same phase on both ends')
    }
  }
  t.ok(refusals > 50 && agreed > refusals, `${agreed} steps agreed, ${refusals} refused on both ends`)
})

t.test('wipeMessage zeroes the secrets of every message that carries some, and leaves others alone', async (t) => {
  const update = { type: 'pair.update', pair: pair() } as const
  const request = kmsRequest(1) as MessageOf<'kms.request'>
  const batch: MessageOf<'kms.batch'> = { type: 'kms.batch', id: 1, items: [{ id: 2, op: 'encrypt', plaintext: new Uint8Array(2).fill(1) }] }
  const response = kmsResponse(1)
  const batchResponse = kmsBatchResponse(1)
  for (const m of [update, request, batch, response, batchResponse, welcome()]) wipeMessage(m)
  t.ok(zeroed(update.pair.versions[0]?.key))
  t.ok(zeroed(request.plaintext))
  t.ok(zeroed(batch.items[0]?.plaintext))
  t.ok(zeroed(response.result?.plaintext))
  t.ok(zeroed(batchResponse.items[0]?.result?.plaintext))
  wipeMessage({ type: 'kms.response', id: 1, ok: false, error: { code: 'CP_ERR_INTERNAL', message: 'x' } })
  t.pass('a message without secrets is left as it is')
})
