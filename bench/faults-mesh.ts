// The processes `npm run faults` breaks: a control plane (test/kit/cp-child.ts) on a
// fixed loopback port and data directory, so that it can be killed and started again
// where the agents expect it, and two `keymesh agent` children (bench-client
// --connect, bench-server --expose) on fixed ports and state directories, likewise.
// Every start after the first goes without the join token: an enrolled agent needs none.
import { join } from 'node:path'

import { IDENTITY_PUB_FILE } from '../control-plane/src/index.js'
import { startChildControlPlane, type ChildControlPlane } from '../test/kit/cp.js'
import { GiveUp, until } from '../test/kit/wait.js'
import { AgentChild, freePort, requestJson, type AgentStatus } from './tunnel-procs.js'

export const CLIENT = 'bench-client'
export const SERVER = 'bench-server'

type Status = AgentStatus & { controlPlane?: { state: string } }

/** One agent that can be killed and started again on the same ports and state directory. */
export class RestartableAgent {
  child!: AgentChild
  /** More environment for the next start (libfaketime's, for the clock step). */
  env: Record<string, string> = {}
  #joinToken: string | undefined

  constructor(readonly name: string, readonly bin: string, readonly stateDir: string, readonly apiPort: number, readonly args: readonly string[], joinToken: string) {
    this.#joinToken = joinToken
  }

  start(): AgentChild {
    const join = this.#joinToken === undefined ? [] : ['--join-token', this.#joinToken]
    this.#joinToken = undefined
    this.child = new AgentChild(this.name, this.apiPort, this.bin, [...this.args, '--state-dir', this.stateDir, '--api', `127.0.0.1:${this.apiPort}`, '--log-level', 'warn', ...join], [], this.env)
    return this.child
  }

  async kill(): Promise<void> {
    if (!this.child.running) return
    this.child.proc.kill('SIGKILL')
    await this.child.exited
  }

  status(): Promise<Status> {
    return this.child.status() as Promise<Status>
  }

  /**
   * Resolves once it is ready and its control session is up; rejects at once if it
   * exits. The default deadline covers the agent's reconnect backoff (up to 30 s)
   * and a slow start on a busy machine.
   */
  async connected(ms = 90_000): Promise<void> {
    await until(async () => {
      if (!this.child.running) throw new GiveUp(`${this.name} exited (${this.child.proc.exitCode ?? this.child.proc.signalCode}): ${this.lastLog()}`)
      const s = await this.status()
      return s.ready && s.controlPlane?.state === 'connected' ? true : undefined
    }, `${this.name} connected`, { ms, everyMs: 100, retryErrors: true })
  }

  lastLog(n = 3): string {
    return this.child.log.slice(-n).join(' | ') || '(no log)'
  }
}

export interface Mesh {
  cp: ChildControlPlane
  readonly cpUrl: string
  readonly adminToken: string
  readonly A: RestartableAgent
  readonly B: RestartableAgent
  /** Where the service of bench-client connects (A's --connect listener). */
  readonly connectPort: number
  /** More environment for the control plane's next start (libfaketime's, for the clock step). */
  cpEnv: Record<string, string>
  /** Kills the control plane with SIGKILL (and waits until it is gone). */
  killCp(): Promise<void>
  /** Starts the control plane again on its port and data directory. */
  startCp(): Promise<void>
  stop(): Promise<void>
}

/**
 * The control plane on `dataDir`, the intention bench-client → bench-server, key
 * `key` that both services may encrypt and decrypt with, and both agents connected.
 */
export async function startMesh(here: string, tmp: string, dataDir: string, serverPort: number, key: string): Promise<Mesh> {
  const bin = join(here, '..', '..', 'bin', 'keymesh.js')
  const cpPort = await freePort()
  // A restart on a busy machine can take over a minute: node starting, the store's recovery.
  let cpEnv: Record<string, string> = {}
  const startCp = async (): Promise<ChildControlPlane> => startChildControlPlane({ dataDir, port: cpPort, lineMs: 180_000, env: cpEnv })
  let cp = await startCp()
  const cpUrl = cp.url
  const adminToken = cp.adminToken() as string
  await requestJson('POST', `${cpUrl}/v1/intentions`, { src: CLIENT, dst: SERVER }, adminToken)
  await requestJson('POST', `${cpUrl}/v1/keys`, { name: key, type: 'aead' }, adminToken)
  for (const service of [CLIENT, SERVER]) await requestJson('POST', `${cpUrl}/v1/keys/${key}/grants`, { service, rights: ['encrypt', 'decrypt'] }, adminToken)
  const joinToken = async (service: string): Promise<string> => ((await requestJson('POST', `${cpUrl}/v1/join-tokens`, { service }, adminToken)) as { token: string }).token
  const [apiA, apiB, tunnelA, tunnelB, connectPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  const common = (service: string, tunnel: number): string[] => ['--cp', cpUrl, '--cp-key-file', join(dataDir, IDENTITY_PUB_FILE), '--service', service, '--tunnel-listen', `127.0.0.1:${tunnel}`]
  const B = new RestartableAgent('agent B', bin, join(tmp, 'agent-b'), apiB, [...common(SERVER, tunnelB), '--expose', `127.0.0.1:${serverPort}`], await joinToken(SERVER))
  const A = new RestartableAgent('agent A', bin, join(tmp, 'agent-a'), apiA, [...common(CLIENT, tunnelA), '--connect', `${SERVER}=127.0.0.1:${connectPort}`], await joinToken(CLIENT))
  B.start()
  A.start()
  await Promise.all([A.connected(), B.connected()])
  const mesh: Mesh = {
    cp,
    cpUrl,
    adminToken,
    A,
    B,
    connectPort,
    get cpEnv() {
      return cpEnv
    },
    set cpEnv(env) {
      cpEnv = env
    },
    killCp: async () => {
      await mesh.cp.kill()
    },
    startCp: async () => {
      cp = await startCp()
      mesh.cp = cp
    },
    stop: async () => {
      await Promise.all([A.child.stop(), B.child.stop()])
      await mesh.cp.stop()
    },
  }
  return mesh
}
