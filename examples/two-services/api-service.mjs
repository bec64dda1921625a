// The toy `api` service: a plain TCP server that knows nothing about keymesh.
// For each connection it hashes everything it receives (SHA-256) and, when the
// client has finished sending, answers one line "<sha256-hex> <bytes>" and closes.
//
//   node api-service.mjs 127.0.0.1:PORT
import { createHash } from 'node:crypto'
import net from 'node:net'

const [host, port] = (process.argv[2] ?? '127.0.0.1:8080').split(':')

const server = net.createServer((socket) => {
  const hash = createHash('sha256')
  let bytes = 0
  socket.on('data', (chunk) => {
    hash.update(chunk)
    bytes += chunk.length
  })
  // The client half-closes when it is done; the answer goes back on the same connection.
  socket.on('end', () => {
    const digest = hash.digest('hex')
    console.log(`api: received ${bytes} bytes, sha256 ${digest}`)
    socket.end(`${digest} ${bytes}\n`)
  })
  socket.on('error', (err) => console.log(`api: connection error ${err.code ?? err.message}`))
})

server.listen(Number(port), host, () => console.log(`api: listening on ${host}:${port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
