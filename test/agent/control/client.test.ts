// The agent's control-plane client against a real control plane (and, for
// misbehaviour a real one never shows, a scripted one): enrollment, the first key
// set, pushes, usage acks, reconnects driven by the fake clock, refusals, URL
// order, the handshake timeout, and logs free of join tokens and pair keys.
import t from 'tap'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { WebSocketServer, type WebSocket } from 'ws'

import { ESTABLISHED_SESSION_MS, backoffDelay, failuresAfterResync, resyncDelay } from '../../../agent/src/control/backoff.js'
import { ControlClient, controlTarget, type ControlClientOptions, type ControlState } from '../../../agent/src/control/client.js'
import { agentError } from '../../../agent/src/errors.js'
import { KeySet, type KeySetChange } from '../../../agent/src/keyset.js'
import type { AgentEndpointInternals } from '../../../control-plane/src/index.js'
import { NoiseChannel } from '../../../protocol/src/index.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import type { KeyPair } from '../../../protocol/src/index.js'
import type { KeymeshError } from '../../../protocol/src/index.js'
import { parsePublicKey, publicKeyFingerprint } from '../../../protocol/src/index.js'
import { fetchControlPlaneKey } from '../../../agent/src/control/cp-identity.js'
import { decodeMessage, type Message, type WelcomeMessage } from '../../../protocol/src/index.js'
import { createXkResponder } from '../../../protocol/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { codeOf } from '../../kit/errors.js'
import { FakeAgent } from '../../kit/fake-agent.js'
import { FakeClock, SECOND } from '../../kit/fake-clock.js'
import { captureLogger } from '../../kit/logs.js'
import { until } from '../../kit/wait.js'

const suite = nodeSuite
const MIN = 250
const MAX = 30 * SECOND
const HANDSHAKE = 10 * SECOND
const PING = 1_500
const DEAD = 3_500

/** One client with everything it reports recorded, and a way to wait for a condition without sleeping. */
class Probe {
  readonly clock = new FakeClock()
  readonly keyset = new KeySet(this.clock)
  readonly logs: string[] = []
  readonly states: ControlState[] = []
  readonly welcomes: WelcomeMessage[] = []
  readonly rejections: KeymeshError[] = []
  readonly acks: number[] = []
  readonly peerUps: [string, string][] = []
  readonly changes: KeySetChange[] = []
  /** base64 and hex of every pair key the key set ever held, copied before any wipe. */
  readonly keyTexts = new Set<string>()
  readonly staticKey: KeyPair
  client!: ControlClient
  enrolled = false
  #waiters: { pred: () => boolean; resolve: () => void }[] = []

  constructor(staticKey?: KeyPair) {
    this.staticKey = staticKey ?? suite.x25519Generate()
    this.keyset.subscribe((c) => {
      this.changes.push(c)
      for (const p of this.keyset.pairs()) {
        for (const v of p.versions) for (const enc of ['base64', 'hex', 'base64url'] as const) this.keyTexts.add(Buffer.from(v.key).toString(enc))
      }
      this.poke()
    })
  }

  start(o: Partial<ControlClientOptions> & { urls: string[]; cpKey: Uint8Array; service: string }): ControlClient {
    const { logger } = captureLogger(this.logs)
    this.client = new ControlClient({
      staticKey: this.staticKey,
      enrolled: () => this.enrolled,
      endpoint: 'ws://127.0.0.1:7100/v1/tunnel',
      agentVersion: '0.1.0-test',
      keyset: this.keyset,
      suite,
      clock: this.clock,
      random: () => 1,
      logger,
      reconnectMinMs: MIN,
      reconnectMaxMs: MAX,
      handshakeTimeoutMs: HANDSHAKE,
      controlPingMs: PING,
      controlDeadMs: DEAD,
      onWelcome: (w) => {
        this.welcomes.push(w)
        this.enrolled = true
        this.poke()
      },
      onRejected: (e) => {
        this.rejections.push(e)
        this.poke()
      },
      onUsageAck: (seq) => {
        this.acks.push(seq)
        this.poke()
      },
      onStateChange: (s) => {
        this.states.push(s)
        this.poke()
      },
      onPeerUp: (pairId, agentId) => {
        this.peerUps.push([pairId, agentId])
        this.poke()
      },
      ...o,
    })
    t.teardown(() => this.client.close())
    this.client.start()
    return this.client
  }

  until(pred: () => boolean): Promise<void> {
    if (pred()) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }))
  }

  /** The delay of the last backoff the client logged. */
  get lastDelay(): number | undefined {
    for (let i = this.logs.length - 1; i >= 0; i--) {
      const d = (JSON.parse(this.logs[i] as string) as { delayMs?: number }).delayMs
      if (d !== undefined) return d
    }
    return undefined
  }

  /** Resolves once the client has been in `state` `n` times in all. */
  reached(state: ControlState, n = 1): Promise<void> {
    return this.until(() => this.states.filter((s) => s === state).length >= n)
  }

  poke(): void {
    for (const w of [...this.#waiters]) {
      if (!w.pred()) continue
      this.#waiters.splice(this.#waiters.indexOf(w), 1)
      w.resolve()
    }
  }
}

async function joinToken(h: TestControlPlane, service: string): Promise<string> {
  const res = await h.api('POST', '/v1/join-tokens', { service })
  return res.body.token
}

/** A peer agent of `service`, enrolled and holding its first key set. */
async function peer(t: Tap, h: TestControlPlane, service: string): Promise<FakeAgent> {
  const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service, joinToken: await joinToken(h, service), endpoint: 'ws://127.0.0.1:7200/v1/tunnel' })
  t.teardown(() => a.close().catch(() => {}))
  await a.welcome()
  await a.keyset()
  return a
}

interface Tap {
  teardown(fn: () => unknown): void
  testdir(): string
}

const cpKeyOf = (h: TestControlPlane): Uint8Array => parsePublicKey(h.identityPub)

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address() as AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

t.test('enrolls with a join token, receives the key set, then its pushes and usage acks', async (t) => {
  const h = await startTestControlPlane(t)
  const billing = await peer(t, h, 'billing')
  t.equal((await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })).status, 201)
  const token = await joinToken(h, 'orders')
  const p = new Probe()
  const client = p.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: token })
  t.equal(client.state, 'connecting')
  await p.reached('connected')

  t.equal(p.welcomes.length, 1)
  const agentId = p.welcomes[0]?.agentId
  t.match(agentId, /^agt_/)
  t.equal(client.url, `${h.cp.url.replace('http://', 'ws://')}/v1/agent`)
  t.equal(client.lastError, undefined)
  t.same(p.states, ['connecting', 'connected'])
  t.equal(p.keyset.source, 'control-plane')
  const entry = p.keyset.get('billing:orders')
  t.match(entry, { peerService: 'billing', mayInitiate: true, mayAccept: false })
  t.same(entry?.peers.map((x) => x.agentId), [billing.agentId])
  t.equal(p.keyset.current('billing:orders')?.version, 1)
  t.same(p.changes.map((c) => c.kind), ['replaced'], 'the first set arrives as one replace')

  // The control plane lists the agent with the advertised endpoint.
  const listed = (await h.api('GET', '/v1/agents?service=orders')).body
  t.match(listed, [{ id: agentId, endpoint: 'ws://127.0.0.1:7100/v1/tunnel' }])

  t.equal((await h.api('POST', '/v1/pairs/orders/billing/rotate')).status, 200)
  await p.until(() => p.keyset.current('billing:orders')?.version === 2)
  t.same(p.keyset.get('billing:orders')?.versions.map((v) => [v.version, v.state]), [
    [2, 'current'],
    [1, 'previous'],
  ])
  t.equal(p.changes.at(-1)?.kind, 'updated')

  t.equal(client.sendUsage({ seq: 1, events: [{ kind: 'conn.open', at: h.clock.now(), pairId: 'billing:orders', keyVersion: 2 }] }), true)
  await p.until(() => p.acks.includes(1))
  t.same(p.acks, [1])

  t.equal((await h.api('DELETE', '/v1/intentions/orders/billing?now=true')).status, 200)
  await p.until(() => p.keyset.get('billing:orders') === undefined)
  t.match(p.changes.at(-1), { kind: 'removed', pairId: 'billing:orders' })

  await client.close()
  t.equal(client.state, 'stopped')
  t.equal(client.url, undefined)
  t.equal(client.sendUsage({ seq: 2, events: [{ kind: 'conn.open', at: h.clock.now() }] }), false, 'nothing is sent once closed')

  const logs = p.logs.join('')
  t.ok(logs.includes('key set received'), 'the client did log')
  t.notOk(logs.includes(token), 'the join token is not in the logs')
  t.ok(p.keyTexts.size >= 6)
  t.notOk([...p.keyTexts].some((k) => logs.includes(k)), 'no pair key is in the logs')
  t.notOk(logs.includes(Buffer.from(p.staticKey.secretKey).toString('base64')), 'nor the static key')
})

t.test('a restart of an enrolled agent connects without a token', async (t) => {
  const h = await startTestControlPlane(t)
  const first = new Probe()
  first.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: await joinToken(h, 'orders') })
  await first.reached('connected')
  await first.client.close()
  const again = new Probe(first.staticKey)
  again.enrolled = true
  again.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders' })
  await again.reached('connected')
  t.equal(again.welcomes[0]?.agentId, first.welcomes[0]?.agentId, 'the same agent')
  t.same(again.rejections, [])
})

t.test('reconnects with the backoff timer after the control plane restarts', async (t) => {
  const h = await startTestControlPlane(t)
  const p = new Probe()
  const client = p.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: await joinToken(h, 'orders') })
  await p.reached('connected')
  await h.cp.close()
  await p.reached('backoff')
  t.equal(client.lastError, 'AGENT_ERR_CP_UNREACHABLE')
  t.equal(client.url, undefined)
  t.equal(p.keyset.ready, true, 'the key set stays while the control plane is away')

  // Down: the retry fails to connect and backs off again, longer.
  p.clock.advance(MIN - 1)
  t.equal(client.state, 'backoff', 'not before the delay')
  p.clock.advance(1)
  t.equal(client.state, 'connecting')
  await p.reached('backoff', 2)
  t.equal(client.lastError, 'AGENT_ERR_CP_UNREACHABLE')

  const h2 = await startTestControlPlane(t, { dataDir: h.dataDir, port: h.cp.address.port })
  p.clock.advance(2 * MIN)
  await p.reached('connected', 2)
  t.equal(client.lastError, undefined, 'cleared once connected')
  t.same(p.changes.filter((c) => c.kind === 'replaced').length, 2, 'a fresh key set on reconnect')
  t.same(p.rejections, [])
  t.equal((await h2.api('GET', '/v1/agents?service=orders')).body[0]?.connected, true)
})

t.test('a session replaced by a newer one of the same agent just reconnects', async (t) => {
  const h = await startTestControlPlane(t)
  const p = new Probe()
  const client = p.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: await joinToken(h, 'orders') })
  await p.reached('connected')
  const twin = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service: 'orders', staticKey: p.staticKey })
  t.teardown(() => twin.close().catch(() => {}))
  await twin.welcome()
  await p.reached('backoff')
  t.equal(client.lastError, 'CP_ERR_AGENT_REPLACED')
  t.same(p.rejections, [], 'not a refusal')
  p.clock.advance(MIN)
  await p.reached('connected', 2)
  t.equal((await twin.closed).code, 4618, 'and the reconnect replaced the twin in turn')
})

t.test('a revoked agent gets onRejected with CP_ERR_AGENT_REVOKED and retries at the maximum delay', async (t) => {
  const h = await startTestControlPlane(t)
  const p = new Probe()
  const client = p.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: await joinToken(h, 'orders') })
  await p.reached('connected')
  t.equal((await h.api('POST', `/v1/agents/${p.welcomes[0]?.agentId}/revoke`)).status, 200)
  await p.until(() => p.rejections.length === 1)
  t.equal(p.rejections[0]?.code, 'CP_ERR_AGENT_REVOKED')
  t.match(p.rejections[0]?.message, /revoked/)
  t.equal(client.state, 'backoff')
  t.equal(client.lastError, 'CP_ERR_AGENT_REVOKED')

  p.clock.advance(MAX - 1)
  t.equal(client.state, 'backoff', 'waits the maximum delay, not the minimum')
  p.clock.advance(1)
  t.equal(client.state, 'connecting')
  await p.until(() => p.rejections.length === 2)
  t.equal(p.rejections[1]?.code, 'CP_ERR_AGENT_REVOKED', 'refused again on reconnect')
  t.equal(client.state, 'backoff')
})

t.test('a used join token and an unknown agent are refusals', async (t) => {
  const h = await startTestControlPlane(t)
  const token = await joinToken(h, 'orders')
  const first = new Probe()
  first.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: token })
  await first.reached('connected')

  const second = new Probe()
  const client = second.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: token })
  await second.until(() => second.rejections.length === 1)
  t.equal(second.rejections[0]?.code, 'CP_ERR_JOIN_TOKEN')
  t.equal(client.lastError, 'CP_ERR_JOIN_TOKEN')
  t.same(second.welcomes, [])
  t.equal(second.keyset.ready, false)
  t.notOk(second.logs.join('').includes(token), 'the token is not logged')

  const stranger = new Probe()
  stranger.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders' })
  await stranger.until(() => stranger.rejections.length === 1)
  t.equal(stranger.rejections[0]?.code, 'CP_ERR_AGENT_UNKNOWN', 'no token and not enrolled')
})

t.test('tries the URLs in order, moving to the next after a failure', async (t) => {
  const h = await startTestControlPlane(t)
  const dead = `http://127.0.0.1:${await deadPort()}`
  const p = new Probe()
  const client = p.start({ urls: [dead, h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: await joinToken(h, 'orders') })
  await p.reached('backoff')
  t.equal(client.lastError, 'AGENT_ERR_CP_UNREACHABLE')
  t.match(p.logs.join(''), /ECONNREFUSED/)
  p.clock.advance(MIN)
  await p.reached('connected')
  t.equal(client.url, `${h.cp.url.replace('http://', 'ws://')}/v1/agent`)
})

t.test('a wrong pinned key fails the handshake; the control plane\'s own key, asked, names both, and retrying goes on', async (t) => {
  const h = await startTestControlPlane(t)
  const p = new Probe()
  const pinned = suite.x25519Generate().publicKey
  const client = p.start({ urls: [h.cp.url], cpKey: pinned, service: 'orders', joinToken: await joinToken(h, 'orders') })
  await p.reached('backoff')
  await p.until(() => p.rejections.length === 1)
  const mismatch = p.rejections[0] as KeymeshError
  t.equal(mismatch.code, 'AGENT_ERR_CP_KEY_MISMATCH')
  const theirs = publicKeyFingerprint(suite, parsePublicKey(h.identityPub))
  t.match(mismatch.message, `has key ${theirs}, this agent pins ${publicKeyFingerprint(suite, pinned)}`)
  t.equal(client.lastError, 'AGENT_ERR_CP_KEY_MISMATCH', 'status says so, not PROTO_ERR_DECRYPT')
  t.match(p.logs.join(''), /"controlPlaneKey":"sha256:[0-9a-f]{64}","pinnedKey":"sha256:[0-9a-f]{64}"/)
  t.same(p.welcomes, [])
  p.clock.advance(MAX)
  await p.reached('backoff', 2)
  await p.until(() => p.rejections.length === 2)
  t.pass('it tried again, and was told again')
})

t.test('a control plane that does not say its key, or says the pinned one, leaves the failure as it was', async (t) => {
  const h = await startTestControlPlane(t)
  const pinned = parsePublicKey(h.identityPub)
  // A sealed control plane, an older version, a proxy: no key in the answer; then the pinned key itself.
  let identity = (res: ServerResponse): unknown => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"CP_ERR_SEALED","message":"sealed"}}')
  const { server } = await fakeControlPlane(t, (ws) => ws.close(4402, 'PROTO_ERR_DECRYPT'))
  server.prependListener('request', (req, res) => {
    if (req.url === '/v1/identity') identity(res)
  })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const p = new Probe()
  const client = p.start({ urls: [url], cpKey: pinned, service: 'orders' })
  await p.reached('backoff')
  await until(() => p.logs.some((l) => l.includes('the control plane did not say its key')), 'the key to be asked for')
  t.equal(client.lastError, 'PROTO_ERR_DECRYPT')
  t.equal(await fetchControlPlaneKey(controlTarget(url).dial, undefined, 5_000), undefined, 'no key in a 503')
  identity = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ publicKey: h.identityPub }))
  p.clock.advance(MAX)
  await until(() => p.logs.some((l) => l.includes('the control plane\'s key is the pinned one')), 'the key to be asked for again')
  t.equal(client.lastError, 'PROTO_ERR_DECRYPT', 'a decrypt failure with the right key is not called a mismatch')
  t.same(p.rejections, [])
})

/** A WebSocket server standing in for the control plane, scripted per connection. */
async function fakeControlPlane(t: Tap, onConnection: (ws: WebSocket) => void): Promise<{ url: string; server: Server }> {
  const server = createServer()
  const wss = new WebSocketServer({ server, perMessageDeflate: false })
  wss.on('connection', onConnection)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate()
    wss.close()
    await new Promise((r) => server.close(r))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** A scripted control plane that runs the real XK responder and then sends `script`'s messages. */
async function scriptedControlPlane(t: Tap, identity: KeyPair, script: (agentId: string) => Message[], hellos: Message[] = [], offer?: Uint8Array) {
  return fakeControlPlane(t, (ws) => {
    const channel: NoiseChannel = new NoiseChannel({
      handshake: createXkResponder({ suite, staticKey: identity }),
      transport: { send: (b) => ws.send(b), close: (code, reason) => ws.close(code, reason) },
      handler: {
        onHandshake: (r) => {
          hellos.push(decodeMessage(r.payloads[1] as Uint8Array))
          for (const m of script('agt_aaaaaaaaaaaaaaaaaaaaaaaaaa')) channel.send(m)
        },
      },
      // Like a control plane older than features, nothing in message 2 (unless told).
      payload: (i) => (i === 1 && offer !== undefined ? offer : new Uint8Array(0)),
    })
    ws.on('message', (data) => {
      try {
        channel.receive(new Uint8Array(data as Buffer))
      } catch {
        // failed channel: closed already
      }
    })
    channel.start()
  })
}

t.test('messages out of order from the control plane fail the session with AGENT_ERR_CP_PROTOCOL', async (t) => {
  const identity = suite.x25519Generate()
  const key = new Uint8Array(32).fill(7)
  const entry = {
    pairId: 'billing:orders',
    peerService: 'billing',
    mayInitiate: true,
    mayAccept: true,
    versions: [{ version: 1, key, state: 'current' as const, notAfter: null }],
    peers: [],
  }
  const welcome = (agentId: string, service = 'orders'): Message => ({ type: 'welcome', agentId, service, serverTime: 0 })
  const scripts: [string, string, (id: string) => Message[]][] = [
    ['a push before the first key set', 'AGENT_ERR_CP_PROTOCOL', (id) => [welcome(id), { type: 'pair.update', pair: entry }]],
    ['a key set before welcome', 'AGENT_ERR_CP_PROTOCOL', () => [{ type: 'keyset.begin', generation: 1, pairCount: 0 }]],
    [
      'a key set that ends short',
      'AGENT_ERR_CP_PROTOCOL',
      (id) => [welcome(id), { type: 'keyset.begin', generation: 1, pairCount: 2 }, { type: 'keyset.pair', pair: entry }, { type: 'keyset.end', generation: 1 }],
    ],
    ['a welcome for another service', 'AGENT_ERR_SERVICE_MISMATCH', (id) => [welcome(id, 'billing')]],
    ['a message agents never get', 'AGENT_ERR_CP_PROTOCOL', (id) => [welcome(id), { type: 'usage.batch', seq: 1, events: [{ kind: 'conn.open', at: 0 }] }]],
  ]
  for (const [what, code, script] of scripts) {
    const cp = await scriptedControlPlane(t, identity, script)
    const p = new Probe()
    const client = p.start({ urls: [cp.url], cpKey: identity.publicKey, service: 'orders' })
    await p.reached('backoff')
    t.equal(client.lastError, code, what)
    t.equal(p.keyset.ready, false, `${what}: nothing reaches the key set`)
    t.same(p.rejections, [])
    await client.close()
  }
})

t.test('a close frame naming a refusal is not trusted: only the Noise session can refuse', async (t) => {
  const cp = await fakeControlPlane(t, (ws) => ws.close(4611, 'CP_ERR_AGENT_REVOKED'))
  const p = new Probe()
  const client = p.start({ urls: [cp.url], cpKey: suite.x25519Generate().publicKey, service: 'orders' })
  await p.reached('backoff')
  t.equal(client.lastError, 'CP_ERR_AGENT_REVOKED', 'shown for status')
  t.same(p.rejections, [], 'but not a refusal')
  p.clock.advance(MIN)
  t.equal(client.state, 'connecting', 'retried at the normal delay')
})

t.test('a text frame from the control plane fails the session', async (t) => {
  const cp = await fakeControlPlane(t, (ws) => ws.send('plain text'))
  const p = new Probe()
  const client = p.start({ urls: [cp.url], cpKey: suite.x25519Generate().publicKey, service: 'orders' })
  await p.reached('backoff')
  t.equal(client.lastError, 'AGENT_ERR_CP_PROTOCOL')
})

t.test('a welcome handler that throws (say, the enrollment cannot be saved) fails the session, and the retry works', async (t) => {
  const h = await startTestControlPlane(t)
  const p = new Probe()
  let failOnce = true
  const client = p.start({
    urls: [h.cp.url],
    cpKey: cpKeyOf(h),
    service: 'orders',
    joinToken: await joinToken(h, 'orders'),
    onWelcome: (w) => {
      p.welcomes.push(w)
      if (failOnce) {
        failOnce = false
        throw agentError('AGENT_ERR_STATE_DIR', 'disk full')
      }
      p.enrolled = true
    },
  })
  await p.reached('backoff')
  t.equal(client.lastError, 'AGENT_ERR_STATE_DIR')
  t.equal(p.keyset.ready, false)
  p.clock.advance(MIN)
  await p.reached('connected')
  t.equal(p.welcomes.length, 2)
  t.equal(p.welcomes[1]?.agentId, p.welcomes[0]?.agentId, 'the control plane knows the key: no second enrollment')
})

t.test('a control plane that never answers hits the handshake timeout on the injected clock', async (t) => {
  let connections = 0
  const p = new Probe()
  const cp = await fakeControlPlane(t, () => {
    connections++
    p.poke()
  })
  const client = p.start({ urls: [cp.url], cpKey: suite.x25519Generate().publicKey, service: 'orders' })
  await p.until(() => connections === 1)
  p.clock.advance(HANDSHAKE - 1)
  t.equal(client.state, 'connecting')
  p.clock.advance(1)
  await p.reached('backoff')
  t.equal(client.lastError, 'AGENT_ERR_CP_UNREACHABLE')
  t.match(p.logs.join(''), /no key set within 10000 ms/)
})

t.test('close() during backoff cancels the retry timer', async (t) => {
  const p = new Probe()
  const client = p.start({ urls: [`http://127.0.0.1:${await deadPort()}`], cpKey: suite.x25519Generate().publicKey, service: 'orders' })
  await p.reached('backoff')
  t.equal(p.clock.pendingTimers, 1)
  await client.close()
  t.equal(p.clock.pendingTimers, 0)
  t.equal(client.state, 'stopped')
  client.start()
  t.equal(client.state, 'stopped', 'a closed client does not start again')
})

t.test('control-plane URLs: http(s) and ws(s) bases, path prefixes, credentials hidden, bad ones refused', async (t) => {
  t.same(controlTarget('http://cp.example:7000'), { dial: 'ws://cp.example:7000/v1/agent', shown: 'ws://cp.example:7000/v1/agent' })
  t.same(controlTarget('https://cp.example/kms/'), { dial: 'wss://cp.example/kms/v1/agent', shown: 'wss://cp.example/kms/v1/agent' })
  t.same(controlTarget('ws://127.0.0.1:1/v1/agent').dial, 'ws://127.0.0.1:1/v1/agent')
  t.same(controlTarget('wss://u:secret@cp.example').shown, 'wss://cp.example/v1/agent')
  t.equal(controlTarget('wss://u:secret@cp.example').dial, 'wss://u:secret@cp.example/v1/agent')
  for (const bad of ['ftp://cp.example', 'not a url', 'http://cp.example/?x=1', 'http://cp.example/#f']) {
    t.equal(codeOf(() => controlTarget(bad)), 'AGENT_ERR_CONFIG', bad)
  }
})

t.test('the constructor refuses options it could never connect with', async (t) => {
  const keyset = new KeySet(new FakeClock())
  const base: ControlClientOptions = {
    urls: ['http://127.0.0.1:1'],
    cpKey: suite.x25519Generate().publicKey,
    staticKey: suite.x25519Generate(),
    service: 'orders',
    enrolled: () => false,
    agentVersion: '1.0.0',
    keyset,
    suite,
    clock: new FakeClock(),
    logger: pino({ level: 'silent' }),
    reconnectMinMs: MIN,
    reconnectMaxMs: MAX,
    handshakeTimeoutMs: HANDSHAKE,
    controlPingMs: PING,
    controlDeadMs: DEAD,
  }
  t.equal(codeOf(() => new ControlClient({ ...base, urls: [] })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => new ControlClient({ ...base, agentVersion: 'has spaces' })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => new ControlClient({ ...base, joinToken: 'short' })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => new ControlClient({ ...base, reconnectMinMs: MAX + 1 })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => new ControlClient({ ...base, handshakeTimeoutMs: 0 })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => new ControlClient({ ...base, controlPingMs: 0 })), 'AGENT_ERR_CONFIG')
  t.equal(codeOf(() => new ControlClient({ ...base, controlDeadMs: PING })), 'AGENT_ERR_CONFIG', 'dead must come after ping')
  t.equal(codeOf(() => new ControlClient({ ...base, controlPingMs: 1.5 })), 'AGENT_ERR_CONFIG')
  let message = ''
  try {
    new ControlClient({ ...base, joinToken: 'bad token with spaces!!' })
  } catch (e) {
    message = (e as Error).message
  }
  t.notOk(message.includes('bad token'), 'the error does not repeat the token')
  t.equal(new ControlClient(base).state, 'stopped', 'valid options construct a stopped client')
})

t.test('backoff grows from min to max with equal jitter, never below min or above max', async (t) => {
  t.equal(backoffDelay(1, 250, 30_000, () => 1), 250)
  t.equal(backoffDelay(2, 250, 30_000, () => 1), 500)
  t.equal(backoffDelay(5, 250, 30_000, () => 1), 4000)
  t.equal(backoffDelay(20, 250, 30_000, () => 1), 30_000, 'capped')
  t.equal(backoffDelay(Number.MAX_SAFE_INTEGER, 250, 30_000, () => 1), 30_000)
  t.equal(backoffDelay(5, 250, 30_000, () => 0), 2000, 'half the step at the low end')
  t.equal(backoffDelay(1, 250, 30_000, () => 0), 250, 'never below min')
  t.equal(backoffDelay(Number.MAX_SAFE_INTEGER, 0, 1000, () => 1), 1000, 'a zero minimum still reaches the cap')
  t.equal(backoffDelay(1, 0, 1000, () => 1), 1)
  t.equal(backoffDelay(3, 250, 30_000, () => Number.NaN), 750, 'a broken random source falls back to the middle')
  const delays = Array.from({ length: 200 }, (_, i) => backoffDelay(4, 250, 30_000, () => (i * 0.61803) % 1))
  t.ok(delays.every((d) => d >= 1000 && d <= 2000), 'within [step/2, step]')
  t.ok(new Set(delays).size > 50, 'jittered')
})


t.test('an older control plane (nothing in XK message 2) gets a hello without features, and no keyset.request', async (t) => {
  const identity = suite.x25519Generate()
  const hellos: Message[] = []
  const cp = await scriptedControlPlane(t, identity, (id) => [welcome(id), { type: 'keyset.begin', generation: 1, pairCount: 0 }, { type: 'keyset.end', generation: 1 }], hellos)
  const p = new Probe()
  const client = p.start({ urls: [cp.url], cpKey: identity.publicKey, service: 'orders' })
  await p.reached('connected')
  t.equal(hellos.length, 1)
  t.notOk('features' in (hellos[0] as object), 'hello carries no field an older control plane would refuse')
  client.requestKeySet('billing:orders')
  t.notOk(p.logs.join('').includes('asked the control plane for the key set'), 'nothing is asked of a control plane that did not agree to it')
  t.equal(client.state, 'connected')
  await client.close()

  // A peer.up from a control plane that did not offer it: the agent never agreed to it.
  const sayingPeerUp = await scriptedControlPlane(t, identity, (id) => [
    welcome(id), { type: 'keyset.begin', generation: 1, pairCount: 0 }, { type: 'keyset.end', generation: 1 }, { type: 'peer.up', pairId: 'billing:orders', agentId: id },
  ])
  const q = new Probe()
  const other = q.start({ urls: [sayingPeerUp.url], cpKey: identity.publicKey, service: 'orders' })
  await q.reached('backoff')
  t.equal(other.lastError, 'AGENT_ERR_CP_PROTOCOL', 'a peer.up it did not agree to fails the session')
  t.same(q.peerUps, [])
})

t.test('a message 2 payload that is not a feature offer fails the session', async (t) => {
  const identity = suite.x25519Generate()
  const cp = await scriptedControlPlane(t, identity, () => [], [], new TextEncoder().encode('{"type":"usage.ack","seq":1}'))
  const p = new Probe()
  const client = p.start({ urls: [cp.url], cpKey: identity.publicKey, service: 'orders' })
  await p.reached('backoff')
  t.equal(client.lastError, 'PROTO_ERR_MESSAGE_ORDER')
})

function welcome(agentId: string): Message {
  return { type: 'welcome', agentId, service: 'orders', serverTime: 0 }
}

/** A client on `h` whose liveness never fires on its own (its fake clock moves by whole windows here). */
async function steadyClient(t: Tap, h: TestControlPlane, random: () => number): Promise<{ p: Probe; client: ControlClient }> {
  const p = new Probe()
  const client = p.start({
    urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'orders', joinToken: await joinToken(h, 'orders'),
    random, controlPingMs: 10 * MAX, controlDeadMs: 20 * MAX,
  })
  await p.reached('connected')
  return { p, client }
}

/** Moves the clock by the last delay and waits for the attempt that follows to fail (the control plane is down). */
async function failAgain(p: Probe, n: number): Promise<number> {
  const delay = p.lastDelay as number
  p.clock.advance(delay)
  await p.reached('backoff', n)
  return delay
}

t.test('after losing an established session: retries every min..resyncMax for the window, then backs off from resyncMax', async (t) => {
  const h = await startTestControlPlane(t)
  const { p, client } = await steadyClient(t, h, () => 1)
  p.clock.advance(ESTABLISHED_SESSION_MS)
  await h.cp.close()
  await p.reached('backoff')
  // random 1: every delay at the top of its interval. Failures at 0, 1, ..., 29 s after the loss are inside the 30 s window.
  const inside = [p.lastDelay]
  for (let n = 2; n <= 30; n++) inside.push(await failAgain(p, n).then(() => p.lastDelay))
  t.same(new Set(inside), new Set([1_000]), '30 attempts, each resyncMaxMs after the last')
  const after: (number | undefined)[] = []
  for (let n = 31; n <= 36; n++) after.push(await failAgain(p, n).then(() => p.lastDelay))
  t.same(after, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000], 'then the delays grow again from resyncMaxMs to the cap')
  t.equal(client.state, 'backoff')
  await startTestControlPlane(t, { dataDir: h.dataDir, port: h.cp.address.port })
  p.clock.advance(p.lastDelay as number)
  await p.reached('connected', 2)
})

t.test('a control plane back within the window gets the agent within resyncMaxMs, with its full key set', async (t) => {
  const h = await startTestControlPlane(t)
  // random 0.5: each delay is the middle of 250..1000 ms
  const { p } = await steadyClient(t, h, () => 0.5)
  p.clock.advance(ESTABLISHED_SESSION_MS)
  await h.cp.close()
  await p.reached('backoff')
  t.equal(p.lastDelay, 625)
  await failAgain(p, 2)
  await failAgain(p, 3)
  t.equal(p.lastDelay, 625, 'still the middle of 250..1000 ms, not growing')
  await startTestControlPlane(t, { dataDir: h.dataDir, port: h.cp.address.port })
  p.clock.advance(625)
  await p.reached('connected', 2)
  t.same(p.changes.filter((c) => c.kind === 'replaced').length, 2, 'the reconnect brought a whole key set')
})

t.test('a control plane that sheds connections (HTTP 429 before the upgrade) ends the window: the delays grow', async (t) => {
  const h = await startTestControlPlane(t)
  const { p } = await steadyClient(t, h, () => 0.5)
  p.clock.advance(ESTABLISHED_SESSION_MS)
  const port = h.cp.address.port
  await h.cp.close()
  await p.reached('backoff')
  t.equal(p.lastDelay, 625, 'the window starts')
  // What the control plane's pre-authentication limits answer under load.
  const shedding = createServer()
  shedding.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'))
  await new Promise<void>((r) => shedding.listen(port, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => shedding.close(r)))
  const after: number[] = []
  for (let n = 2; n <= 4; n++) after.push(await failAgain(p, n).then(() => p.lastDelay as number))
  t.same(after, [750, 1_500, 3_000], 'backing off from resyncMaxMs, jittered (random 0.5: three quarters of each step)')
  t.match(p.logs.join(''), /Unexpected server response: 429/)
})

t.test('a session that drops before it was established starts no window and keeps the failure count', async (t) => {
  const h = await startTestControlPlane(t)
  const { p, client } = await steadyClient(t, h, () => 0.5)
  await h.cp.close()
  await p.reached('backoff')
  t.equal(p.lastDelay, MIN, 'as before: the first retry at the minimum')
  await failAgain(p, 2)
  t.equal(p.lastDelay, 375, 'then growing (500 · 0.75), not the window\'s 625')
  // A peer is ahead of the key set: the next attempt is made now, once reconnectMinMs has passed since the last.
  client.requestKeySet('billing:orders')
  t.equal(client.state, 'backoff', 'not sooner than reconnectMinMs after the last attempt')
  p.clock.advance(MIN)
  client.requestKeySet('billing:orders')
  t.equal(client.state, 'connecting', 'asked for the key set while in backoff: reconnects now')
  await p.reached('backoff', 3)
  t.match(p.logs.join(''), /a peer is ahead of this key set; reconnecting/)
})

t.test('the resync schedule in numbers', async (t) => {
  const p = { minMs: 250, maxMs: 30_000, resyncMaxMs: 1_000, resyncWindowMs: 30_000 }
  t.equal(resyncDelay(p, () => 0), 250)
  t.equal(resyncDelay(p, () => 1), 1_000)
  t.equal(resyncDelay({ ...p, maxMs: 600 }, () => 1), 600, 'never above the cap')
  t.equal(resyncDelay({ ...p, resyncMaxMs: 100 }, () => 1), 250, 'never below the minimum')
  t.equal(resyncDelay(p, () => Number.NaN), 625, 'a broken random source gives the middle')
  const spread = Array.from({ length: 200 }, (_, i) => resyncDelay(p, () => (i * 0.61803) % 1))
  t.ok(spread.every((d) => d >= 250 && d <= 1_000) && new Set(spread).size > 100, 'spread over the whole interval')
  t.equal(failuresAfterResync(p), 3, 'step 250 · 2^2 = 1000')
  t.equal(backoffDelay(failuresAfterResync(p), 250, 30_000, () => 1), 1_000)
  t.equal(failuresAfterResync({ ...p, resyncMaxMs: 100 }), 1)
  t.equal(failuresAfterResync({ ...p, resyncMaxMs: 1_001 }), 4, 'the first step at or above resyncMaxMs')
})

t.test('keyset.request: the control plane pushes what changed, and drops requests beyond its rate', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })).status, 201)
  const { p, client } = await steadyClient(t, h, () => 1)
  client.requestKeySet('billing:orders')
  t.match(p.logs.join(''), /asked the control plane for the key set/)
  const asked = (): number => h.logs.filter((l) => l.includes('agent asked for its key set')).length
  const dropped = (): number => h.logs.filter((l) => l.includes('key set request dropped: too many')).length
  await until(() => asked() === 1, 'the control plane to hear the request')
  for (let i = 0; i < 20; i++) client.requestKeySet('billing:orders')
  await until(() => asked() + dropped() === 21, 'the control plane to hear all 21')
  t.equal(asked(), 10, 'a burst of 10 is served')
  t.equal(dropped(), 11, 'the rest dropped')
  t.equal(client.state, 'connected', 'the session stays')
})

t.test('peer.up: an agent that connects is announced to the agents of its pairs that agreed to hear it', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })).status, 201)
  const { p } = await steadyClient(t, h, () => 1)
  // An agent that predates peer.up (the kit's FakeAgent names no features).
  const old = await peer(t, h, 'orders')
  const billing = new Probe()
  billing.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'billing', joinToken: await joinToken(h, 'billing') })
  await billing.reached('connected')
  const billingId = billing.welcomes[0]?.agentId as string
  await p.until(() => p.peerUps.length >= 1)
  t.same(p.peerUps, [['billing:orders', billingId]], 'orders heard that the billing agent connected')
  t.same(billing.peerUps, [], 'billing has not heard of orders: it connected before')
  await billing.client.close()
  const again = new Probe(billing.staticKey)
  again.enrolled = true
  again.start({ urls: [h.cp.url], cpKey: cpKeyOf(h), service: 'billing' })
  await again.reached('connected')
  await p.until(() => p.peerUps.length >= 2)
  t.same(p.peerUps[1], ['billing:orders', billingId], 'and again when it reconnects')
  t.notOk(old.messages.some((m) => m.type === 'peer.up'), 'an agent that did not agree gets none (nor has a pair)')
})

t.test('pair.peers: an agent that speaks it hears of a new peer as that change alone, and holds the peers a whole push would give', async (t) => {
  const h = await startTestControlPlane(t)
  t.equal((await h.api('POST', '/v1/intentions', { src: 'orders', dst: 'billing' })).status, 201)
  const { p } = await steadyClient(t, h, () => 1)
  const peersOf = (): string[] => (p.keyset.get('billing:orders')?.peers ?? []).map((x) => x.agentId).sort()
  const first = await peer(t, h, 'billing')
  await p.until(() => peersOf().length === 1)
  const second = await peer(t, h, 'billing')
  await p.until(() => peersOf().length === 2)
  t.same(peersOf(), [first.agentId, second.agentId].sort(), 'both billing agents')
  const change = p.changes.at(-1)
  t.equal(change?.kind, 'updated')
  // pair.update brings freshly decoded versions; pair.peers keeps the ones held.
  const previous = change?.kind === 'updated' ? change.previous : undefined
  t.equal(p.keyset.get('billing:orders')?.versions[0], previous?.versions[0], 'the second came as pair.peers: the versions held were kept')
})
