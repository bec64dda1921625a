// The child processes of bench/tunnel.bench.ts and what the bench reads about them:
// a JSON-line child (the relay halves, the control plane), a keymesh agent started
// through the CLI exactly as a user would, free loopback ports, and /proc figures
// (VmRSS, CPU seconds). Every child is tracked so that one call stops them all.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

const CLK_TCK = 100 // Linux USER_HZ, the unit of utime/stime in /proc/<pid>/stat

const children = new Set<ChildProcess>()

/** Rejects after `ms` with a message naming `what`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing in ${ms} ms`)), ms)
    }),
  ])
}

/** Thrown from a waitFor check to stop waiting at once (e.g. the child it waits for has exited). */
export class GiveUp extends Error {}

/** Polls `check` every `everyMs` until it returns a value other than undefined; errors other than GiveUp are retried. */
export async function waitFor<T>(what: string, ms: number, check: () => Promise<T | undefined> | T | undefined, everyMs = 50): Promise<T> {
  const until = performance.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (e) {
      if (e instanceof GiveUp) throw e
      last = e
    }
    if (performance.now() > until) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${(last as Error).message})` : ''}`)
    await sleep(everyMs)
  }
}

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

/** The soft limit on open files, from /proc/self/limits (Infinity when unlimited or unreadable). */
export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const soft = line?.split(/\s{2,}/)[1]
    return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft)
  } catch {
    return Infinity
  }
}

/** VmRSS of a process in bytes, from /proc/<pid>/status. */
export function rssOf(pid: number): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN) * 1024
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // After "pid (comm) ", field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** Starts a CPU meter over several processes; the result is % of one core each, by name. */
export function cpuMeter(pids: Record<string, number>): () => Record<string, number> {
  const t0 = performance.now()
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]))
  return () => {
    const wall = (performance.now() - t0) / 1000
    return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (100 * (cpuSeconds(pid) - (start[k] ?? 0))) / wall]))
  }
}

function track(proc: ChildProcess): Promise<number | null> {
  children.add(proc)
  return new Promise((resolve) => {
    proc.once('exit', (code) => {
      children.delete(proc)
      resolve(code)
    })
  })
}

/** SIGKILLs every child still running (the bench's last resort on a deadline or signal). */
export function killAll(): void {
  for (const c of children) c.kill('SIGKILL')
}

/**
 * Makes a bench stop by itself: past `deadlineMs`, or on SIGINT/SIGTERM, every
 * child is killed and `tmp` removed before the process exits.
 */
export function installHardStop(name: string, tmp: string, deadlineMs: number): void {
  const stop = (code: number, why: string): never => {
    console.error(`\n${name}: ${why}; stopping`)
    killAll()
    rmSync(tmp, { recursive: true, force: true })
    process.exit(code)
  }
  setTimeout(() => stop(1, `did not finish within ${deadlineMs / 1000} s`), deadlineMs).unref()
  process.once('SIGINT', () => stop(130, 'interrupted'))
  process.once('SIGTERM', () => stop(143, 'terminated'))
}

/** A child that prints one JSON line per request on stdout and exits when its stdin ends. */
export class JsonChild {
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  readonly #lines: string[] = []
  readonly #waiting: Array<(line: string) => void> = []

  constructor(readonly name: string, args: string[]) {
    this.proc = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
    this.exited = track(this.proc)
    createInterface({ input: this.proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const w = this.#waiting.shift()
      if (w) w(line)
      else this.#lines.push(line)
    })
  }

  get pid(): number {
    return this.proc.pid as number
  }

  async next<T>(): Promise<T> {
    const line = this.#lines.shift()
    if (line !== undefined) return JSON.parse(line) as T
    return JSON.parse(await withTimeout(new Promise<string>((resolve) => this.#waiting.push(resolve)), 30_000, this.name)) as T
  }

  async ask<T>(cmd: string): Promise<T> {
    this.proc.stdin?.write(cmd + '\n')
    return this.next<T>()
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    this.proc.stdin?.end()
    await withTimeout(this.exited, 20_000, `${this.name} shutdown`).catch(() => this.proc.kill('SIGKILL'))
  }
}

/** A `keymesh agent` child, started through bin/keymesh.js; its log lines are kept (the last 50). */
export class AgentChild {
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  readonly log: string[] = []
  logLines = 0

  /** `nodeArgs` go to node before the script, e.g. ['--cpu-prof'] to see what limits the agent. */
  constructor(readonly name: string, readonly apiPort: number, bin: string, args: string[], nodeArgs: string[] = []) {
    this.proc = spawn(process.execPath, [...nodeArgs, bin, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.exited = track(this.proc)
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

  /** GET /v1/status of the agent's local API. */
  status(): Promise<AgentStatus> {
    return getJson(`http://127.0.0.1:${this.apiPort}/v1/status`) as Promise<AgentStatus>
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
