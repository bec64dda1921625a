// The load generator and the server of bench/tunnel.bench.ts. One generator drives
// every path (raw TCP, the plaintext relay pair, the keymesh tunnel), so the raw
// TCP figures show its own ceiling.
//
// The server is one TCP listener, because an agent exposes one address: the first
// byte of each connection picks its mode. 'S' = sink (counts every byte after it:
// throughput client -> server), 'D' = source (writes as fast as back-pressure allows
// until the connection closes: throughput server -> client), 'E' = echo (sends every
// byte after it back, with back-pressure).
//
// A stream read costs Node a fresh buffer per read; that made the generator, not the
// path, the limit of raw TCP here. So the client reads 'D' streams with `onread` into
// one reused buffer, and the server writes one constant buffer: server -> client is
// the direction in which the generator takes least CPU from the hops.
import net from 'node:net'
import { performance } from 'node:perf_hooks'

const SINK = 0x53 // 'S'
const ECHO = 0x45 // 'E'
const SOURCE = 0x44 // 'D'
const CHUNK = Buffer.alloc(256 * 1024, 0xa5)

export class LoadServer {
  /** Bytes received by sink connections since start. */
  sinkBytes = 0
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()

  constructor() {
    this.#server = net.createServer((socket) => this.#accept(socket))
  }

  get open(): number {
    return this.#sockets.size
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve))
    return (this.#server.address() as net.AddressInfo).port
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('close', () => this.#sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    const echo = (d: Buffer): void => {
      if (d.length > 0 && !socket.write(d)) {
        socket.pause()
        socket.once('drain', () => socket.resume())
      }
    }
    socket.once('data', (first: Buffer) => {
      if (first[0] === SINK) {
        this.sinkBytes += first.length - 1
        socket.on('data', (d: Buffer) => {
          this.sinkBytes += d.length
        })
      } else if (first[0] === SOURCE) {
        const pump = (): void => {
          while (!socket.destroyed && socket.writable) {
            if (!socket.write(CHUNK)) {
              socket.once('drain', pump)
              return
            }
          }
        }
        pump()
      } else if (first[0] === ECHO) {
        echo(first.subarray(1))
        socket.on('data', echo)
      } else {
        socket.destroy()
      }
    })
  }

  /** Destroys every connection (after a path failed, so the next one starts clean). */
  dropAll(): void {
    for (const s of this.#sockets) s.destroy()
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

function connect(port: number, onread?: (n: number) => void): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const callback = (n: number): boolean => {
      onread?.(n)
      return true
    }
    const socket = onread
      ? net.connect({ port, host: '127.0.0.1', onread: { buffer: Buffer.allocUnsafe(CHUNK.length), callback } })
      : net.connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      socket.on('error', () => socket.destroy())
      resolve(socket)
    })
  })
}

/** Resolves when `n` more bytes have arrived on `socket` (rejects if it closes first). */
function readBytes(socket: net.Socket, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0
    const onData = (d: Buffer): void => {
      got += d.length
      if (got >= n) {
        cleanup()
        resolve()
      }
    }
    const onClose = (): void => {
      cleanup()
      reject(new Error(`connection closed after ${got} of ${n} bytes`))
    }
    const cleanup = (): void => {
      socket.off('data', onData)
      socket.off('close', onClose)
    }
    socket.on('data', onData)
    socket.once('close', onClose)
  })
}

/** Opens an echo connection and sees one byte come back: the path works end to end. */
export async function openEcho(port: number): Promise<net.Socket> {
  const socket = await connect(port)
  try {
    const back = readBytes(socket, 1)
    socket.write(Buffer.from([ECHO, 0x78]))
    await back
    return socket
  } catch (e) {
    socket.destroy()
    throw e
  }
}

export type Direction = 'up' | 'down'

/**
 * `streams` connections carrying bulk data, 'up' (client -> server) or 'down' (server
 * -> client), as fast as back-pressure allows; the rate is the bytes received during
 * `measureMs`, after `warmMs`. `window` is started with the counted window and ended
 * with it (a CPU meter, say); what it ends with is returned as `window`. Every stream
 * is closed before this returns.
 */
export async function throughput<W = undefined>(
  port: number,
  server: LoadServer,
  dir: Direction,
  streams: number,
  warmMs: number,
  measureMs: number,
  window?: () => () => W,
): Promise<{ gbps: number; bytes: number; secs: number; window: W | undefined }> {
  let downBytes = 0
  const received = (): number => (dir === 'up' ? server.sinkBytes : downBytes)
  const sockets = await Promise.all(Array.from({ length: streams }, () => connect(port, dir === 'down' ? (n) => (downBytes += n) : undefined)))
  let stopped = false
  for (const s of sockets) {
    s.write(Buffer.from([dir === 'up' ? SINK : SOURCE]))
    if (dir === 'down') continue
    const pump = (): void => {
      while (!stopped && !s.destroyed) {
        if (!s.write(CHUNK)) {
          s.once('drain', pump)
          return
        }
      }
    }
    pump()
  }
  await new Promise((r) => setTimeout(r, warmMs))
  const end = window?.()
  const b0 = received()
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, measureMs))
  const bytes = received() - b0
  const secs = (performance.now() - t0) / 1000
  const w = end?.()
  stopped = true
  for (const s of sockets) s.destroy()
  return { gbps: (bytes * 8) / secs / 1e9, bytes, secs, window: w }
}

/** Round-trip times (ms, sorted) of `size`-byte request/response pairs on one echo connection. */
export async function roundTrips(port: number, size: number, warm: number, n: number): Promise<number[]> {
  const socket = await openEcho(port)
  const req = Buffer.alloc(size, 0x61)
  const out: number[] = []
  try {
    for (let i = 0; i < warm + n; i++) {
      const t = performance.now()
      const back = readBytes(socket, size)
      socket.write(req)
      await back
      if (i >= warm) out.push(performance.now() - t)
    }
  } finally {
    socket.destroy()
  }
  return out.sort((a, b) => a - b)
}

/**
 * New-connection times (ms, sorted): connect through the path and see the first byte
 * echoed. One at a time; each is closed (and seen closed) before the next opens.
 */
export async function newConnections(port: number, warm: number, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < warm + n; i++) {
    const t = performance.now()
    const socket = await openEcho(port)
    if (i >= warm) out.push(performance.now() - t)
    const closed = new Promise((r) => socket.once('close', r))
    socket.end()
    // A path that never closes its end must not stall the run; it is counted as closed.
    await Promise.race([closed, new Promise((r) => setTimeout(r, 2_000).unref())])
    socket.destroy()
  }
  return out.sort((a, b) => a - b)
}

/** Opens `n` echo connections, `conc` at a time, each proven end to end, and leaves them idle. */
export async function openIdle(port: number, n: number, conc: number): Promise<net.Socket[]> {
  const out: net.Socket[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++
      out.push(await openEcho(port))
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(conc, n) }, worker))
  } catch (e) {
    for (const s of out) s.destroy()
    throw e
  }
  return out
}
