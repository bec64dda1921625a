// How both listeners let go of a connection they refuse before authentication, so a
// peer that never closes its side cannot keep the file descriptor: Node's HTTP
// server allows half-open sockets and upgraded sockets have no timeout, and ws
// waits 30 s for the peer's close frame. The slot is released before either.
import type { Duplex } from 'node:stream'

import type { TimerClock } from './clock.js'

/** How long a refused WebSocket has to answer the close frame before it is cut. */
export const REFUSED_CLOSE_MS = 1_000

/** Writes an HTTP refusal to a socket that asked for an upgrade, then destroys it once written. */
export function refuseUpgrade(socket: Duplex, status: string, code?: string): void {
  const body = code === undefined ? '' : JSON.stringify({ code })
  const type = code === undefined ? '' : 'Content-Type: application/json\r\n'
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n${type}Content-Length: ${body.length}\r\n\r\n${body}`, () => socket.destroy())
}

/** The part of a ws WebSocket this needs. */
export interface ClosableSocket {
  readonly readyState: number
  readonly CLOSED: number
  readonly OPEN: number
  readonly CONNECTING: number
  on(event: 'error', fn: (err: Error) => void): unknown
  once(event: 'close', fn: () => void): unknown
  close(code: number, reason: string): void
  terminate(): void
}

/** Closes a refused WebSocket with its code, and cuts it if the peer has not closed within REFUSED_CLOSE_MS (on `clock`). */
export function closeRefused(ws: ClosableSocket, clock: TimerClock, closeCode: number, reason: string): void {
  ws.on('error', () => {})
  if (ws.readyState === ws.CLOSED) return
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(closeCode, reason)
  const cancel = clock.setTimer(REFUSED_CLOSE_MS, () => ws.terminate())
  ws.once('close', cancel)
}
