// The WebSocket transport of tunnels: path, options for both ends, peer URLs, and
// waiting for sockets to close at shutdown.
//
// Both ends: binary messages of at most one record (65,535 bytes; ws closes a
// larger frame with 1009), no compression (ciphertext does not compress; trying
// would only cost CPU on the hot path), no UTF-8 check of text frames (a tunnel
// fails on any text frame with AGENT_ERR_TEXT_FRAME, valid or not).
//
// Departure from RFC 6455 §5.3, on purpose: the client masks with an all-zero
// key. Masking exists so that script-chosen bytes cannot look like HTTP to a
// proxy; a tunnel's payload is AEAD ciphertext and record headers, chosen by
// neither a script nor an attacker, so it protects nothing here. A random mask
// would cost ws a copy and an XOR pass over every byte sent (and the server an
// XOR pass on receipt): ws skips both for a zero mask.
import { WebSocket, type ClientOptions } from 'ws'

import { MAX_RECORD_BYTES } from '../../../protocol/src/index.js'

export const TUNNEL_PATH = '/v1/tunnel'

export const WS_SERVER_OPTIONS = Object.freeze({
  noServer: true,
  maxPayload: MAX_RECORD_BYTES,
  perMessageDeflate: false,
  skipUTF8Validation: true,
  clientTracking: false,
} as const)

const zeroMask = (mask: Uint8Array): void => {
  mask.fill(0)
}

const CLIENT_OPTIONS: ClientOptions = Object.freeze({
  maxPayload: MAX_RECORD_BYTES,
  perMessageDeflate: false,
  skipUTF8Validation: true,
  followRedirects: false,
  generateMask: zeroMask,
})

/**
 * The tunnel URL of a peer's advertised endpoint: the endpoint itself when its
 * path already ends in /v1/tunnel, else /v1/tunnel appended to its path (so an
 * endpoint behind a path-prefixing proxy keeps its prefix).
 */
export function tunnelUrl(endpoint: string): string {
  const url = new URL(endpoint)
  if (!url.pathname.endsWith(TUNNEL_PATH)) url.pathname = url.pathname.replace(/\/+$/, '') + TUNNEL_PATH
  return url.toString()
}

/** Opens a tunnel WebSocket to `url`; throws synchronously on a malformed URL. */
export function dialWebSocket(url: string): WebSocket {
  const ws = new WebSocket(url, CLIENT_OPTIONS)
  ws.binaryType = 'nodebuffer'
  return ws
}

/**
 * Resolves once every socket in `sockets` has closed (the set shrinks as they do).
 * Sockets still open after `graceMs` are cut. The grace is a wall-clock safety
 * valve for shutdown, not protocol timing, so it does not use the injected clock
 * (a FakeClock would never fire it).
 */
export async function allClosed(sockets: Set<WebSocket>, graceMs: number): Promise<void> {
  const open = [...sockets].filter((ws) => ws.readyState !== ws.CLOSED)
  if (open.length === 0) return
  const timer = setTimeout(() => {
    for (const ws of open) ws.terminate()
  }, graceMs)
  timer.unref()
  await Promise.all(open.map((ws) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once('close', () => resolve())))))
  clearTimeout(timer)
}
