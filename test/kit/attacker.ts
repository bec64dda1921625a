// A hostile WebSocket client for the pre-authentication tests and the attack bench:
// connections from another loopback address (127.0.0.0/8 all reach 127.0.0.1 on
// Linux), so the listener sees the attacker and the legitimate peers as separate
// sources. Each connection resolves once the server has either upgraded it or
// refused it with an HTTP status and its JSON {code}.
import { connect, type Socket } from 'node:net'

import { WebSocket } from 'ws'

export const ATTACKER_ADDRESS = '127.0.0.2'

export interface Held {
  readonly ws: WebSocket
  /** The close code and reason the server sent (or 1006). */
  readonly closed: Promise<{ code: number; reason: string }>
  /** Messages received so far. */
  readonly messages: Buffer[]
}

export type Attempt = { readonly held: Held } | { readonly refused: { readonly status: number; readonly code: string | undefined } } | { readonly failed: string }

/** One WebSocket to `url` from `localAddress`. */
export function attempt(url: string, localAddress = ATTACKER_ADDRESS): Promise<Attempt> {
  const ws = new WebSocket(url, { localAddress, perMessageDeflate: false })
  const messages: Buffer[] = []
  ws.on('message', (d: Buffer) => messages.push(d))
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  return new Promise((resolve) => {
    ws.on('error', (err) => resolve({ failed: err.message }))
    ws.once('open', () => resolve({ held: { ws, closed, messages } }))
    ws.once('unexpected-response', (req, res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => {
        let code: string | undefined
        try {
          code = (JSON.parse(Buffer.concat(parts).toString()) as { code?: string }).code
        } catch {
          code = undefined
        }
        resolve({ refused: { status: res.statusCode ?? 0, code } })
        req.destroy()
      })
    })
  })
}

/** `n` connections at once; the ones held, and the refusal codes (by code, with counts). */
export async function attempts(url: string, n: number, localAddress = ATTACKER_ADDRESS): Promise<{ held: Held[]; refused: Record<string, number>; failed: number }> {
  const all = await Promise.all(Array.from({ length: n }, () => attempt(url, localAddress)))
  const held: Held[] = []
  const refused: Record<string, number> = {}
  let failed = 0
  for (const a of all) {
    if ('held' in a) held.push(a.held)
    else if ('refused' in a) refused[a.refused.code ?? `HTTP ${a.refused.status}`] = (refused[a.refused.code ?? `HTTP ${a.refused.status}`] ?? 0) + 1
    else failed++
  }
  return { held, refused, failed }
}

/** Closes every socket at once (test teardown). */
export function dropAll(held: readonly Held[]): void {
  for (const h of held) h.ws.terminate()
}

/** A raw TCP client that asks for a WebSocket upgrade and then never closes its side, nor answers a close frame. */
export interface RawUpgrade {
  readonly socket: Socket
  /** The response head (up to the blank line). */
  readonly head: string
  /** Resolves when more bytes arrive after the head (a close frame). */
  readonly more: Promise<void>
  /** Resolves when the server has ended its side. */
  readonly ended: Promise<void>
}

export async function rawUpgrade(url: string, localAddress = ATTACKER_ADDRESS): Promise<RawUpgrade> {
  const u = new URL(url)
  const socket = connect({ host: u.hostname, port: Number(u.port), localAddress, allowHalfOpen: true })
  socket.on('error', () => {})
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()))
  let got = Buffer.alloc(0)
  let onMore: () => void = () => {}
  const more = new Promise<void>((resolve) => (onMore = resolve))
  const head = await new Promise<string>((resolve) => {
    let headDone = false
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d])
      const at = got.indexOf('\r\n\r\n')
      if (!headDone && at >= 0) {
        headDone = true
        resolve(got.subarray(0, at).toString())
        got = got.subarray(at + 4)
      }
      if (headDone && got.length > 0) onMore()
    })
    socket.write(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  })
  return { socket, head, more, ended }
}

/** Resolves once the server's side of `socket` is gone: a write after its end is reset. */
export function resetByServer(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve())
    const poke = (): void => {
      if (socket.destroyed) return
      socket.write('x', () => setImmediate(poke))
    }
    poke()
  })
}

/**
 * Sends a genuine first message on the first held socket and waits for its answer,
 * then replays the same bytes on the next `n` held sockets: the replays, for the
 * caller to check how each was refused.
 */
export async function replayFirstMessage(held: readonly Held[], message: Uint8Array, n: number): Promise<Held[]> {
  const [first, ...rest] = held as [Held, ...Held[]]
  first.ws.send(message)
  while (first.messages.length === 0) await new Promise((resolve) => first.ws.once('message', resolve))
  const replays = rest.slice(0, n)
  for (const r of replays) r.ws.send(message)
  return replays
}
