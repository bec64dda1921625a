// Length-prefixed streams through a tunnel, for `npm run faults`: does a stream cut
// by a crash ever look complete to the side that reads it?
//
// A service that reads "end of stream" as "request complete" accepts truncated data if
// a crash ends its connection with a FIN. An honest end is a reset (ECONNRESET), or the
// whole length. So both ends here read a 4-byte length first and then judge how the
// stream ended:
//   upload   client → 'U' len bytes…; the server answers 'K' once it has all of them.
//            The server judges: all bytes, a reset, or a FIN short of the length
//            (truncated, accepted as complete by a naive service: the failure counted)
//   download client → 'D' len; the server sends len bytes, then ends. The client
//            judges the same way.
// The senders pace their chunks (CHUNK every PACE_MS), so a stream lasts about a
// second and a kill always finds some in flight.
import net from 'node:net'

const CHUNK = 8 * 1024
const PACE_MS = 20
const HEADER = 5

export interface StreamCounts {
  /** Streams that started (the first byte went out). */
  started: number
  /** Every byte arrived and the reader saw the end it expected. */
  complete: number
  /** The reader saw a reset or an error: an honest end of a cut stream. */
  reset: number
  /**
   * Of `reset`: Node reported 'end', but the kernel had the reset (a write then fails at
   * once). libuv reports a reset that came while bytes were unread as end-of-file
   * (docs/operations.md); a naive Node service would take these for complete.
   */
  resetReadAsEnd: number
  /** The reader saw a clean end (FIN) short of the announced length: a truncated stream a naive service accepts. */
  truncatedAccepted: number
  /** No connection to the tunnel (the agent down), or it ended before the first byte (the tunnel refused). */
  refused: number
}

const zero = (): StreamCounts => ({ started: 0, complete: 0, reset: 0, resetReadAsEnd: 0, truncatedAccepted: 0, refused: 0 })

/** One byte written after an end short of the length, to ask the kernel how the stream ended. */
const PROBE = Buffer.from([0])

/** Paces `len` bytes onto `socket`; resolves when written or the socket is gone. */
async function sendPaced(socket: net.Socket, len: number, stopped: () => boolean = () => false): Promise<void> {
  const chunk = Buffer.alloc(CHUNK, 0x5a)
  let left = len
  while (left > 0 && !socket.destroyed && socket.writable && !stopped()) {
    const n = Math.min(CHUNK, left)
    socket.write(chunk.subarray(0, n))
    left -= n
    await new Promise((r) => setTimeout(r, PACE_MS))
  }
}

/** Reads the header from `first`, then counts the rest; calls `judge` once with how the stream ended. */
type End = 'complete' | 'reset' | 'reset-read-as-end' | 'truncated'

/**
 * Reads a stream of `expect` bytes (undefined: a header first announces the length),
 * and calls `judge` once with how it ended and how many bytes came after the header.
 */
function readStream(socket: net.Socket, expect: number | undefined, judge: (how: End, got: number) => void, onHeader?: (h: Buffer) => void): void {
  let header: Buffer | undefined = expect === undefined ? Buffer.alloc(0) : undefined
  let want = expect ?? -1
  let got = 0
  let judged = false
  const once = (how: End): void => {
    if (judged) return
    judged = true
    judge(how, got)
  }
  socket.on('data', (d: Buffer) => {
    if (header !== undefined && want < 0) {
      header = Buffer.concat([header, d])
      if (header.length < HEADER) return
      want = header.readUInt32BE(1)
      d = header.subarray(HEADER)
      header = header.subarray(0, HEADER)
      onHeader?.(header)
    }
    got += d.length
    if (got >= want && want >= 0) once('complete')
  })
  socket.on('error', () => once('reset'))
  socket.on('end', () => {
    if (want >= 0 && got >= want) return once('complete')
    // libuv reports a reset that arrived while bytes were still unread as end-of-file
    // (docs/operations.md). The kernel knows: after a reset a write fails at once; after
    // a FIN (even a dead process's, whose kernel resets only what comes later) it is taken.
    if (socket.destroyed || !socket.writable) return once('truncated')
    socket.write(PROBE, (err) => once(err ? 'reset-read-as-end' : 'truncated'))
  })
  socket.on('close', (hadError) => {
    if (hadError) once('reset')
  })
}

/** The service behind the exposing agent: judges uploads, serves downloads. */
export class StreamServer {
  readonly uploads = zero()
  readonly #server = net.createServer((s) => this.#accept(s))
  readonly #sockets = new Set<net.Socket>()

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve))
    return (this.#server.address() as net.AddressInfo).port
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => this.#sockets.delete(socket))
    let kind: 'U' | 'D' | undefined
    readStream(
      socket,
      undefined,
      (how) => {
        if (kind !== 'U') return
        if (how === 'complete') {
          this.uploads.complete++
          socket.end('K')
        } else if (how === 'reset') this.uploads.reset++
        else if (how === 'reset-read-as-end') (this.uploads.reset++, this.uploads.resetReadAsEnd++)
        else this.uploads.truncatedAccepted++
        if (how !== 'complete') socket.destroy()
      },
      (h) => {
        kind = h[0] === 0x55 ? 'U' : 'D'
        if (kind === 'U') this.uploads.started++
        else void sendPaced(socket, h.readUInt32BE(1)).then(() => socket.end())
      },
    )
    // A download's request carries no body: the reader's "complete" comes at once.
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

/** Uploads and downloads through the tunnel, `each` at a time in each direction, until stopped. */
export class StreamLoad {
  readonly downloads = zero()
  /** Uploads as the client saw them: 'complete' means it got the server's 'K'. */
  readonly uploadsSent = zero()
  #stopped = false
  readonly #loops: Promise<void>[] = []

  constructor(readonly port: number, readonly each = 3, readonly len = 512 * 1024) {}

  start(): void {
    for (let i = 0; i < this.each; i++) this.#loops.push(this.#loop('U'), this.#loop('D'))
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#loops)
  }

  async #loop(kind: 'U' | 'D'): Promise<void> {
    while (!this.#stopped) {
      const ok = await this.#one(kind)
      if (!ok) await new Promise((r) => setTimeout(r, 200))
    }
  }

  /** One stream; false when it was refused (so the loop backs off a little). */
  #one(kind: 'U' | 'D'): Promise<boolean> {
    const c = kind === 'U' ? this.uploadsSent : this.downloads
    return new Promise((resolve) => {
      const socket = net.connect(this.port, '127.0.0.1')
      const header = Buffer.alloc(HEADER)
      header[0] = kind.charCodeAt(0)
      header.writeUInt32BE(this.len, 1)
      let connected = false
      const finish = (r: boolean): void => {
        socket.destroy()
        resolve(r)
      }
      socket.once('connect', () => {
        connected = true
        c.started++
        socket.write(header)
        if (kind === 'U') {
          void sendPaced(socket, this.len)
          // The client of an upload waits for the server's 'K': anything else is an honest failure.
          let acked = false
          socket.on('data', (d) => {
            if (d.includes(0x4b)) acked = true
          })
          socket.on('error', () => {})
          socket.once('close', () => {
            if (acked) c.complete++
            else c.reset++
            finish(true)
          })
          return
        }
        readStream(socket, this.len, (how, got) => {
          if (how === 'complete') c.complete++
          // Ended before the first byte: the tunnel was refused, nothing was cut.
          else if (got === 0) c.refused++
          else if (how === 'reset') c.reset++
          else if (how === 'reset-read-as-end') (c.reset++, c.resetReadAsEnd++)
          else c.truncatedAccepted++
          finish(true)
        })
      })
      socket.once('error', () => {
        if (!connected) {
          c.refused++
          finish(false)
        }
      })
    })
  }
}
