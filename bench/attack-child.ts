// The attacker of bench/attack.bench.ts, alone in its own process so that its CPU is
// not the bench's: from 127.0.0.2 it holds IDLE WebSockets to URL (reopening each as
// soon as it is closed or refused) and runs FLOODERS loops that each open a
// WebSocket, send one random message 1 (PREAMBLE_HEX, if given, then 48 random bytes:
// a tunnel hello whose preamble passes the screen, so the responder does the DH) and
// wait for it to close, as fast as they can.
//
//   node dist/bench/attack-child.js URL IDLE FLOODERS [PREAMBLE_HEX]
//
// Prints {"ready":true} once started; answers 'stats' on stdin with
// {"stats":{attempts,held,refused:{code:n},sent}}; exits when stdin ends.
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'

import { attempt } from '../test/kit/attacker.js'

const [url, idleArg, floodArg, preambleHex] = process.argv.slice(2)
if (!url) {
  process.stderr.write('usage: attack-child URL IDLE FLOODERS [PREAMBLE_HEX]\n')
  process.exit(2)
}
const preamble = Buffer.from(preambleHex ?? '', 'hex')
let running = true
const stats = { attempts: 0, held: 0, refused: {} as Record<string, number>, sent: 0, failed: 0 }

async function once(send: boolean): Promise<void> {
  stats.attempts++
  const a = await attempt(url as string)
  if ('refused' in a) {
    const code = a.refused.code ?? `HTTP ${a.refused.status}`
    stats.refused[code] = (stats.refused[code] ?? 0) + 1
    return
  }
  if ('failed' in a) {
    stats.failed++
    // Out of ports or sockets: let the loop breathe rather than spin.
    await new Promise((r) => setTimeout(r, 10))
    return
  }
  stats.held++
  if (send) {
    const hello = preamble.length > 0 ? Buffer.concat([Buffer.from([preamble.length >> 8, preamble.length & 0xff]), preamble, randomBytes(48)]) : randomBytes(48)
    a.held.ws.send(hello)
    stats.sent++
  }
  if (!running) a.held.ws.terminate()
  const c = await a.held.closed
  if (c.reason !== '') stats.refused[c.reason] = (stats.refused[c.reason] ?? 0) + 1
}

async function loop(send: boolean): Promise<void> {
  while (running) await once(send)
}

const loops = [...Array.from({ length: Number(idleArg) }, () => loop(false)), ...Array.from({ length: Number(floodArg) }, () => loop(true))]
process.stdout.write(JSON.stringify({ ready: true }) + '\n')

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'stats') process.stdout.write(JSON.stringify({ stats }) + '\n')
  })
  .on('close', () => {
    running = false
    // Whatever is still held goes with the process.
    setTimeout(() => process.exit(0), 200).unref()
    void Promise.allSettled(loops)
  })
