// The control plane's port, bound before anything is written: its TLS certificate and
// key, the store, the development master key, the admin token. A start that cannot
// listen (CP_ERR_LISTEN) then leaves nothing behind in the data directory.
//
// From binding on, the port accepts; a connection that arrives before the HTTP server
// is ready waits (unread) and is handed to the server with the listening socket, so a
// client that connects early is answered late, not refused.
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'

import { cpError } from '../errors.js'

export interface BoundPort {
  readonly host: string
  readonly port: number
  readonly address: AddressInfo
  /** Gives `server` the listening socket and the connections that waited; once only. */
  handOver(server: NetServer): Promise<AddressInfo>
  /** Stops listening and drops the waiting connections (a start that failed before the hand-over). */
  close(): void
}

/** Binds HOST:PORT (port 0 picks a free one); CP_ERR_LISTEN when it cannot. */
export async function bindPort(host: string, port: number): Promise<BoundPort> {
  const early = createServer()
  const waiting = new Set<Socket>()
  early.on('connection', (socket: Socket) => {
    waiting.add(socket)
    socket.once('close', () => waiting.delete(socket))
  })
  try {
    await new Promise<void>((resolve, reject) => {
      early.once('error', reject)
      early.listen(port, host, () => {
        early.off('error', reject)
        resolve()
      })
    })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error'
    const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EACCES' ? 'permission denied' : code
    throw cpError('CP_ERR_LISTEN', `${host}:${port}: ${why}`, { cause: e })
  }
  let handed = false
  return {
    host,
    port,
    address: early.address() as AddressInfo,
    handOver(server) {
      if (handed) return Promise.reject(new Error('the port was handed over already'))
      handed = true
      return new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', reject)
        // node's listen(handle): the server takes over the bound socket (net.Server.listen).
        server.listen(early as never, () => {
          server.off('error', reject)
          for (const socket of waiting) server.emit('connection', socket)
          waiting.clear()
          resolve(server.address() as AddressInfo)
        })
      })
    },
    close() {
      if (handed) return
      handed = true
      for (const socket of waiting) socket.destroy()
      early.close()
    },
  }
}
