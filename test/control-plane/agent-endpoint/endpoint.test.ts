// The agent WebSocket endpoint: key set contents and pushes, usage batches,
// hostile input (garbage, oversized and text frames, plaintext clients, wrong
// pinned keys), the handshake timeout and pending cap, and that pair key bytes
// never reach a log or the audit log.
import t from 'tap'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { WebSocket } from 'ws'

import { createAgentEndpoint } from '../../../control-plane/src/agent-endpoint/endpoint.js'
import { CP_ERRORS } from '../../../control-plane/src/errors.js'
import { openMaterial } from '../../../control-plane/src/services/material.js'
import { PROTO_ERRORS } from '../../../protocol/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { FakeAgent, type FakeAgentOptions } from '../../kit/fake-agent.js'
import { SECOND } from '../../kit/fake-clock.js'
import { until } from '../../kit/wait.js'
import { createXkInitiator, parsePublicKey } from '../../../protocol/src/index.js'

/** A valid XK message 1 to this control plane, from a fresh key (the control plane answers message 2). */
const xkMessage1 = (h: TestControlPlane): Uint8Array =>
  createXkInitiator({ suite: nodeSuite, staticKey: nodeSuite.x25519Generate(), controlPlaneKey: parsePublicKey(h.identityPub) }).writeMessage()

const cpClose = (code: keyof typeof CP_ERRORS): number => CP_ERRORS[code].closeCode

function agent(h: TestControlPlane, o: Partial<FakeAgentOptions> & { service: string }): FakeAgent {
  const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, ...o })
  t.teardown(() => void a.close().catch(() => {}))
  return a
}

async function enrolled(h: TestControlPlane, service: string, endpoint?: string): Promise<FakeAgent> {
  const res = await h.api('POST', '/v1/join-tokens', { service })
  const a = agent(h, { service, joinToken: res.body.token, ...(endpoint ? { endpoint } : {}) })
  await a.welcome()
  return a
}

/** The clear bytes of every live pair key version, as base64 and hex, straight from the store. */
async function pairKeyTexts(h: TestControlPlane): Promise<string[]> {
  const versions = await h.cp.ctx.store.read((r) => r.listKeyVersions({}))
  return versions.filter((v) => v.sealedMaterial !== null).flatMap((v) => {
    const k = Buffer.from(openMaterial(h.cp.ctx, v))
    return [k.toString('base64'), k.toString('hex'), k.toString('base64url')]
  })
}

async function auditText(h: TestControlPlane): Promise<string> {
  const lines: string[] = []
  for await (const e of h.cp.ctx.audit.export(h.cp.ctx.store)) lines.push(JSON.stringify(e))
  return lines.join('\n')
}

t.test('the key set lists each pair with its directions, versions and peers, and pushes changes', async (t) => {
  const h = await startTestControlPlane(t)
  const orders = await enrolled(h, 'orders', 'ws://10.0.0.1:7000')
  const first = await orders.keyset()
  t.same(first.pairs, [])
  const billing = await enrolled(h, 'billing', 'ws://10.0.0.2:7000')
  await billing.keyset()
  const billingId = (await h.api('GET', '/v1/agents?service=billing')).body[0].id

  t.equal((await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })).status, 201)
  const up = (await orders.next('pair.update')).pair
  t.match(up, { pairId: 'billing:orders', peerService: 'billing', mayInitiate: true, mayAccept: false })
  t.match(up.versions, [{ version: 1, state: 'current', notAfter: null }])
  t.equal(up.versions[0]?.key.length, 32)
  t.match(up.peers, [{ agentId: billingId, endpoint: 'ws://10.0.0.2:7000', staticKey: /^x25519:/ }])
  const mirrored = (await billing.next('pair.update')).pair
  t.match(mirrored, { pairId: 'billing:orders', peerService: 'orders', mayInitiate: false, mayAccept: true })
  t.same(Buffer.from(mirrored.versions[0]?.key ?? []), Buffer.from(up.versions[0]?.key ?? []), 'both sides get the same key')
  const [stored] = await h.cp.ctx.store.read((r) => r.listKeyVersions({ keyName: 'billing:orders' }))
  t.same(Buffer.from(openMaterial(h.cp.ctx, stored as never)), Buffer.from(up.versions[0]?.key ?? []), 'the key is the stored material')

  t.equal((await h.api('POST', '/v1/pairs/orders/billing/rotate')).status, 200)
  const rotated = (await orders.next('pair.update')).pair
  t.match(rotated.versions, [{ version: 2, state: 'current' }, { version: 1, state: 'previous', notAfter: h.clock.now() + h.cp.ctx.settings.lifecycle.pairGraceMs }])
  await billing.next('pair.update', (m) => m.pair.versions[0]?.version === 2)

  // A reconnect gets the whole current set at once.
  const again = agent(h, { service: 'orders', staticKey: orders.staticKey })
  await again.welcome()
  const set = await again.keyset()
  t.equal(set.pairs.length, 1)
  t.same(set.pairs[0]?.versions.map((v) => v.version), [2, 1])

  const live = await pairKeyTexts(h)
  t.ok(live.length >= 6, 'two live versions, three spellings each')
  t.equal((await h.api('DELETE', '/v1/intentions/orders/billing?now=true')).status, 200)
  t.same(await again.next('pair.remove'), { type: 'pair.remove', pairId: 'billing:orders' })
  t.same(await billing.next('pair.remove'), { type: 'pair.remove', pairId: 'billing:orders' })

  const logs = h.logs.join('\n')
  const auditLog = await auditText(h)
  const sent = [up, rotated].flatMap((p) => p.versions.map((v) => Buffer.from(v.key)))
  const texts = [...live, ...sent.flatMap((k) => [k.toString('base64'), k.toString('hex'), k.toString('base64url')])]
  t.ok(logs.length > 0 && auditLog.length > 0)
  t.notOk(texts.some((text) => logs.includes(text)), 'pair key bytes are not in the logs')
  t.notOk(texts.some((text) => auditLog.includes(text)), 'pair key bytes are not in the audit log')
})

t.test('revoking an agent rotates its pairs with no grace and tells the peers', async (t) => {
  const h = await startTestControlPlane(t)
  const orders = await enrolled(h, 'orders')
  await orders.keyset()
  const billing = await enrolled(h, 'billing')
  await billing.keyset()
  await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })
  await billing.next('pair.update')
  const ordersId = orders.agentId
  const res = await h.api('POST', `/v1/agents/${ordersId}/revoke`)
  t.same(res.body.rotatedPairs, ['billing:orders'])
  t.equal((await orders.closed).code, cpClose('CP_ERR_AGENT_REVOKED'))
  const pushed = (await billing.next('pair.update', (m) => m.pair.versions[0]?.version === 2)).pair
  t.same(pushed.peers, [], 'the revoked agent is gone from the peer list')
  t.same(pushed.versions.map((v) => v.version), [2], 'no previous version survives a revocation')
})

t.test('a usage batch is recorded once when sent twice', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await enrolled(h, 'orders')
  await a.keyset()
  const events = [
    { kind: 'conn.open' as const, at: h.clock.now(), pairId: 'billing:orders', peerService: 'billing', keyVersion: 3, bytesIn: 10, bytesOut: 20 },
    { kind: 'handshake.fail' as const, at: h.clock.now() + 1, pairId: 'billing:orders', reason: 'PROTO_ERR_DECRYPT' },
  ]
  a.sendUsage(1, events)
  t.same(await a.next('usage.ack'), { type: 'usage.ack', seq: 1 })
  a.sendUsage(1, events)
  t.same(await a.next('usage.ack'), { type: 'usage.ack', seq: 1 }, 'a duplicate is acked again')
  a.sendUsage(2, events.slice(0, 1))
  t.same(await a.next('usage.ack'), { type: 'usage.ack', seq: 2 })
  const entries = await h.cp.ctx.store.read((r) => r.listAuditEntries({ action: 'agent.usage', limit: 10 }))
  t.equal(entries.length, 2, 'one audit entry per batch')
  t.match(JSON.parse(entries[0]?.detailsJson ?? '{}'), {
    seq: 1, events: 2, bytesIn: 10, bytesOut: 20, keyVersions: ['billing:orders@3'],
    kinds: { 'conn.open': 1, 'handshake.fail': 1 }, reasons: { PROTO_ERR_DECRYPT: 1 },
  })
  t.equal(entries[0]?.reason, 'usage batch 1: 1 conn.open, 1 handshake.fail; 10 B in, 20 B out; reasons: PROTO_ERR_DECRYPT', 'audit tail shows the traffic')
  t.equal(await h.cp.ctx.store.read((r) => r.lastUsageBatchSeq((entries[0]?.actor ?? '').slice('agent:'.length))), 2)
})

t.test('a wrong pinned control-plane key fails the handshake', async (t) => {
  const h = await startTestControlPlane(t)
  const a = agent(h, { service: 'orders', cpKey: nodeSuite.x25519Generate().publicKey })
  t.equal((await a.closed).code, PROTO_ERRORS.PROTO_ERR_DECRYPT.closeCode)
  const entries = await h.cp.ctx.store.read((r) => r.listAuditEntries({ action: 'agent.handshake', limit: 10 }))
  t.match(entries, [{ outcome: 'error', reason: /PROTO_ERR_DECRYPT/, actor: /^anonymous/ }])
})

/** A raw WebSocket client on the agent path. */
async function raw(h: TestControlPlane, path = '/v1/agent'): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(h.cp.url.replace('http', 'ws') + path)
  ws.on('error', () => {})
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
  })
  return { ws, closed }
}

t.test('hostile input gets typed close codes and the endpoint stays up', async (t) => {
  const h = await startTestControlPlane(t)
  const garbage = await raw(h)
  garbage.ws.send(Buffer.alloc(48, 7))
  t.equal(await garbage.closed, PROTO_ERRORS.PROTO_ERR_DECRYPT.closeCode, 'garbage bytes of the right length fail to decrypt')

  const short = await raw(h)
  short.ws.send(Buffer.alloc(3))
  t.equal(await short.closed, PROTO_ERRORS.PROTO_ERR_HANDSHAKE_MESSAGE.closeCode, 'a short message is malformed')

  const text = await raw(h)
  text.ws.send('hello')
  t.equal(await text.closed, cpClose('CP_ERR_AGENT_FRAME'), 'text frames are refused')

  const plaintext = await raw(h)
  plaintext.ws.send(Buffer.from(JSON.stringify({ type: 'hello', protocol: 'keymesh/1', service: 'orders', agentVersion: '1' })))
  t.equal(await plaintext.closed, PROTO_ERRORS.PROTO_ERR_DECRYPT.closeCode, 'a plaintext client fails the handshake')

  const big = await raw(h)
  big.ws.send(Buffer.alloc(65_536))
  t.equal(await big.closed, 1009, 'a frame over 65,535 bytes is closed by ws with Message Too Big')

  await t.rejects(raw(h, '/v1/other'), /HTTP 404/, 'other paths are not WebSocket endpoints')

  const fine = await enrolled(h, 'orders')
  await fine.keyset()
  t.pass('a real agent still enrols afterwards')
  const entries = await h.cp.ctx.store.read((r) => r.listAuditEntries({ action: 'agent.handshake', limit: 20 }))
  const reasons = entries.map((e) => e.reason)
  for (const code of ['PROTO_ERR_DECRYPT', 'PROTO_ERR_HANDSHAKE_MESSAGE', 'CP_ERR_AGENT_FRAME']) {
    t.equal(reasons.filter((r) => r.includes(code)).length, 1, `${code} is audited once, with its reason`)
  }
  // The second decryption failure from this source is counted, not written: the
  // window's summary says how many more there were when it ends.
  h.clock.advance(61 * SECOND)
  const summary = await until(async () => {
    const all = await h.cp.ctx.store.read((r) => r.listAuditEntries({ action: 'agent.handshake', limit: 20 }))
    return all.find((e) => JSON.parse(e.detailsJson)?.count !== undefined && e.reason.includes('PROTO_ERR_DECRYPT'))
  }, 'the summary of the window')
  t.match(JSON.parse(summary.detailsJson), { count: 1 })
})

t.test('an agent that misbehaves after welcome is closed with a typed code', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await enrolled(h, 'orders')
  await a.keyset()
  a.channel.send({ type: 'welcome', agentId: a.agentId as string, service: 'orders', serverTime: 0 })
  t.equal((await a.closed).code, cpClose('CP_ERR_AGENT_MESSAGE'))
})

t.test('a connection that sends nothing is closed after the hello timeout, a handshake that does not finish after the handshake timeout', async (t) => {
  const h = await startTestControlPlane(t)
  const idle = await raw(h)
  const started = await raw(h)
  started.ws.send(xkMessage1(h))
  await once(started.ws, 'message')
  h.clock.advance(2 * SECOND - 1)
  t.equal(idle.ws.readyState, WebSocket.OPEN, 'still open just before the hello timeout')
  h.clock.advance(1)
  t.equal(await idle.closed, cpClose('CP_ERR_HELLO_TIMEOUT'))
  h.clock.advance(8 * SECOND - 1)
  t.equal(started.ws.readyState, WebSocket.OPEN, 'the handshake timeout runs from the first message')
  h.clock.advance(1)
  t.equal(await started.closed, cpClose('CP_ERR_HANDSHAKE_TIMEOUT'))
  const a = await enrolled(h, 'orders')
  h.clock.advance(60 * SECOND)
  t.equal(a.ws.readyState, WebSocket.OPEN, 'an admitted session has no handshake timer')
})

t.test('the number of pending handshakes is capped (the oldest evicted); idle connections do not count', async (t) => {
  const h = await startTestControlPlane(t)
  const endpoint = createAgentEndpoint(h.cp.ctx, { maxPendingHandshakes: 2 })
  const server = createServer((_req, res) => res.end())
  server.on('upgrade', (req, socket, head) => endpoint.handleUpgrade(req, socket, head))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    await endpoint.close()
    await new Promise((resolve) => server.close(resolve))
  })
  const address = server.address() as { port: number }
  const url = `http://127.0.0.1:${address.port}`
  const open = (): Promise<{ ws: WebSocket; closed: Promise<number> }> => raw({ ...h, cp: { ...h.cp, url } } as TestControlPlane)
  const started = async (): Promise<{ ws: WebSocket; closed: Promise<number> }> => {
    const c = await open()
    c.ws.send(xkMessage1(h))
    await once(c.ws, 'message')
    return c
  }
  const idle = await open()
  const one = await started()
  const two = await started()
  t.equal(endpoint.pendingCount(), 2)
  t.equal(endpoint.idleCount(), 1)
  const three = await started()
  t.equal(await one.closed, cpClose('CP_ERR_HANDSHAKE_LIMIT'), 'the table is full: the oldest handshake makes room')
  t.equal(endpoint.pendingCount(), 2)
  three.ws.close()
  await three.closed
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(endpoint.pendingCount(), 1, 'a closed handshake frees its place')
  const token = (await h.api('POST', '/v1/join-tokens', { service: 'orders' })).body.token
  const a = new FakeAgent({ url, cpKey: h.identityPub, service: 'orders', joinToken: token })
  await a.welcome()
  t.equal(endpoint.pendingCount(), 1, 'an admitted session is no longer pending')
  t.equal(endpoint.connectedCount(), 1)
  two.ws.close()
  await endpoint.close()
  t.equal((await a.closed).code, 1001, 'shutdown closes sessions with Going Away')
  t.equal(await idle.closed, 1001, 'and connections still waiting for their first message')
})

t.test("the agents list asks the control plane's own endpoint, whatever other endpoint shares its context", async (t) => {
  const h = await startTestControlPlane(t)
  const a = await enrolled(h, 'orders')
  const other = createAgentEndpoint(h.cp.ctx)
  await other.close()
  t.match((await h.api('GET', '/v1/agents')).body, [{ id: a.agentId, connected: true }])
})

t.test('messages sent before welcome wait for admission, within a bound', async (t) => {
  const h = await startTestControlPlane(t)
  const event = { kind: 'conn.open' as const, at: h.clock.now() }
  const token = async (): Promise<string> => (await h.api('POST', '/v1/join-tokens', { service: 'orders' })).body.token
  const early = agent(h, { service: 'orders', joinToken: await token(), onOpen: (a) => a.sendUsage(1, [event]) })
  await early.welcome()
  t.same(await early.next('usage.ack'), { type: 'usage.ack', seq: 1 }, 'an early batch is handled after welcome')

  const floodToken = await token()
  // Hold the store so that admission cannot finish while the flood arrives.
  let release = (): void => {}
  const held = h.cp.ctx.store.transaction(() => new Promise<void>((resolve) => (release = resolve)))
  const flood = agent(h, {
    service: 'orders',
    joinToken: floodToken,
    onOpen: (a) => {
      for (let seq = 1; seq <= 17; seq++) a.sendUsage(seq, [event])
    },
  })
  t.equal((await flood.closed).code, cpClose('CP_ERR_AGENT_MESSAGE'), 'more than 16 early messages close the session')
  release()
  await held
})

t.test('an agent may report an error and close the session itself', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await enrolled(h, 'orders')
  await a.keyset()
  a.channel.send({ type: 'error', code: 'AGENT_ERR_SOMETHING', message: 'local trouble' })
  a.sendUsage(1, [{ kind: 'conn.open', at: 1 }])
  t.same(await a.next('usage.ack'), { type: 'usage.ack', seq: 1 }, 'the session stays up after an agent error report')
  t.ok(h.logs.some((l) => l.includes('AGENT_ERR_SOMETHING')))
  t.equal(h.cp.endpoint.connectedCount(), 1)
  const closed = await a.close()
  t.equal(closed.code, 1000)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(h.cp.endpoint.connectedCount(), 0)
})

t.test('shutting the control plane down closes agent sessions with Going Away', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await enrolled(h, 'orders')
  await a.keyset()
  await h.cp.close()
  t.equal((await a.closed).code, 1001)
})

t.test('an agent that stops reading is closed once too much waits to be sent', async (t) => {
  const { EventEmitter } = await import('node:events')
  const { AgentSession } = await import('../../../control-plane/src/agent-endpoint/session.js')
  const { KmsService } = await import('../../../control-plane/src/services/kms.js')
  const { NoiseChannel } = await import('../../../protocol/src/index.js')
  const { createXkInitiator } = await import('../../../protocol/src/index.js')
  const { parsePublicKey } = await import('../../../protocol/src/index.js')
  const { encodeMessage } = await import('../../../protocol/src/index.js')
  const h = await startTestControlPlane(t)
  const token = (await h.api('POST', '/v1/join-tokens', { service: 'orders' })).body.token
  const hub = (h.cp.endpoint as ReturnType<typeof createAgentEndpoint>).hub

  // A stand-in for the ws socket whose send buffer the test controls.
  const closes: number[] = []
  const stub = Object.assign(new EventEmitter(), {
    OPEN: 1, CONNECTING: 0, readyState: 1, bufferedAmount: 0,
    send: (b: Uint8Array) => setImmediate(() => client.receive(new Uint8Array(b))),
    close: (code: number) => {
      closes.push(code)
      stub.readyState = 3
      setImmediate(() => stub.emit('close'))
    },
  })
  const received: string[] = []
  const client: InstanceType<typeof NoiseChannel> = new NoiseChannel({
    handshake: createXkInitiator({ suite: nodeSuite, staticKey: nodeSuite.x25519Generate(), controlPlaneKey: parsePublicKey(h.identityPub) }),
    transport: { send: (b) => setImmediate(() => stub.emit('message', Buffer.from(b), true)), close: () => {} },
    handler: { onMessage: (m) => received.push(m.type) },
    payload: (i) => (i === 2 ? encodeMessage({ type: 'hello', protocol: 'keymesh/1', service: 'orders', agentVersion: '1', joinToken: token }) : new Uint8Array(0)),
  })
  const session = new AgentSession(h.cp.ctx, hub, new KmsService(h.cp.ctx), stub as never, '127.0.0.1', { handshakeTimeoutMs: 10_000, maxBufferedBytes: 1000, maxEarlyMessages: 4 })
  client.start()
  while (!received.includes('keyset.end')) await new Promise((resolve) => setImmediate(resolve))
  t.equal(session.state, 'ready')
  stub.bufferedAmount = 1001
  await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })
  await hub.idle()
  t.same(closes, [cpClose('CP_ERR_AGENT_BACKPRESSURE')])
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(session.state, 'closed')
})
