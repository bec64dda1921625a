// The first message of a WebSocket, awaited with a deadline, before the code that
// runs the handshake is built (the pre-authentication layer of both listeners).
//
// Hand-off contract: when `message` is called, the waiting listeners are already
// removed. The callee builds the session (which attaches its own 'message',
// 'close' and 'error' listeners synchronously) and then hands it the message with
// `redeliver`, which emits it on the socket again: the session sees it first, and
// in order, since ws emits the next message only after this one's listeners ran.
import type { TimerClock } from './clock.js'

/** The part of a ws WebSocket this needs (ws's own type is not imported here). */
export interface MessageSocket {
  on(event: 'message', fn: (data: Buffer, isBinary: boolean) => void): unknown
  on(event: 'close', fn: (code: number, reason: Buffer) => void): unknown
  on(event: 'error', fn: (err: Error) => void): unknown
  off(event: 'message', fn: (data: Buffer, isBinary: boolean) => void): unknown
  off(event: 'close', fn: (code: number, reason: Buffer) => void): unknown
  off(event: 'error', fn: (err: Error) => void): unknown
  emit(event: 'message', data: Buffer, isBinary: boolean): boolean
}

export interface FirstMessageHandlers {
  /** The first message arrived (see the hand-off contract). */
  message(data: Buffer, isBinary: boolean): void
  /** Nothing arrived within the deadline; the socket is still open. */
  timeout(): void
  /** ws reported a frame error (it closes the socket itself). */
  error(err: Error): void
  /** The socket closed first, with the peer's close code and reason. */
  closed(code: number, reason: Buffer): void
}

/**
 * Waits for the first message of `ws` for at most `ms` on `clock`; exactly one handler
 * is called, unless the returned function is called first (it stops the wait silently).
 */
export function awaitFirstMessage(ws: MessageSocket, clock: TimerClock, ms: number, h: FirstMessageHandlers): () => void {
  let done = false
  const finish = (): boolean => {
    if (done) return false
    done = true
    cancel()
    ws.off('message', onMessage)
    ws.off('close', onClose)
    ws.off('error', onError)
    return true
  }
  const onMessage = (data: Buffer, isBinary: boolean): void => {
    if (finish()) h.message(data, isBinary)
  }
  const onClose = (code: number, reason: Buffer): void => {
    if (finish()) h.closed(code, reason)
  }
  const onError = (err: Error): void => {
    if (finish()) h.error(err)
  }
  ws.on('message', onMessage)
  ws.on('close', onClose)
  ws.on('error', onError)
  const cancel = clock.setTimer(ms, () => {
    if (finish()) h.timeout()
  })
  return () => void finish()
}

/** Hands the first message to the session built for it (see the hand-off contract). */
export function redeliver(ws: MessageSocket, data: Buffer, isBinary: boolean): void {
  ws.emit('message', data, isBinary)
}
