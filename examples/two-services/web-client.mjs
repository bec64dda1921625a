// The toy `web` client: streams random bytes to an address at a steady pace, hashing
// what it sends, until it gets SIGUSR1 (or has sent MAX_MIB). Then it half-closes,
// reads the `api` service's "<sha256-hex> <bytes>" answer and exits 0 only if both
// match. It knows nothing about keymesh: the address it is given is its local
// agent's --connect listener.
//
//   node web-client.mjs 127.0.0.1:PORT [MIB_PER_SECOND] [MAX_MIB]
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'

const [host, port] = (process.argv[2] ?? '127.0.0.1:15001').split(':')
const rate = Number(process.argv[3] ?? 8) * 1024 * 1024
const max = Number(process.argv[4] ?? 1024) * 1024 * 1024
const CHUNK = 256 * 1024
const MIB = 1024 * 1024

const hash = createHash('sha256')
let sent = 0
let answer = ''
let finishing = false
const started = Date.now()

const socket = net.connect(Number(port), host, () => {
  console.log(`web: connected to ${host}:${port}, streaming ${rate / MIB} MiB/s until told to stop (SIGUSR1)`)
  const timer = setInterval(() => {
    const chunk = randomBytes(CHUNK)
    hash.update(chunk)
    sent += chunk.length
    socket.write(chunk)
    if (sent % (16 * MIB) === 0) console.log(`web: sent ${sent / MIB} MiB`)
    if (finishing || sent >= max) {
      clearInterval(timer)
      socket.end() // half-close: "that was everything"; the answer still comes back
    }
  }, (1000 * CHUNK) / rate)
})
process.on('SIGUSR1', () => (finishing = true))
socket.setEncoding('utf8')
socket.on('data', (text) => (answer += text))
socket.on('error', (err) => {
  console.log(`web: connection error ${err.code ?? err.message} after ${sent} bytes`)
  process.exitCode = 1
})
socket.on('close', () => {
  const mine = hash.digest('hex')
  const [theirs, bytes] = answer.trim().split(' ')
  const ok = theirs === mine && Number(bytes) === sent
  console.log(`web: sent ${sent} bytes in ${((Date.now() - started) / 1000).toFixed(1)} s, sha256 ${mine}`)
  console.log(`web: api answered ${answer.trim() || '(nothing)'} -> ${ok ? 'MATCH' : 'MISMATCH'}`)
  process.exitCode = ok ? 0 : 1
  process.exit()
})
