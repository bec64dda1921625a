// The paths bench/tunnel.bench.ts measures, each client -> [A] -> [B] -> server:
// raw TCP (no A or B), the plaintext relay pair (bench/tunnel-relay.ts, two children),
// stunnel (bench/tunnel-stunnel.ts) and the keymesh tunnel (a control plane child and
// two `keymesh agent` children started through the CLI, services bench-client ->
// bench-server). Given a Redis port, each also carries a second route to it
// (`redisPort`): raw TCP is Redis itself, the relay a second pair, keymesh a third
// agent (bench-redis) that agent A also connects to.
import { join } from 'node:path'

import { IDENTITY_PUB_FILE } from '../control-plane/src/index.js'
import { JsonChild } from '../test/kit/child.js'
import { startChildControlPlane, type ChildControlPlane, type ChildControlPlaneOptions } from '../test/kit/cp.js'
import { GiveUp, until } from '../test/kit/wait.js'
import { AgentChild, freePort, requestJson, type AgentStatus } from './tunnel-procs.js'
import { openEcho } from './tunnel-load.js'

export interface Path {
  readonly name: string
  /** Where the client connects. */
  readonly port: number
  /** The processes between client and server, by role ('A', 'B'). */
  readonly hops: Record<string, number>
  /** Where a client reaches Redis through the same kind of path (when one was asked for). */
  readonly redisPort?: number
  /** Connections each hop holds open now (undefined for raw TCP). */
  open?(): Promise<Record<string, number>>
  stop(): Promise<void>
}

export const CLIENT_SERVICE = 'bench-client'
export const SERVER_SERVICE = 'bench-server'
export const REDIS_SERVICE = 'bench-redis'

export function rawPath(serverPort: number, redisPort?: number): Path {
  return { name: 'raw TCP', port: serverPort, ...(redisPort !== undefined ? { redisPort } : {}), hops: {}, stop: async () => undefined }
}

async function relayPair(script: string, target: number): Promise<{ a: JsonChild; b: JsonChild; port: number }> {
  const b = new JsonChild('relay B', [script, 'b', `127.0.0.1:${target}`], { stderr: 'inherit' })
  const { port: bPort } = await b.next<{ port: number }>()
  const a = new JsonChild('relay A', [script, 'a', `ws://127.0.0.1:${bPort}`], { stderr: 'inherit' })
  const { port } = await a.next<{ port: number }>()
  return { a, b, port }
}

export async function relayPath(here: string, serverPort: number, redisTarget?: number): Promise<Path> {
  const script = join(here, 'tunnel-relay.js')
  const { a, b, port } = await relayPair(script, serverPort)
  const redis = redisTarget === undefined ? undefined : await relayPair(script, redisTarget)
  const count = async (c: JsonChild): Promise<number> => (await c.ask<{ stats: { open: number } }>('stats')).stats.open
  return {
    name: 'plaintext relay',
    port,
    ...(redis ? { redisPort: redis.port } : {}),
    hops: { A: a.pid, B: b.pid },
    open: async () => ({ A: await count(a), B: await count(b) }),
    stop: async () => {
      await Promise.all([a.stop(), b.stop(), redis?.a.stop(), redis?.b.stop()])
    },
  }
}

export interface KeymeshPath extends Path {
  readonly agents: { A: AgentChild; B: AgentChild }
  readonly cp: ChildControlPlane
  /** The control plane's base URL and admin token, and each agent's tunnel listener port. */
  readonly cpUrl: string
  readonly adminToken: string
  readonly tunnelPorts: { A: number; B: number }
}

/**
 * A control plane on a fresh data dir, the intention bench-client -> bench-server,
 * and two enrolled agents; resolves once a byte has been echoed through the tunnel.
 * `cpOptions` go to the control-plane child (a short pair grace for the soak, say).
 * On failure, everything it started is stopped and the error names the agents' last
 * log lines.
 */
export async function keymeshPath(
  here: string,
  tmp: string,
  serverPort: number,
  logLevel: string,
  nodeArgs: string[] = [],
  redisTarget?: number,
  o: { name?: string; bin?: string; cp?: Omit<ChildControlPlaneOptions, 'dataDir'> } = {},
): Promise<KeymeshPath> {
  const bin = o.bin ?? join(here, '..', '..', 'bin', 'keymesh.js')
  const cpOptions = o.cp ?? {}
  const dataDir = join(tmp, 'cp')
  const cp = await startChildControlPlane({ dataDir, stderr: 'inherit', ...cpOptions })
  const started: Array<{ stop(): Promise<void> }> = [cp]
  try {
    const url = cp.url
    const token = cp.adminToken() as string
    const keyFile = join(dataDir, IDENTITY_PUB_FILE)
    await requestJson('POST', `${url}/v1/intentions`, { src: CLIENT_SERVICE, dst: SERVER_SERVICE }, token)
    if (redisTarget !== undefined) await requestJson('POST', `${url}/v1/intentions`, { src: CLIENT_SERVICE, dst: REDIS_SERVICE }, token)
    const join_ = async (service: string): Promise<string> => ((await requestJson('POST', `${url}/v1/join-tokens`, { service }, token)) as { token: string }).token
    const [tokenA, tokenB] = [await join_(CLIENT_SERVICE), await join_(SERVER_SERVICE)]
    const [tunnelA, tunnelB, apiA, apiB, connectA] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
    const redisConnect = redisTarget === undefined ? undefined : await freePort()
    const common = (service: string, joinToken: string, tunnel: number, api: number, dir: string): string[] => [
      '--cp', url, '--cp-key-file', keyFile, '--service', service, '--join-token', joinToken,
      '--state-dir', join(tmp, dir), '--tunnel-listen', `127.0.0.1:${tunnel}`, '--api', `127.0.0.1:${api}`, '--log-level', logLevel,
    ]
    const B = new AgentChild('agent B', apiB, bin, [...common(SERVER_SERVICE, tokenB, tunnelB, apiB, 'agent-b'), '--expose', `127.0.0.1:${serverPort}`], nodeArgs)
    started.push(B)
    let R: AgentChild | undefined
    if (redisTarget !== undefined) {
      const [tunnelR, apiR] = [await freePort(), await freePort()]
      R = new AgentChild('agent R', apiR, bin, [...common(REDIS_SERVICE, await join_(REDIS_SERVICE), tunnelR, apiR, 'agent-r'), '--expose', `127.0.0.1:${redisTarget}`], nodeArgs)
      started.push(R)
    }
    const redisArgs = redisConnect === undefined ? [] : ['--connect', `${REDIS_SERVICE}=127.0.0.1:${redisConnect}`]
    const A = new AgentChild('agent A', apiA, bin, [...common(CLIENT_SERVICE, tokenA, tunnelA, apiA, 'agent-a'), '--connect', `${SERVER_SERVICE}=127.0.0.1:${connectA}`, ...redisArgs], nodeArgs)
    started.push(A)
    const holdsPair = (s: AgentStatus, peer: string, peers: number): boolean =>
      s.ready && (s.pairs ?? []).some((p) => p.peerService === peer && p.currentVersion !== null && (p.peers ?? peers) >= peers)
    await until(async () => {
      for (const a of [A, B, R]) if (a && !a.running) throw new GiveUp(`${a.name} exited (${a.proc.exitCode ?? a.proc.signalCode}): ${a.log.slice(-5).join(' | ')}`)
      const a = await A.status()
      const redisReady = R === undefined || (holdsPair(a, REDIS_SERVICE, 1) && holdsPair(await R.status(), CLIENT_SERVICE, 0))
      return holdsPair(a, SERVER_SERVICE, 1) && holdsPair(await B.status(), CLIENT_SERVICE, 0) && redisReady ? true : undefined
    }, 'the agents ready, holding the bench pair keys', { ms: 90_000, everyMs: 100, retryErrors: true })
    // The first tunnel may race the peer's endpoint reaching agent A: retry briefly.
    const probe = await until(() => {
      for (const a of [A, B]) if (!a.running) throw new GiveUp(`${a.name} exited (${a.proc.exitCode ?? a.proc.signalCode})`)
      return openEcho(connectA)
    }, 'a byte echoed through the tunnel', { ms: 15_000, everyMs: 200, retryErrors: true })
    probe.destroy()
    const open = async (): Promise<Record<string, number>> => ({ A: (await A.status()).tunnels?.open ?? NaN, B: (await B.status()).tunnels?.open ?? NaN })
    return {
      name: o.name ?? 'keymesh tunnel',
      port: connectA,
      ...(redisConnect !== undefined ? { redisPort: redisConnect } : {}),
      hops: { A: A.pid, B: B.pid },
      agents: { A, B },
      cp,
      cpUrl: url,
      adminToken: token,
      tunnelPorts: { A: tunnelA, B: tunnelB },
      open,
      stop: async () => {
        await Promise.all([A.stop(), B.stop(), R?.stop()])
        await cp.stop()
      },
    }
  } catch (e) {
    const logs = started.filter((c): c is AgentChild => c instanceof AgentChild).map((a) => `\n  ${a.name} log (last lines): ${a.log.slice(-8).join('\n    ') || '(none)'}`)
    await Promise.all(started.slice(1).map((c) => c.stop()))
    await cp.stop()
    throw new Error(`${(e as Error).message}${logs.join('')}`)
  }
}
