// Two agents' tunnel layers in one process, without a control plane: agent A of
// service `orders` (connects to `billing`) and agent B of `billing` (exposes a toy
// TCP service). Key sets are built by hand and changed by the test (rotate, revoke,
// intentions); one FakeClock drives both. Logs and usage events are captured, and
// tests await them instead of sleeping.
import { EventEmitter, once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'

import { DEFAULT_LIMITS, type AgentConfig, type AgentLimits, type HostPort } from '../../agent/src/index.js'
import { KeySet, type PairEntry } from '../../agent/src/index.js'
import { startTunnelService, type TunnelDeps, type TunnelService } from '../../agent/src/index.js'
import { nodeSuite } from '../../protocol/src/index.js'
import type { KeyPair } from '../../protocol/src/index.js'
import type { UsageEvent } from '../../protocol/src/index.js'
import { TunnelSession, type TunnelContext } from '../../protocol/src/index.js'
import { formatPublicKey, newAgentId, pairId } from '../../protocol/src/index.js'
import { startTcpService, type TcpService } from './echo.js'
import { FakeClock, type FakeClockView } from './fake-clock.js'
import { tcpProxy } from './tcp-proxy.js'
import { until } from './wait.js'

export interface Tap {
  teardown(fn: () => unknown): void
}

export const SERVICE_A = 'orders'
export const SERVICE_B = 'billing'
export const PAIR_ID = pairId(SERVICE_A, SERVICE_B)
/** How long a test waits for a log line or usage event: far above any (tests move a fake clock; the rest is I/O on loopback). */
const CAPTURE_WAIT_MS = 60_000

/** Captured output of one agent. */
export class Capture extends EventEmitter {
  readonly logs: Array<Record<string, unknown>> = []
  readonly logText: string[] = []
  readonly usage: UsageEvent[] = []
  readonly logger: Logger

  constructor() {
    super()
    const sink = new Writable({
      write: (chunk, _enc, cb) => {
        const text = String(chunk)
        this.logText.push(text)
        this.logs.push(JSON.parse(text) as Record<string, unknown>)
        this.emit('change')
        cb()
      },
    })
    this.logger = pino({ level: 'debug' }, sink)
  }

  record = (e: UsageEvent): void => {
    this.usage.push(e)
    this.emit('change')
  }

  /** Resolves with the first usage event (already recorded or to come) matching `pred`. */
  usageEvent(pred: (e: UsageEvent) => boolean): Promise<UsageEvent> {
    return this.#first(() => this.usage.find(pred), 'a usage event')
  }

  logLine(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    return this.#first(() => this.logs.find(pred), 'a log line')
  }

  /** Resolves once `n` log lines match `pred`. */
  logCount(pred: (l: Record<string, unknown>) => boolean, n: number): Promise<void> {
    return this.#first(() => this.logs.filter(pred).length >= n, `${n} log lines`).then(() => undefined)
  }

  /** What `find` finds, checked now and after each new line or event (the records only grow). */
  #first<T>(find: () => T | undefined, what: string): Promise<Exclude<T, undefined | null | false>> {
    return until(find, what, {
      ms: CAPTURE_WAIT_MS,
      on: (wake) => {
        this.on('change', wake)
        return () => this.off('change', wake)
      },
    })
  }
}

export interface Side {
  readonly service: string
  readonly agentId: string
  readonly staticKey: KeyPair
  readonly keyset: KeySet
  readonly cap: Capture
  svc: TunnelService
}

export interface KeyVersionSpec {
  version: number
  key: Uint8Array
  state: 'current' | 'previous'
  notAfter: number | null
}

export { echo } from './echo.js'

export interface PairOptions {
  limits?: Partial<AgentLimits>
  /** What agent B's exposed service does with each connection (default: echo). */
  onUpstream?: (s: Socket) => void
  /** No exposed service on B. */
  noExpose?: boolean
  /** Override where A dials B (e.g. a tapping relay); default B's tunnel address. */
  endpoint?: (bAddress: HostPort) => Promise<string> | string
  /** Agent A's id as the tunnel layer sees it (undefined: not enrolled yet). */
  aAgentId?: () => string | undefined
  /** Agent A's random source (orders candidate peers). */
  random?: () => number
  /** Agent A's usage sink (default: captured). */
  usageA?: (e: UsageEvent) => void
  /** Agent B's way to ask for its key set (a control client's requestKeySet); without it B never holds a hello. */
  requestKeySetB?: (pairId: string) => void
  /** Agent A's control session as its registry sees it (ControlClient.epoch); default: always the same one up. */
  controlEpochA?: () => number | undefined
}

export class TunnelPair {
  /** The time line, and the control plane's wall clock (rotate() dates grace periods on it). */
  readonly clock = new FakeClock()
  /** Each agent's own wall clock on that time line (jump one to step it alone). */
  readonly clockA = this.clock.view()
  readonly clockB = this.clock.view()
  readonly limits: AgentLimits
  readonly a: Side
  readonly b: Side
  upstream!: TcpService
  endpoint = ''
  mayInitiate = true
  mayAccept = true
  /** Whether each side lists the other agent as a peer. */
  aListsB = true
  bListsA = true
  versions: KeyVersionSpec[] = [{ version: 1, key: nodeSuite.randomBytes(32), state: 'current', notAfter: null }]

  constructor(limits: Partial<AgentLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
    this.a = side(SERVICE_A, this.clockA)
    this.b = side(SERVICE_B, this.clockB)
  }

  /** Agent A's entry for the pair (fresh key buffers each call: the key set wipes old ones). */
  entryA(): PairEntry {
    return {
      pairId: PAIR_ID,
      peerService: SERVICE_B,
      mayInitiate: this.mayInitiate,
      mayAccept: false,
      versions: this.#versions(),
      peers: this.aListsB ? [{ agentId: this.b.agentId, staticKey: formatPublicKey(this.b.staticKey.publicKey), endpoint: this.endpoint }] : [],
    }
  }

  entryB(): PairEntry {
    return {
      pairId: PAIR_ID,
      peerService: SERVICE_A,
      mayInitiate: false,
      mayAccept: this.mayAccept,
      versions: this.#versions(),
      peers: this.bListsA ? [{ agentId: this.a.agentId, staticKey: formatPublicKey(this.a.staticKey.publicKey), endpoint: null }] : [],
    }
  }

  /** Pushes the current entries to both key sets (B first, as if B heard first). */
  push(): void {
    this.b.keyset.update(this.entryB())
    this.a.keyset.update(this.entryA())
  }

  /** A new current version; the old one stays usable for `graceMs`. */
  rotate(graceMs = 60 * 60 * 1000): number {
    const next = Math.max(...this.versions.map((v) => v.version)) + 1
    for (const v of this.versions) {
      if (v.state === 'current') {
        v.state = 'previous'
        v.notAfter = this.clock.now() + graceMs
      }
    }
    // At most 4 versions in an entry: drop the oldest previous.
    this.versions = [{ version: next, key: nodeSuite.randomBytes(32), state: 'current' as const, notAfter: null }, ...this.versions].slice(0, 4)
    this.push()
    return next
  }

  /** Connects a client to agent A's connect listener. */
  async client(): Promise<Socket> {
    const s = this.clientNow()
    await once(s, 'connect')
    return s
  }

  /** A client connection, not awaited: for connections the agent refuses at once. */
  clientNow(): Socket {
    const addr = this.a.svc.connectAddress(SERVICE_B) as HostPort
    const s = connect({ host: addr.host, port: addr.port, allowHalfOpen: true })
    // Tests that care how it ends add their own listeners; teardown resets must not go uncaught.
    s.on('error', () => {})
    return s
  }

  /** B's tunnel URL. */
  get bUrl(): string {
    const a = this.b.svc.tunnelAddress
    return `ws://${a.host}:${a.port}/v1/tunnel`
  }

  #versions(): PairEntry['versions'] {
    return this.versions.map((v) => ({ version: v.version, key: new Uint8Array(v.key), state: v.state, notAfter: v.notAfter }))
  }
}

function side(service: string, clock: FakeClockView): Side {
  const cap = new Capture()
  return {
    service,
    agentId: newAgentId(nodeSuite.randomBytes),
    staticKey: nodeSuite.x25519Generate(),
    keyset: new KeySet(clock),
    cap,
    svc: undefined as unknown as TunnelService,
  }
}

export function config(service: string, limits: AgentLimits, extra: Partial<AgentConfig>): AgentConfig {
  return {
    cpUrls: ['ws://127.0.0.1:1'],
    cpKey: new Uint8Array(32),
    service,
    stateDir: '/nonexistent',
    tunnelListen: { host: '127.0.0.1', port: 0 },
    connect: [],
    logLevel: 'debug',
    limits,
    ...extra,
  }
}

/** Starts agent B (exposing a toy service) and agent A (connect listener for billing), key sets filled in. */
export async function startTunnelPair(t: Tap, o: PairOptions = {}): Promise<TunnelPair> {
  const p = new TunnelPair(o.limits)
  p.upstream = await startTcpService(t, o.onUpstream)
  const deps = (s: Side, cfg: AgentConfig, extra: Partial<TunnelDeps> = {}): TunnelDeps => ({
    config: cfg,
    keyset: s.keyset,
    staticKey: s.staticKey,
    agentId: () => s.agentId,
    suite: nodeSuite,
    clock: s === p.a ? p.clockA : p.clockB,
    random: Math.random,
    logger: s.cap.logger,
    usage: { record: s.cap.record },
    ...extra,
  })
  const bExtra: Partial<TunnelDeps> = o.requestKeySetB ? { requestKeySet: o.requestKeySetB } : {}
  p.b.svc = await startTunnelService(deps(p.b, config(SERVICE_B, p.limits, o.noExpose ? {} : { expose: { host: '127.0.0.1', port: p.upstream.port } }), bExtra))
  t.teardown(() => p.b.svc.close())
  const aExtra: Partial<TunnelDeps> = {
    ...(o.aAgentId ? { agentId: o.aAgentId } : {}),
    ...(o.random ? { random: o.random } : {}),
    ...(o.usageA ? { usage: { record: o.usageA } } : {}),
    ...(o.controlEpochA ? { controlEpoch: o.controlEpochA } : {}),
  }
  p.a.svc = await startTunnelService(deps(p.a, config(SERVICE_A, p.limits, { connect: [{ peerService: SERVICE_B, host: '127.0.0.1', port: 0 }] }), aExtra))
  t.teardown(() => p.a.svc.close())
  p.endpoint = o.endpoint ? await o.endpoint(p.b.svc.tunnelAddress) : p.bUrl
  p.b.keyset.replace([p.entryB()], 'control-plane')
  p.a.keyset.replace([p.entryA()], 'control-plane')
  return p
}

/** Writes `data` respecting back-pressure, then ends (unless `end` is false). */
export async function writeAll(s: Socket, data: Buffer, chunk = 256 * 1024, end = true): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (!s.write(data.subarray(off, off + chunk))) await once(s, 'drain')
  }
  if (end) s.end()
}

/** Everything `s` delivers until its end; rejects on error or a close without end. */
export function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let ended = false
    s.on('data', (d: Buffer) => parts.push(d))
    s.on('end', () => {
      ended = true
      resolve(Buffer.concat(parts))
    })
    s.on('error', reject)
    s.on('close', () => {
      if (!ended) reject(new Error('closed without end'))
    })
  })
}

/** How a socket ended: 'end' (clean FIN), or the error code (ECONNRESET...). */
export function outcome(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    s.on('data', () => {})
    s.once('end', () => resolve('end'))
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
    s.once('close', () => resolve('close'))
  })
}

/** A good tunnel still works: a short echo round trip. */
export async function echoWorks(p: TunnelPair, payload = Buffer.from('still serving')): Promise<boolean> {
  const c = await p.client()
  const got = readAll(c)
  c.end(payload)
  try {
    return (await got).equals(payload)
  } catch {
    return false
  }
}

/** A TCP relay that records every byte each way (the kit's proxy); `cut()` drops every connection abruptly. */
export interface TcpTap {
  readonly port: number
  /** Bytes from the dialing side (client → server) and back. */
  readonly up: Buffer[]
  readonly down: Buffer[]
  cut(): void
}

export async function startTcpTap(t: Tap, target: () => HostPort): Promise<TcpTap> {
  const proxy = await tcpProxy(t, target, { record: true })
  return { port: proxy.port, up: proxy.up, down: proxy.down, cut: () => proxy.reset() }
}

/**
 * A genuine first message (hello: preamble and KK message 1) from agent A to agent B,
 * as a fresh initiator would send it, with a fresh ephemeral key each call; `context`
 * overrides fields of the preamble.
 */
export function helloOf(p: TunnelPair, context: Partial<TunnelContext> = {}): Uint8Array {
  let first: Uint8Array | undefined
  const session = new TunnelSession({
    suite: nodeSuite,
    staticKey: p.a.staticKey,
    role: 'initiator',
    context: { pairId: PAIR_ID, keyVersion: 1, fromService: SERVICE_A, toService: SERVICE_B, fromAgent: p.a.agentId, ...context },
    keys: { psk: p.versions[0]?.key as Uint8Array, remoteStatic: p.b.staticKey.publicKey },
    send: (bytes) => {
      first ??= bytes
    },
    handler: { onOpen: () => {}, onData: () => {}, onEnd: () => {}, onRekeyed: () => {}, onError: () => {} },
  })
  session.start()
  session.destroy()
  return first as Uint8Array
}
