// A node child process that talks in JSON lines: it prints one JSON object a line
// on stdout (a greeting, answers to commands, events) and reads commands a line on
// stdin; ending its stdin asks it to stop. The control-plane child (cp-child.ts),
// the echo child (echo-child.ts) and the benches' relays all speak this. Every
// child is tracked, so a bench's hard stop can kill them all at once.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'

import { withTimeout } from './wait.js'

const children = new Set<ChildProcess>()

/** Counts `proc` among the children killAll() kills; resolves with its exit code. */
export function trackChild(proc: ChildProcess): Promise<number | null> {
  children.add(proc)
  return new Promise((resolve) => {
    proc.once('exit', (code) => {
      children.delete(proc)
      resolve(code)
    })
  })
}

/** SIGKILLs every tracked child still running (a bench's last resort on a deadline or signal). */
export function killAll(): void {
  for (const c of children) c.kill('SIGKILL')
}

/** The first line carrying `key`, or the first a predicate accepts, or (neither) the next line. */
export type LineMatch = string | ((m: Record<string, unknown>) => boolean)

export interface JsonChildOptions {
  readonly env?: NodeJS.ProcessEnv
  /** 'inherit' shows the child's stderr (a bench); 'capture' keeps it for error messages (default). */
  readonly stderr?: 'inherit' | 'capture'
  /** How long next() waits for a line (default 60 s: a busy machine starts node slowly). */
  readonly lineMs?: number
}

export class JsonChild {
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  readonly #lines: Array<Record<string, unknown>> = []
  readonly #waiting: Array<{ match: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }> = []
  readonly #lineMs: number
  #stderr = ''

  /** Runs `node ...args` (node flags, the script, its arguments). */
  constructor(readonly name: string, args: readonly string[], o: JsonChildOptions = {}) {
    this.#lineMs = o.lineMs ?? 60_000
    this.proc = spawn(process.execPath, args, { env: o.env ?? process.env, stdio: ['pipe', 'pipe', o.stderr === 'inherit' ? 'inherit' : 'pipe'] })
    this.exited = trackChild(this.proc)
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-20_000)
    })
    this.proc.stdin?.on('error', () => {}) // a child that died closes the pipe under a late write
    createInterface({ input: this.proc.stdout as NodeJS.ReadableStream }).on('line', (text) => {
      let m: Record<string, unknown>
      try {
        m = JSON.parse(text) as Record<string, unknown>
      } catch {
        return // not a protocol line
      }
      if (m === null || typeof m !== 'object') return
      const w = this.#waiting.findIndex((x) => x.match(m))
      if (w >= 0) this.#waiting.splice(w, 1)[0]?.resolve(m)
      else this.#lines.push(m)
    })
    void this.exited.then((code) => {
      for (const w of this.#waiting.splice(0)) w.reject(new Error(`${this.name} exited (${code ?? this.proc.signalCode}): ${this.#stderr.slice(-2000)}`))
    })
  }

  get pid(): number {
    return this.proc.pid as number
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** What the child wrote on stderr so far (the last 20,000 characters), when captured. */
  stderr(): string {
    return this.#stderr
  }

  /** The first line not yet taken that `match` accepts, already printed or to come. */
  next<T = Record<string, unknown>>(match?: LineMatch): Promise<T> {
    const accepts = match === undefined ? () => true : typeof match === 'string' ? (m: Record<string, unknown>) => match in m : match
    const i = this.#lines.findIndex(accepts)
    if (i >= 0) return Promise.resolve(this.#lines.splice(i, 1)[0] as T)
    if (!this.running) return Promise.reject(new Error(`${this.name} has exited: ${this.#stderr.slice(-2000)}`))
    return new Promise<T>((resolve, reject) => {
      const w = {
        match: accepts,
        resolve: (m: Record<string, unknown>) => {
          clearTimeout(timer)
          resolve(m as T)
        },
        reject: (e: Error) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(w), 1)
        reject(new Error(`${this.name}: no line${typeof match === 'string' ? ` with "${match}"` : ''} in ${this.#lineMs} ms; stderr: ${this.#stderr.slice(-2000)}`))
      }, this.#lineMs)
      this.#waiting.push(w)
    })
  }

  /** Sends `cmd` and resolves with the next line `match` accepts. */
  ask<T = Record<string, unknown>>(cmd: string, match?: LineMatch): Promise<T> {
    const answer = this.next<T>(match)
    this.proc.stdin?.write(cmd + '\n')
    return answer
  }

  /** Ends stdin (a graceful stop) and waits; SIGKILL after `ms`. */
  async stop(ms = 20_000): Promise<void> {
    if (!this.running) return
    this.proc.stdin?.end()
    await withTimeout(this.exited, ms, `${this.name} shutdown`).catch(() => this.kill())
  }

  /** SIGKILL, and resolves once the process is gone. */
  async kill(): Promise<void> {
    if (!this.running) return
    this.proc.kill('SIGKILL')
    await this.exited
  }
}
