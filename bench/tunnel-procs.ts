// The benches' own child processes and how a bench stops: a keymesh agent started
// through the CLI exactly as a user would, free loopback ports, the few JSON requests
// a bench makes, and the hard stop. JSON-line children (the control plane, the echo,
// the relay halves) are the kit's (test/kit/child.ts); every child is tracked there,
// so that one call stops them all.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import { killAll, trackChild } from '../test/kit/child.js'
import { withTimeout } from '../test/kit/wait.js'

/** A loopback port that was free a moment ago (the OS picks it; a small race is accepted). */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * Makes a bench stop by itself: past `deadlineMs`, or on SIGINT/SIGTERM, every
 * child is killed, `cleanup` is given 5 s (dropping a database schema, say) and
 * `tmp` removed before the process exits.
 */
export function installHardStop(name: string, tmp: string, deadlineMs: number, cleanup?: () => Promise<void>): void {
  let stopping = false
  const stop = (code: number, why: string): void => {
    if (stopping) return
    stopping = true
    console.error(`\n${name}: ${why}; stopping`)
    killAll()
    void withTimeout(cleanup?.() ?? Promise.resolve(), 5_000, `${name} cleanup`)
      .catch((e: Error) => console.error(`${name}: ${e.message}`))
      .finally(() => {
        rmSync(tmp, { recursive: true, force: true })
        process.exit(code)
      })
  }
  setTimeout(() => stop(1, `did not finish within ${deadlineMs / 1000} s`), deadlineMs).unref()
  process.once('SIGINT', () => stop(130, 'interrupted'))
  process.once('SIGTERM', () => stop(143, 'terminated'))
}

/** A `keymesh agent` child, started through bin/keymesh.js; its log lines are kept (the last 50). */
export class AgentChild {
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  readonly log: string[] = []
  logLines = 0

  /** The agent's --state-dir, where it writes api.token for its local API. */
  readonly stateDir: string
  #apiToken: string | undefined

  /**
   * `nodeArgs` go to node before the script, e.g. ['--cpu-prof'] to see what limits the
   * agent. A `--join-token T` in `args` is passed as KEYMESH_JOIN_TOKEN instead, as an
   * operator would (argv is readable by every user); `--state-dir` is required. `env`
   * adds to this process's environment (libfaketime's, in `npm run faults`).
   */
  constructor(readonly name: string, readonly apiPort: number, bin: string, args: string[], nodeArgs: string[] = [], env: Readonly<Record<string, string>> = {}) {
    const rest = [...args]
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
    const at = rest.indexOf('--join-token')
    if (at >= 0) childEnv['KEYMESH_JOIN_TOKEN'] = rest.splice(at, 2)[1]
    const dir = rest[rest.indexOf('--state-dir') + 1]
    if (!rest.includes('--state-dir') || dir === undefined) throw new Error(`${name}: AgentChild needs --state-dir`)
    this.stateDir = dir
    this.proc = spawn(process.execPath, [...nodeArgs, bin, 'agent', ...rest], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv })
    this.exited = trackChild(this.proc)
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      createInterface({ input: stream as NodeJS.ReadableStream }).on('line', (line) => {
        this.logLines++
        this.log.push(line)
        if (this.log.length > 50) this.log.shift()
      })
    }
  }

  get pid(): number {
    return this.proc.pid as number
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** The bearer token of the agent's local API (STATE_DIR/api.token, written at its start); undefined until then. */
  apiToken(): string | undefined {
    if (this.#apiToken === undefined) {
      try {
        this.#apiToken = readFileSync(join(this.stateDir, 'api.token'), 'utf8').trim()
      } catch {
        return undefined
      }
    }
    return this.#apiToken
  }

  /** GET /v1/status of the agent's local API. */
  status(): Promise<AgentStatus> {
    return requestJson('GET', `http://127.0.0.1:${this.apiPort}/v1/status`, undefined, this.apiToken()) as Promise<AgentStatus>
  }

  /** SIGTERM (a graceful stop), then SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (!this.running) return
    this.proc.kill('SIGTERM')
    await withTimeout(this.exited, 10_000, `${this.name} shutdown`).catch(() => this.proc.kill('SIGKILL'))
  }
}

/** The parts of GET /v1/status the bench reads (issue 4, item 7). */
export interface AgentStatus {
  ready: boolean
  service: string
  pairs?: Array<{ pairId: string; peerService: string; currentVersion: number | null; peers?: number }>
  tunnels?: { open: number; inbound?: number; outbound?: number }
}

/** A JSON request without keep-alive (the bench's few admin and status calls). */
export function requestJson(method: string, url: string, body?: unknown, token?: string): Promise<unknown> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers: Record<string, string | number> = {}
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`
  if (payload !== undefined) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = Buffer.byteLength(payload)
  }
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const status = res.statusCode ?? 0
        if (status < 200 || status > 299) return reject(new Error(`${method} ${url} -> ${status} ${text.slice(0, 300)}`))
        try {
          resolve(text ? JSON.parse(text) : undefined)
        } catch (e) {
          reject(e as Error)
        }
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}

export const getJson = (url: string): Promise<unknown> => requestJson('GET', url)
