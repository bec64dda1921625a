// One half of the plaintext relay pair that bench/tunnel.bench.ts measures the keymesh
// tunnel against: the same shape as a pair of agents (one WebSocket per TCP
// connection, ws with perMessageDeflate off, one binary message per TCP chunk, the
// same 1 MiB high-water mark before the source is paused), with no crypto at all.
//
//   node dist/bench/tunnel-relay.js a ws://127.0.0.1:PORT   TCP in  -> WebSocket out
//   node dist/bench/tunnel-relay.js b 127.0.0.1:PORT        WebSocket in -> TCP out
//
// Listens on 127.0.0.1, port 0, and prints one JSON line: {"port":N,"pid":N}. Then it
// answers 'stats' on stdin with {"stats":{"open":N}} (relayed connections now open).
// It exits when stdin ends (the bench exited or died), or on SIGTERM/SIGINT.
import net from 'node:net'
import { createInterface } from 'node:readline'
import { WebSocket, WebSocketServer } from 'ws'

const HIGH_WATER = 1024 * 1024
const LOW_WATER = HIGH_WATER / 4

const [role, target] = process.argv.slice(2)
if ((role !== 'a' && role !== 'b') || target === undefined) {
  process.stderr.write('usage: tunnel-relay a WS_URL | b HOST:PORT\n')
  process.exit(2)
}

let open = 0

/**
 * Joins a TCP socket and a WebSocket both ways with bounded buffering: TCP reads pause
 * while more than HIGH_WATER bytes sent to the WebSocket are unwritten, and the
 * WebSocket pauses while the TCP socket's write buffer is full. Either side's close or
 * error ends the other. The WebSocket has no half-close, so a TCP end closes it, and a
 * WebSocket close ends the TCP socket after its pending writes. Whatever is paused is
 * resumed once the other side is gone, and what it then reads is dropped: a socket
 * left paused would hold its peer (or the WebSocket closing handshake) open.
 */
function join(tcp: net.Socket, ws: WebSocket): void {
  open++
  let inflight = 0
  let tcpPaused = false
  let done = false
  const finish = (): void => {
    if (done) return
    done = true
    open--
  }
  tcp.setNoDelay(true)
  tcp.on('data', (chunk: Buffer) => {
    if (done) return
    const n = chunk.length
    inflight += n
    ws.send(chunk, { binary: true }, () => {
      inflight -= n
      if (tcpPaused && inflight <= LOW_WATER) {
        tcpPaused = false
        tcp.resume()
      }
    })
    if (!tcpPaused && inflight >= HIGH_WATER) {
      tcpPaused = true
      tcp.pause()
    }
  })
  ws.on('message', (data: Buffer) => {
    if (tcp.destroyed) return
    if (!tcp.write(data) && !ws.isPaused) {
      ws.pause()
      tcp.once('drain', () => ws.resume())
    }
  })
  tcp.on('end', () => ws.close(1000))
  tcp.on('error', () => ws.terminate())
  tcp.on('close', () => {
    finish()
    // Resumed (it may be paused waiting for a 'drain' that will never come) so that the
    // peer's close frame is read and the closing handshake completes.
    ws.resume()
    if (ws.readyState === WebSocket.OPEN) ws.close(1000)
  })
  ws.on('close', () => {
    finish()
    tcp.end()
    tcp.resume()
  })
  ws.on('error', () => tcp.destroy())
}

const reply = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n')
}

let close: () => void
if (role === 'a') {
  const server = net.createServer((tcp) => {
    // Nothing is read from the client until the WebSocket to relay B is open.
    tcp.pause()
    const ws = new WebSocket(target, { perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    const early = (): void => {
      tcp.destroy()
    }
    ws.once('error', early)
    tcp.once('error', () => ws.terminate())
    ws.once('open', () => {
      ws.off('error', early)
      join(tcp, ws)
      tcp.resume()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  close = () => server.close()
  reply({ port: (server.address() as net.AddressInfo).port, pid: process.pid })
} else {
  const m = /^(.+):(\d+)$/.exec(target)
  if (!m) throw new Error(`relay b: target must be HOST:PORT, got ${target}`)
  const host = m[1] as string
  const port = Number(m[2])
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  wss.on('connection', (ws) => {
    ws.binaryType = 'nodebuffer'
    ws.pause()
    const tcp = net.connect(port, host)
    const early = (): void => ws.terminate()
    tcp.once('error', early)
    ws.once('error', () => tcp.destroy())
    tcp.once('connect', () => {
      tcp.off('error', early)
      join(tcp, ws)
      ws.resume()
    })
  })
  await new Promise<void>((resolve) => wss.once('listening', resolve))
  close = () => wss.close()
  reply({ port: (wss.address() as net.AddressInfo).port, pid: process.pid })
}

const stop = (): void => {
  close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line.trim() === 'stats') reply({ stats: { open } })
})
rl.on('close', stop)
