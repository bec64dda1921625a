// The echo service of tests and benches, and the TCP service it runs on: every
// listener on 127.0.0.1 port 0, its connections counted and destroyed at teardown.
//   echoServer / echo   TCP: every byte back, and a half-close when the client ends
//   startTcpService     the same listener with another behaviour (a sink, a silent peer …)
//   startHttpEcho       HTTP: every request answered with its body (no routing, no
//                       checks), the bare baseline a bench measures an HTTP API against
//   startChildEcho      the HTTP echo in its own process (echo-child.ts), so that a
//                       bench measures it like the agent it stands beside
import http from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'

import { JsonChild } from './child.js'

interface Tap {
  teardown(fn: () => unknown): void
}

export interface TcpService {
  readonly server: Server
  readonly port: number
  readonly address: { readonly host: string; readonly port: number }
  /** Connections accepted so far. */
  readonly connections: number
  /** The connections open now. */
  readonly sockets: ReadonlySet<Socket>
  close(): Promise<void>
}

/** Echoes every byte back and half-closes when the client does. */
export function echo(s: Socket): void {
  s.pipe(s)
}

/** A TCP listener that hands each connection to `onConnection` (default: echo). */
export async function startTcpService(t: Tap, onConnection: (s: Socket) => void = echo): Promise<TcpService> {
  let connections = 0
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (s) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    onConnection(s)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const close = (): Promise<void> => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  }
  t.teardown(close)
  const port = (server.address() as { port: number }).port
  return {
    server,
    port,
    address: { host: '127.0.0.1', port },
    get connections() {
      return connections
    },
    sockets,
    close,
  }
}

export function echoServer(t: Tap): Promise<TcpService> {
  return startTcpService(t, echo)
}

/** An HTTP server on 127.0.0.1 answering every request with its body, as JSON; the caller closes it. */
export async function startHttpEcho(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
      res.end(body)
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port }
}

const compiled = !import.meta.url.endsWith('.ts')
const childEntry = fileURLToPath(new URL(compiled ? './echo-child.js' : './echo-child.ts', import.meta.url))

/** The HTTP echo in a child process (stopped with child.stop(), or with killAll()). */
export async function startChildEcho(): Promise<{ child: JsonChild; port: number }> {
  const child = new JsonChild('echo', [childEntry], { stderr: 'inherit' })
  const { port } = await child.next<{ port: number }>('port')
  return { child, port }
}
