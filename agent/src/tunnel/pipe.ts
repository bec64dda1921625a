// The byte-moving half of a tunnel: records out to the WebSocket, plaintext in to
// the local TCP socket, with back-pressure both ways. tunnel.ts owns the session,
// the lifecycle and the reporting; this file owns the sockets' data paths.
//
// Contract:
//   - No unbounded buffering. Bytes handed to ws.send and not yet written out are
//     counted; above `highWater` the local socket is paused until they fall to half
//     of it. When the local socket's write buffer is full, the WebSocket is paused
//     until 'drain' (ws may still emit what it has already parsed: that is bounded).
//   - Before the local socket can take data (responder: upstream still connecting)
//     delivered data is held, the WebSocket paused, and flushed on connect.
//   - Batching, without timers: the records of one local read go out in one writev
//     (the transport is corked around them), and the plaintext of one transport
//     read goes to the local socket in one write (the local socket is corked around
//     ws's 'data' listener).
//   - Records follow the reads: a read that filled Node's 64 KiB read buffer tells the
//     session more is coming (it keeps the bytes past the last full record for the
//     next one); once the reads of this turn of the event loop are done (setImmediate,
//     at most one pending per pipe) whatever is kept is flushed. A 64 KiB stream thus
//     goes out in full records, not in a full record and a 26-byte one per read.
//   - Hot path: no promises, no copies, no closure per record: records handed to ws
//     wait in a FIFO, and one callback per pipe (ws calls it once per record, in the
//     order written) takes the oldest off, counts it written and hands its wire buffer
//     back to record.ts's pool.
import { connect, type Socket } from 'node:net'
import type { WebSocket } from 'ws'

import { MAX_RECORD_PAYLOAD, recycleRecord } from '../../../protocol/src/index.js'
import type { HostPort } from '../config.js'

/** What the pipe tells its tunnel about the local socket. */
export interface PipeOwner {
  /**
   * One read from the local socket. With `more` (the read filled the buffer) the
   * buffer is the owner's to keep until flushLocal(); without it, it is valid only
   * during the call.
   */
  fromLocal(chunk: Buffer, more: boolean): void
  /** The reads of this turn are done: send what fromLocal kept. */
  flushLocal(): void
  /** The local side ended its direction (FIN). */
  localEnded(): void
  /** Our end() towards the local side is flushed. */
  localFinished(): void
  /** The local socket failed, or closed without a clean end both ways. */
  localFailed(): void
}

const SEND_OPTIONS = { binary: true } as const

export class Pipe {
  readonly #ws: WebSocket
  readonly #owner: PipeOwner
  readonly #highWater: number
  readonly #lowWater: number
  #transport: Socket | undefined
  #socket: Socket | undefined
  /** Records sent before the WebSocket opened (initiator's message 1). */
  #queue: Uint8Array[] | undefined
  /** Bytes handed to ws.send whose write has not completed. */
  #inflight = 0
  /** Those records, oldest first, from #sentAt on (a FIFO that is compacted when drained). */
  #sentRecords: Uint8Array[] = []
  #sentAt = 0
  /** The local socket is paused because #inflight passed the high-water mark. */
  #sourcePaused = false
  /** Reading from the local socket may start (the tunnel is open). */
  #reading = false
  #wsPaused = false
  /** The local socket takes writes (accepted, or upstream connected). */
  #writable = false
  #held: Uint8Array[] | undefined
  #heldBytes = 0
  #heldEnd = false
  #corked = false
  #finished = false
  #released = false
  #flushPending = false

  constructor(ws: WebSocket, highWater: number, owner: PipeOwner) {
    this.#ws = ws
    this.#owner = owner
    this.#highWater = highWater
    this.#lowWater = Math.floor(highWater / 2)
  }

  get finished(): boolean {
    return this.#finished
  }

  /** Bytes held in memory: sent and not yet written, held for the local side, its write buffer. */
  get bufferedBytes(): number {
    return this.#inflight + this.#heldBytes + (this.#socket?.writableLength ?? 0)
  }

  /** Until flushQueue(), sent records are queued (the WebSocket is still connecting). */
  queueSends(): void {
    this.#queue = []
  }

  flushQueue(): void {
    const q = this.#queue
    this.#queue = undefined
    if (q) for (const bytes of q) this.send(bytes)
  }

  /** Batches writes around the reads of the WebSocket's TCP socket (see header). */
  setTransport(transport: Socket | undefined): void {
    this.#transport = transport
    transport?.prependListener('data', this.#batchStart)
    transport?.on('data', this.#batchEnd)
  }

  /** An accepted local connection (paused until startReading()). */
  attach(socket: Socket): void {
    this.#writable = true
    this.#listen(socket)
    socket.on('data', this.#onData)
  }

  /** Connects to the exposed service; until it answers, delivered data is held. */
  connectUpstream(target: HostPort): void {
    this.#held = []
    this.#pauseWs()
    const socket = connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      onread: { buffer: UPSTREAM_READ_BUFFER, callback: this.#onRead },
    })
    this.#listen(socket)
    socket.once('connect', this.#onConnect)
  }

  /** The tunnel is open: local reads may flow. */
  startReading(): void {
    this.#reading = true
    if (!this.#sourcePaused) this.#socket?.resume()
  }

  /** One record towards the peer (the session's `send`): the hot path out. */
  send = (bytes: Uint8Array): void => {
    if (this.#queue !== undefined) {
      this.#queue.push(bytes)
      return
    }
    // Counted once ws has taken it (its callback never runs before send returns): a send
    // that throws leaves no entry behind to misalign the FIFO.
    this.#ws.send(bytes, SEND_OPTIONS, this.#written)
    this.#inflight += bytes.length
    this.#sentRecords.push(bytes)
    if (this.#inflight > this.#highWater && !this.#sourcePaused) {
      this.#sourcePaused = true
      this.#socket?.pause()
    }
  }

  /** Plaintext from the peer (the session's `onData`): the hot path in. */
  deliver = (data: Uint8Array): void => {
    if (this.#writable) {
      if (!(this.#socket as Socket).write(data)) this.#pauseWs()
      return
    }
    if (this.#held === undefined) return
    this.#held.push(data)
    this.#heldBytes += data.length
  }

  /** The peer ended its direction cleanly: FIN towards the local side. */
  endLocal(): void {
    if (this.#writable) this.#socket?.end()
    else this.#heldEnd = true
  }

  /** Resets the local socket (RST: the local side sees a failure, never a clean end). */
  reset(): void {
    const s = this.#socket
    if (s === undefined || s.destroyed) return
    // A socket still connecting would connect and then reset (Node 20): the local
    // service would see a connection for a tunnel that already failed.
    if (s.connecting) return void s.destroy()
    try {
      s.resetAndDestroy()
    } catch {
      s.destroy()
    }
  }

  /**
   * Initiator, before the tunnel opened (nothing read yet): hands the local socket
   * back, without this pipe's listeners, for another attempt (tunnel.ts `retry`).
   */
  detachLocal(): Socket | undefined {
    const s = this.#socket
    if (s === undefined || this.#reading) return undefined
    this.#socket = undefined
    this.#writable = false
    s.off('data', this.#onData)
    s.off('end', this.#onEnd)
    s.off('finish', this.#onFinish)
    s.off('drain', this.#onDrain)
    s.off('error', this.#onError)
    s.off('close', this.#onClose)
    return s
  }

  /** Stops batching, drops held data, lets the WebSocket read (its close frame). */
  release(): void {
    if (this.#released) return
    this.#released = true
    this.#transport?.off('data', this.#batchStart)
    this.#transport?.off('data', this.#batchEnd)
    this.#batchEnd()
    this.#held = undefined
    this.#heldBytes = 0
    this.#resumeWs()
  }

  #listen(socket: Socket): void {
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('end', this.#onEnd)
    socket.on('finish', this.#onFinish)
    socket.on('drain', this.#onDrain)
    socket.on('error', this.#onError)
    socket.on('close', this.#onClose)
  }

  // Reads of an accepted socket are fresh buffers of up to 64 KiB: one that is full
  // says more is coming, and its tail waits (see header). A read that still makes
  // several records has the transport corked around them: one writev.
  #onData = (chunk: Buffer): void => {
    const more = chunk.length >= FULL_READ
    const transport = chunk.length > MAX_RECORD_PAYLOAD ? this.#transport : undefined
    transport?.cork()
    try {
      this.#owner.fromLocal(chunk, more)
    } finally {
      transport?.uncork()
    }
    if (more && !this.#flushPending) {
      this.#flushPending = true
      setImmediate(this.#flushLocal)
    }
  }

  #flushLocal = (): void => {
    this.#flushPending = false
    if (!this.#released) this.#owner.flushLocal()
  }

  // Upstream reads land in the shared buffer, one record's payload at most: each is
  // sealed at once (the buffer is reused), never kept.
  #onRead = (n: number, buf: Uint8Array): boolean => {
    this.#owner.fromLocal((buf as Buffer).subarray(0, n), false)
    return true // keep reading; back-pressure pauses the socket explicitly
  }

  #onConnect = (): void => {
    if (this.#released) return
    const socket = this.#socket as Socket
    this.#writable = true
    const held = this.#held ?? []
    this.#held = undefined
    this.#heldBytes = 0
    let ok = true
    for (const chunk of held) ok = socket.write(chunk)
    if (this.#heldEnd) socket.end()
    if (ok) this.#resumeWs()
  }

  // ws's write callback, once per record and in the order sent (a socket completes its
  // writes in order). A record whose write failed is not reused: ws may not be done with it.
  #written = (err?: Error): void => {
    const bytes = this.#sentRecords[this.#sentAt] as Uint8Array
    if (++this.#sentAt === this.#sentRecords.length) {
      this.#sentRecords.length = 0
      this.#sentAt = 0
    } else if (this.#sentAt >= 64 && this.#sentAt * 2 >= this.#sentRecords.length) {
      // A stream that never drains: drop the written half so the FIFO stays bounded.
      this.#sentRecords.splice(0, this.#sentAt)
      this.#sentAt = 0
    }
    if (!err) recycleRecord(bytes)
    this.#inflight -= bytes.length
    if (this.#sourcePaused && this.#inflight <= this.#lowWater) {
      this.#sourcePaused = false
      if (this.#reading && !this.#released) this.#socket?.resume()
    }
  }

  #batchStart = (): void => {
    const s = this.#socket
    if (this.#writable && s !== undefined && !this.#corked) {
      this.#corked = true
      s.cork()
    }
  }

  #batchEnd = (): void => {
    if (!this.#corked) return
    this.#corked = false
    this.#socket?.uncork()
  }

  #onEnd = (): void => this.#owner.localEnded()

  #onFinish = (): void => {
    this.#finished = true
    this.#owner.localFinished()
  }

  #onDrain = (): void => {
    if (!this.#released) this.#resumeWs()
  }

  #onError = (): void => this.#owner.localFailed()

  // After 'end' and 'finish' the tunnel has finished; any other close is a failure
  // (the owner ignores it once the tunnel is done).
  #onClose = (): void => this.#owner.localFailed()

  #pauseWs(): void {
    if (this.#wsPaused) return
    this.#wsPaused = true
    this.#ws.pause()
  }

  #resumeWs(): void {
    if (!this.#wsPaused) return
    this.#wsPaused = false
    this.#ws.resume()
  }
}

/** The size of Node's reads from a stream socket (libuv suggests 64 KiB): a read this long filled it. */
const FULL_READ = 64 * 1024

/**
 * One read buffer for every upstream connection, one record's payload long: each
 * read becomes exactly one record, and no read allocates. Sharing is safe because
 * the callback seals the bytes (a copy into the record) before it returns, and
 * reads of different sockets never interleave within one callback.
 */
const UPSTREAM_READ_BUFFER = Buffer.allocUnsafe(MAX_RECORD_PAYLOAD)
