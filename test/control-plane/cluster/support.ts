// Shared pieces of the cluster tests: a logger whose lines the test can read, a
// promise for the next matching bus event, and a TCP proxy in front of PostgreSQL
// that a test can cut and restore (a database outage without stopping the server)
// or stall (the connections open now go silent, as when a host vanishes).
import { randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'

import { createPgBus, type PgBus, type PgBusOptions } from '../../../control-plane/src/cluster/pg-bus.js'
import type { ChangeBus, ChangeEvent } from '../../../control-plane/src/events.js'
import type { PgLocation } from '../../../control-plane/src/store/pg-url.js'
import { TEST_PG_URL } from '../../kit/pg.js'

interface Tap {
  teardown(fn: () => unknown): void
}

export function captureLogger(): { logger: Logger; logs: string[] } {
  const logs: string[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk))
      cb()
    },
  })
  return { logger: pino({ level: 'debug' }, sink), logs }
}

/**
 * Keeps the process alive until teardown. The bus's and lease's retry timers are
 * unref'd (they must not hold a shutting-down process); a test awaiting a
 * reconnection with no socket open would otherwise end early.
 */
export function keepAlive(t: Tap): void {
  const timer = setInterval(() => {}, 60_000)
  t.teardown(() => clearInterval(timer))
}

/** Polls an asynchronous condition (a database query) until it holds. */
export async function eventually(pred: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
  }
}

/** The next event on `bus` matching `pred`. */
export function nextEvent(bus: ChangeBus, pred: (e: ChangeEvent) => boolean = () => true): Promise<ChangeEvent> {
  return new Promise((resolve) => {
    const off = bus.subscribe((e) => {
      if (!pred(e)) return
      off()
      resolve(e)
    })
  })
}

/** A started pg bus closed at teardown, with every event it emitted and its log lines; fast reconnections. */
export async function startBus(t: Tap, location: PgLocation, replicaId: string, extra: Partial<PgBusOptions> = {}) {
  const { logger, logs } = captureLogger()
  keepAlive(t)
  // Unique ids: other test files share the server, and tests find connections by name.
  const id = `${replicaId}-${randomBytes(4).toString('hex')}`
  const bus = createPgBus({ location, logger, replicaId: id, minBackoffMs: 5, maxBackoffMs: 40, ...extra })
  t.teardown(() => bus.close())
  await bus.start()
  const events: ChangeEvent[] = []
  bus.subscribe((e) => events.push(e))
  return { bus, logs, events, id }
}

/** Resolves once `to` has heard a marker published on `from` (notifications arrive in order: it orders what came before). */
export async function roundTrip(from: PgBus, to: PgBus, reason: string): Promise<void> {
  const heard = nextEvent(to, (e) => e.kind === 'services' && e.reason === reason)
  from.publish({ kind: 'services', services: [], reason })
  await heard
}

export interface PgProxy {
  /** `url` of the test server with host:port replaced by the proxy's. */
  readonly url: (url: string) => string
  /** Closes the listening socket and every connection through it (an outage). */
  cut(): Promise<void>
  /** Listens again on the same port. */
  restore(): Promise<void>
  /** Nothing passes either way on the connections open now, and nothing is closed; new ones work. */
  stall(): void
  /** The stalled connections pass traffic again, what was sent meanwhile first. */
  resume(): void
}

/** A TCP proxy on 127.0.0.1 to the test server, closed at teardown. */
export async function pgProxy(t: Tap): Promise<PgProxy> {
  const target = new URL(TEST_PG_URL)
  const sockets = new Set<Socket>()
  const pairs = new Set<[Socket, Socket]>()
  let stalled: Array<[Socket, Socket]> = []
  let server: Server | undefined
  let port = 0
  const listen = async (): Promise<void> => {
    const s = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname)
      for (const sock of [client, upstream]) {
        sockets.add(sock)
        sock.on('close', () => sockets.delete(sock))
        sock.on('error', () => {
          client.destroy()
          upstream.destroy()
        })
      }
      const pair: [Socket, Socket] = [client, upstream]
      pairs.add(pair)
      client.on('close', () => pairs.delete(pair))
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => resolve())
    })
    port = (s.address() as { port: number }).port
    server = s
  }
  const cut = async (): Promise<void> => {
    const s = server
    server = undefined
    for (const sock of sockets) sock.destroy()
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()))
  }
  await listen()
  t.teardown(cut)
  return {
    url: (url) => {
      const u = new URL(url)
      u.host = `127.0.0.1:${port}`
      return u.toString()
    },
    cut,
    restore: listen,
    stall() {
      stalled = [...pairs]
      for (const [client, upstream] of stalled) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
      }
    },
    resume() {
      for (const [client, upstream] of stalled.splice(0)) {
        client.pipe(upstream)
        upstream.pipe(client)
      }
    },
  }
}
