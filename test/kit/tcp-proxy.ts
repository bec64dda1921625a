// The one TCP proxy of the kit, on 127.0.0.1 in front of any server (a control
// plane, the test PostgreSQL): a test takes the network away in the ways a real
// one fails, without touching the server other tests share.
//   cut / restore  an outage: every connection closed, new ones refused, until restored
//   stall / resume the connections open now go silent both ways (nothing closed);
//                  new ones work; resumed, what was sent meanwhile passes first
//   freeze         a peer whose host lost power or whose process is SIGSTOPped (its
//                  kernel still accepts connections): every connection, now and
//                  later, silent for good and never closed by the proxy; what clients
//                  send is read and dropped, so the proxy sees when one gives up
//   staleAll       a silent network drop: the upstream side is gone, and each open
//                  connection dies at the client's next byte
//   reset          every open connection reset (RST) both ways; new ones work
// With `record`, it also keeps every byte that passed each way (a tap on the wire).
import { connect, createServer, type Server, type Socket } from 'node:net'

interface Tap {
  teardown(fn: () => unknown): void
}

export interface TcpProxy {
  readonly port: number
  /** `http://127.0.0.1:PORT`, a base URL for an agent's --cp. */
  readonly url: string
  /** `url` (a postgres:// store URL, say) with its host and port replaced by the proxy's. */
  via(url: string): string
  /** Client connections accepted so far. */
  readonly accepted: number
  /** Client connections closed so far. */
  readonly clientsClosed: number
  /** Stops listening and closes every connection: the server is down. */
  cut(): Promise<void>
  /** Listens again, on the same port. */
  restore(): Promise<void>
  /** Nothing passes either way on the connections open now, and nothing is closed; new ones work. */
  stall(): void
  /** The stalled connections pass traffic again, what was sent meanwhile first. */
  resume(): void
  /** All traffic stops, both ways, on every connection now and later; the proxy closes nothing. */
  freeze(): void
  /** Every open connection dies at the client's next byte, as after a silent network drop. */
  staleAll(): void
  /** Every open connection closed abruptly (RST) on both sides; the proxy goes on listening. */
  reset(): void
  /** With `record`: the bytes from the clients (client → server) and back, chunk by chunk. */
  readonly up: Buffer[]
  readonly down: Buffer[]
}

export interface TcpProxyOptions {
  /** Starts frozen: a server that accepts and says nothing. */
  readonly frozen?: boolean
  /** Keep every byte that passes (up, down). */
  readonly record?: boolean
}

type Target = { readonly host: string; readonly port: number }

interface Pair {
  readonly client: Socket
  readonly upstream: Socket
  mode: 'live' | 'stalled' | 'frozen' | 'stale'
}

/** A proxy to `target` (or where `target()` says, asked per connection), closed at teardown. */
export async function tcpProxy(t: Tap, target: Target | (() => Target), o: TcpProxyOptions = {}): Promise<TcpProxy> {
  const up: Buffer[] = []
  const down: Buffer[] = []
  const sockets = new Set<Socket>()
  const pairs = new Set<Pair>()
  let frozen = o.frozen ?? false
  let accepted = 0
  let clientsClosed = 0
  let server: Server | undefined
  let port = 0
  const track = (s: Socket): void => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {}) // a reset shows as 'close', which decides
  }
  const onClient = (client: Socket): void => {
    accepted++
    track(client)
    client.on('close', () => clientsClosed++)
    if (frozen) return void client.resume()
    const to = typeof target === 'function' ? target() : target
    const upstream = connect(to.port, to.host)
    track(upstream)
    if (o.record) {
      client.on('data', (d: Buffer) => up.push(d))
      upstream.on('data', (d: Buffer) => down.push(d))
    }
    const pair: Pair = { client, upstream, mode: 'live' }
    pairs.add(pair)
    client.on('close', () => {
      pairs.delete(pair)
      if (pair.mode !== 'frozen') upstream.destroy()
    })
    upstream.on('close', () => pair.mode === 'frozen' || pair.mode === 'stale' || client.destroy())
    client.pipe(upstream)
    upstream.pipe(client)
  }
  const unpipe = (p: Pair): void => {
    p.client.unpipe(p.upstream)
    p.upstream.unpipe(p.client)
  }
  const listen = async (): Promise<void> => {
    const s = createServer(onClient)
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject)
        resolve()
      })
    })
    port = (s.address() as { port: number }).port
    server = s
  }
  const cut = async (): Promise<void> => {
    const s = server
    server = undefined
    for (const sock of sockets) sock.destroy()
    pairs.clear()
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()))
  }
  await listen()
  t.teardown(cut)
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    via(url) {
      const u = new URL(url)
      u.host = `127.0.0.1:${port}`
      return u.toString()
    },
    get accepted() {
      return accepted
    },
    get clientsClosed() {
      return clientsClosed
    },
    cut,
    restore: listen,
    stall() {
      for (const p of pairs) {
        if (p.mode !== 'live') continue
        p.mode = 'stalled'
        unpipe(p)
        p.client.pause()
        p.upstream.pause()
      }
    },
    resume() {
      for (const p of pairs) {
        if (p.mode !== 'stalled') continue
        p.mode = 'live'
        p.client.pipe(p.upstream)
        p.upstream.pipe(p.client)
      }
    },
    freeze() {
      frozen = true
      for (const p of pairs) {
        p.mode = 'frozen'
        unpipe(p)
        p.upstream.pause()
        p.client.resume() // read and dropped: no listener, no pipe
      }
    },
    reset() {
      for (const p of pairs) {
        p.client.resetAndDestroy()
        p.upstream.resetAndDestroy()
      }
    },
    up,
    down,
    staleAll() {
      for (const p of pairs) {
        p.mode = 'stale'
        unpipe(p)
        p.upstream.destroy()
        p.client.once('data', () => p.client.destroy()).resume()
      }
    },
  }
}
