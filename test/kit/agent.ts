// A real agent for tests, enrolled against a test control plane (kit/cp.ts):
// state in a temporary directory, every listener on 127.0.0.1 port 0, the control
// plane's fake clock (key validity times come from it), logs captured in memory.
// Also a toy service that checksums what it receives (the echo is echo.ts's).
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type Socket } from 'node:net'

import { startAgent, type Agent } from '../../agent/src/index.js'
import { DEFAULT_LIMITS, type AgentConfig, type AgentLimits, type HostPort } from '../../agent/src/index.js'
import type { TimerClock } from '../../platform/src/index.js'
import { parsePublicKey } from '../../protocol/src/index.js'
import type { TestControlPlane } from './cp.js'
import { startTcpService, type TcpService } from './echo.js'
import { captureLogger } from './logs.js'
import { until, WAIT_MS } from './wait.js'

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
}

export interface TestAgentOptions {
  readonly service: string
  readonly stateDir?: string
  /** Enrol with a fresh join token (default: when the state dir holds no enrollment). */
  readonly enroll?: boolean
  readonly expose?: HostPort
  readonly connect?: readonly string[]
  readonly tunnelPort?: number
  readonly api?: boolean
  readonly limits?: Partial<AgentLimits>
  readonly cpUrls?: readonly string[]
  /** How a TLS control plane is checked (--ca-file / --cp-fingerprint); default: the CA file of a `madeTls` control plane. */
  readonly cpTrust?: AgentConfig['cpTrust']
}

export interface TestAgent {
  readonly agent: Agent
  readonly stateDir: string
  readonly logs: string[]
  readonly config: AgentConfig
  /** With `api: true`: the token the agent wrote to STATE_DIR/api.token, which its TCP API requires. */
  readonly apiToken: string | undefined
  /** `{ authorization: 'Bearer …' }` for fetch() calls to the agent's API (empty without an API). */
  readonly apiHeaders: Record<string, string>
  /** CLI arguments that reach this agent's API: `--api HOST:PORT --state-dir DIR` (the token is read from DIR). */
  readonly apiArgs: string[]
}

/**
 * What startTestAgent needs of a control plane: a TestControlPlane, or a replica
 * in a child process (test/ha/replicas.ts) with the real clock.
 */
export interface AgentControlPlane {
  readonly cp: { readonly url: string }
  readonly clock: TimerClock
  readonly identityPub: string
  api: TestControlPlane['api']
  /** The CA file of a control plane serving TLS (TestControlPlane's `madeTls`). */
  readonly caFile?: string | undefined
}

export async function startTestAgent(t: Tap, h: AgentControlPlane, o: TestAgentOptions): Promise<TestAgent> {
  // Not t.testdir(): it returns one directory per test (and empties it on each call).
  let stateDir = o.stateDir
  if (stateDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), `keymesh-${o.service}-`))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    stateDir = dir
  }
  let joinToken: string | undefined
  if (o.enroll ?? o.stateDir === undefined) {
    const res = await h.api('POST', '/v1/join-tokens', { service: o.service })
    joinToken = res.body.token as string
  }
  const trust = o.cpTrust ?? (h.caFile === undefined ? undefined : { ca: readFileSync(h.caFile, 'utf8') })
  const config: AgentConfig = {
    cpUrls: o.cpUrls ?? [h.cp.url],
    cpKey: parsePublicKey(h.identityPub),
    ...(trust !== undefined ? { cpTrust: trust } : {}),
    service: o.service,
    ...(joinToken !== undefined ? { joinToken } : {}),
    stateDir,
    tunnelListen: { host: '127.0.0.1', port: o.tunnelPort ?? 0 },
    ...(o.expose ? { expose: o.expose } : {}),
    connect: (o.connect ?? []).map((peerService) => ({ peerService, host: '127.0.0.1', port: 0 })),
    ...(o.api ? { api: { host: '127.0.0.1', port: 0 } } : {}),
    logLevel: 'debug',
    limits: { ...DEFAULT_LIMITS, ...o.limits },
  }
  const { logger, logs } = captureLogger()
  const agent = await startAgent(config, { logger, clock: h.clock })
  t.teardown(() => agent.close())
  const apiToken = o.api ? readFileSync(join(stateDir, 'api.token'), 'utf8').trim() : undefined
  return {
    agent, stateDir, logs, config, apiToken,
    apiHeaders: apiToken === undefined ? {} : { authorization: `Bearer ${apiToken}` },
    apiArgs: agent.apiUrl === undefined ? [] : ['--api', agent.apiUrl.replace(/^http:\/\//, ''), '--state-dir', stateDir],
  }
}

export { echoServer } from './echo.js'

/** A TCP connection to the local end of `agent`'s --connect for `peer` (half-open allowed). */
export function dial(agent: Agent, peer: string): Promise<Socket> {
  const a = agent.connectAddress(peer)
  if (!a) throw new Error(`no --connect for ${peer}`)
  return new Promise((resolve, reject) => {
    const s = connect({ host: a.host, port: a.port, allowHalfOpen: true }, () => resolve(s))
    s.once('error', reject)
  })
}

export interface SinkResult {
  readonly bytes: number
  readonly sha256: string
}

/** Reads each connection to its end and reports its length and SHA-256. */
export async function sinkServer(t: Tap): Promise<TcpService & { next(): Promise<SinkResult> }> {
  const waiting: Array<(r: SinkResult) => void> = []
  const done: SinkResult[] = []
  const l = await startTcpService(t, (s) => {
    const hash = createHash('sha256')
    let bytes = 0
    s.on('data', (c: Buffer) => {
      bytes += c.length
      hash.update(c)
    })
    s.on('end', () => {
      const r = { bytes, sha256: hash.digest('hex') }
      s.end()
      const w = waiting.shift()
      if (w) w(r)
      else done.push(r)
    })
  })
  return Object.assign(l, {
    next: () => {
      const r = done.shift()
      return r ? Promise.resolve(r) : new Promise<SinkResult>((resolve) => waiting.push(resolve))
    },
  })
}

/**
 * Resolves when `pred` holds for `agent`, checked now and after each change of its
 * key set (a new session's first key set, a push): what a failover or a rotation
 * changes. The check runs a turn after the change, once the control client has
 * recorded its new state. Fails after `ms` of real time with the agent's status.
 */
export async function untilKeySet(agent: Agent, pred: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
  await until(pred, what, { ms, on: (wake) => agent.keyset.subscribe(wake), detail: () => `status ${JSON.stringify(agent.status())}` })
}
