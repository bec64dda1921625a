// Runs a handshake to completion with both sides in this process: the cost of
// the handshake alone, without sockets. Shared by the benchmark scripts.
import type { HandshakeState } from '../protocol/src/index.js'

export function runHandshake(init: HandshakeState, resp: HandshakeState): void {
  let from = init
  let to = resp
  while (!init.isComplete || !resp.isComplete) {
    to.readMessage(from.writeMessage())
    ;[from, to] = [to, from]
  }
  init.split()
  resp.split()
}
