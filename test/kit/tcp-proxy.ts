// A TCP proxy on 127.0.0.1 that a test can freeze: from then on nothing passes in
// either direction and nothing is closed, and new connections are accepted and
// never answered. That is what a peer looks like whose host lost power, whose
// network is partitioned, or whose process was stopped with SIGSTOP (its kernel
// still accepts connections into the backlog): no reset, only silence. While
// frozen, what clients send is read and dropped (so the proxy notices when a
// client gives up), and an upstream that closes is not passed on.
import { connect, createServer, type Socket } from 'node:net'

interface Tap {
  teardown(fn: () => unknown): void
}

export interface FreezableProxy {
  /** `http://127.0.0.1:PORT`, a base URL for an agent's --cp. */
  readonly url: string
  /** Client connections accepted so far. */
  readonly accepted: number
  /** Client connections closed so far (by the client: the proxy never closes one). */
  readonly clientsClosed: number
  /** Stops all traffic, both ways, on every connection now and later; closes nothing. */
  freeze(): void
}

/** A proxy to `target`; `frozen` starts it frozen (a server that accepts and says nothing). */
export async function freezableProxy(t: Tap, target: { host: string; port: number }, o: { frozen?: boolean } = {}): Promise<FreezableProxy> {
  const sockets = new Set<Socket>()
  const pairs: Array<[Socket, Socket]> = []
  let frozen = o.frozen ?? false
  let accepted = 0
  let clientsClosed = 0
  const track = (s: Socket): void => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
  }
  const server = createServer((client) => {
    accepted++
    track(client)
    client.on('close', () => clientsClosed++)
    if (frozen) return void client.resume()
    const upstream = connect(target.port, target.host)
    track(upstream)
    client.on('close', () => frozen || upstream.destroy())
    upstream.on('close', () => frozen || client.destroy())
    client.pipe(upstream)
    upstream.pipe(client)
    pairs.push([client, upstream])
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    get accepted() {
      return accepted
    },
    get clientsClosed() {
      return clientsClosed
    },
    freeze() {
      frozen = true
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        upstream.pause()
        client.resume() // read and dropped: no listener, no pipe
      }
    },
  }
}
