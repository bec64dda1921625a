// The steady, rate-limited load of bench/soak.bench.ts: not how fast keymesh goes, but
// the same work for an hour, each answer checked, so that memory that grows is growth
// and not a burst.
//   KmsLoad     encrypt and decrypt through the agents' local APIs at a fixed rate (the
//               calls alternate; a decrypt opens an earlier ciphertext, from either agent,
//               and must give back its plaintext), at most `maxInFlight` at once: a tick
//               that finds them all busy skips its calls and counts them
//   TunnelLoad  `streams` long-lived echo connections through the tunnel, each sending a
//               chunk every `everyMs` and checking what comes back byte for byte, plus a
//               new short connection every `newEveryMs` (open, echo, close); a long-lived
//               one that breaks is counted and opened again
//   Rotations   POST /v1/pairs/:a/:b/rotate every `everyMs`
// Every failure is counted by its first words (an error code when there is one).
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'

import { requestJson } from './tunnel-procs.js'

const ECHO = 0x45 // 'E': the LoadServer's echo mode (bench/tunnel-load.ts)

/** Failures by kind: an error code when the message carries one, else its first words. */
export class Failures {
  readonly byKind = new Map<string, number>()
  total = 0

  add(e: unknown): void {
    const text = e instanceof Error ? e.message : String(e)
    const kind = /[A-Z]+_ERR_[A-Z0-9_]+/.exec(text)?.[0] ?? text.split(/\s+/).slice(0, 5).join(' ')
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1)
    this.total++
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.byKind)
  }

  toString(): string {
    return [...this.byKind].map(([k, n]) => `${k} ×${n}`).join(', ') || 'none'
  }
}

export interface KmsTarget {
  readonly port: number
  readonly token: string
}

interface Sealed {
  readonly ciphertext: string
  readonly plaintext: string
  readonly context: Record<string, string>
}

/** Encrypt and decrypt at `rate` calls a second over `targets`, round-robin; every answer checked. */
export class KmsLoad {
  readonly counts = { encrypt: 0, decrypt: 0, skipped: 0, wrongPlaintext: 0 }
  readonly failures = new Failures()
  readonly #plaintexts = Array.from({ length: 64 }, () => randomBytes(1024).toString('base64'))
  readonly #sealed: Sealed[] = []
  readonly #agents: http.Agent[]
  readonly #idle = new Set<Promise<void>>()
  #timer: NodeJS.Timeout | undefined
  #issued = 0
  #started = 0

  constructor(readonly targets: readonly KmsTarget[], readonly key: string, readonly rate: number, readonly maxInFlight = 32) {
    this.#agents = targets.map(() => new http.Agent({ keepAlive: true, maxSockets: maxInFlight }))
  }

  start(): void {
    this.#started = Date.now()
    // Ten ticks a second: each issues the calls due since the start, so the rate holds
    // whatever a tick's own delay.
    this.#timer = setInterval(() => this.#tick(), 100)
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await Promise.allSettled([...this.#idle])
    for (const a of this.#agents) a.destroy()
  }

  #tick(): void {
    const due = Math.floor(((Date.now() - this.#started) / 1000) * this.rate)
    while (this.#issued < due) {
      const n = this.#issued++
      if (this.#idle.size >= this.maxInFlight) {
        this.counts.skipped++
        continue
      }
      const call = this.#call(n).catch((e: unknown) => this.failures.add(e))
      this.#idle.add(call)
      void call.finally(() => this.#idle.delete(call))
    }
  }

  async #call(n: number): Promise<void> {
    const t = n % this.targets.length
    const target = this.targets[t] as KmsTarget
    const agent = this.#agents[t] as http.Agent
    const old = this.#sealed.length > 0 && n % 2 === 1 ? this.#sealed[(n >> 1) % this.#sealed.length] : undefined
    if (old === undefined) {
      const plaintext = this.#plaintexts[n % this.#plaintexts.length] as string
      const context = { soak: String(n % 8) }
      const r = (await post(agent, target, '/v1/encrypt', { key: this.key, plaintext, context })) as { ciphertext: string }
      this.counts.encrypt++
      // A ring of the last 256 ciphertexts: decrypts open recent and less recent ones.
      if (this.#sealed.length < 256) this.#sealed.push({ ciphertext: r.ciphertext, plaintext, context })
      else this.#sealed[n % 256] = { ciphertext: r.ciphertext, plaintext, context }
      return
    }
    const r = (await post(agent, target, '/v1/decrypt', { ciphertext: old.ciphertext, context: old.context })) as { plaintext: string }
    this.counts.decrypt++
    if (r.plaintext !== old.plaintext) this.counts.wrongPlaintext++
  }
}

/**
 * POSTs `body` as JSON and resolves with the parsed 200 answer. A request that finds
 * its kept-alive socket already closed by the server (the server's idle timeout won
 * the race with the reuse) is sent again once on a fresh socket, as Node's docs
 * advise: that reset is the client's, not the agent's failure.
 */
function post(agent: http.Agent, target: KmsTarget, path: string, body: unknown, retried = false): Promise<unknown> {
  const payload = Buffer.from(JSON.stringify(body))
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1', port: target.port, path, method: 'POST', agent, timeout: 30_000,
        headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode !== 200) return reject(new Error(`${path} -> ${res.statusCode} ${text.slice(0, 200)}`))
          try {
            resolve(JSON.parse(text))
          } catch (e) {
            reject(e as Error)
          }
        })
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer in 30 s`)))
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (req.reusedSocket && e.code === 'ECONNRESET' && !retried) resolve(post(agent, target, path, body, true))
      else reject(e)
    })
    req.end(payload)
  })
}

/** An echo connection through the tunnel that checks every byte it gets back. */
class EchoStream {
  readonly socket: net.Socket
  readonly closed: Promise<void>
  #expect: Buffer[] = []
  #pending: { want: number; resolve: () => void; reject: (e: Error) => void } | undefined
  #got = 0
  #mismatch = false

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.setNoDelay(true)
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()))
    this.socket.on('error', () => this.socket.destroy())
    this.socket.on('data', (d: Buffer) => this.#onData(d))
    this.socket.once('close', () => this.#pending?.reject(new Error(`tunnel closed after ${this.#got} of ${this.#pending.want} echoed bytes`)))
    this.socket.write(Buffer.from([ECHO]))
  }

  #onData(d: Buffer): void {
    let at = 0
    while (at < d.length) {
      const head = this.#expect[0]
      if (head === undefined) {
        this.#mismatch = true
        break
      }
      const n = Math.min(head.length, d.length - at)
      if (!d.subarray(at, at + n).equals(head.subarray(0, n))) this.#mismatch = true
      if (n === head.length) this.#expect.shift()
      else this.#expect[0] = head.subarray(n)
      at += n
    }
    this.#got += d.length
    const p = this.#pending
    if (p && this.#got >= p.want) {
      this.#pending = undefined
      if (this.#mismatch) p.reject(new Error('echo came back different'))
      else p.resolve()
    }
  }

  /** Sends `chunk` and resolves once it has come back intact. */
  roundTrip(chunk: Buffer, ms = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined
        reject(new Error(`echo: no answer in ${ms / 1000} s`))
      }, ms)
      const done = (e?: Error): void => {
        clearTimeout(timer)
        if (e) reject(e)
        else resolve()
      }
      this.#got = 0
      this.#expect.push(chunk)
      this.#pending = { want: chunk.length, resolve: () => done(), reject: done }
      this.socket.write(chunk)
    })
  }

  end(): Promise<void> {
    this.socket.end()
    // A path that never closes its end must not stall the load.
    return Promise.race([this.closed, new Promise<void>((r) => setTimeout(r, 5_000).unref())]).then(() => void this.socket.destroy())
  }
}

export interface TunnelLoadOptions {
  /** Where the connecting agent listens for its service (--connect). */
  readonly port: number
  readonly streams: number
  readonly chunkBytes: number
  readonly everyMs: number
  readonly newEveryMs: number
}

/** Long-lived echo streams and short new connections through one tunnel path, each byte checked. */
export class TunnelLoad {
  readonly counts = { roundTrips: 0, bytes: 0, newConnections: 0, reopened: 0, wrongEcho: 0 }
  readonly failures = new Failures()
  #stopped = false
  readonly #loops: Promise<void>[] = []
  readonly #chunks: Buffer[]

  constructor(readonly o: TunnelLoadOptions) {
    this.#chunks = Array.from({ length: 8 }, () => randomBytes(o.chunkBytes))
  }

  start(): void {
    for (let i = 0; i < this.o.streams; i++) this.#loops.push(this.#stream(i))
    this.#loops.push(this.#churn())
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#loops)
  }

  #wait(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms))
  }

  #fail(e: unknown): void {
    if ((e as Error).message === 'echo came back different') this.counts.wrongEcho++
    this.failures.add(e)
  }

  async #stream(i: number): Promise<void> {
    let s = new EchoStream(this.o.port)
    let n = 0
    while (!this.#stopped) {
      const chunk = this.#chunks[(i + n++) % this.#chunks.length] as Buffer
      try {
        await s.roundTrip(chunk)
        this.counts.roundTrips++
        this.counts.bytes += chunk.length
      } catch (e) {
        this.#fail(e)
        s.socket.destroy()
        await this.#wait(1_000)
        s = new EchoStream(this.o.port)
        this.counts.reopened++
        continue
      }
      await this.#wait(this.o.everyMs)
    }
    await s.end()
  }

  async #churn(): Promise<void> {
    let n = 0
    while (!this.#stopped) {
      const s = new EchoStream(this.o.port)
      try {
        await s.roundTrip((this.#chunks[n++ % this.#chunks.length] as Buffer).subarray(0, 1024))
        this.counts.newConnections++
        await s.end()
      } catch (e) {
        this.#fail(e)
        s.socket.destroy()
      }
      await this.#wait(this.o.newEveryMs)
    }
  }
}

/** A pair-key rotation every `everyMs` through the admin API. */
export class Rotations {
  done = 0
  readonly failures = new Failures()
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> = Promise.resolve()

  constructor(readonly cpUrl: string, readonly token: string, readonly a: string, readonly b: string, readonly everyMs: number) {}

  start(): void {
    this.#timer = setInterval(() => {
      this.#running = requestJson('POST', `${this.cpUrl}/v1/pairs/${this.a}/${this.b}/rotate`, undefined, this.token).then(
        () => void this.done++,
        (e: unknown) => this.failures.add(e),
      )
    }, this.everyMs)
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#running
  }
}
