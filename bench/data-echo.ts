// The bare HTTP baseline of bench/data.bench.ts, in its own process like the agent:
// a node:http server on 127.0.0.1 that answers every request with its body (as
// JSON), no routing, no validation, no crypto. Prints {"port":N,"pid":N} and exits
// when its stdin ends (the bench finished or died).
//
//   node dist/bench/data-echo.js
import http from 'node:http'

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as { port: number }).port
  process.stdout.write(JSON.stringify({ port, pid: process.pid }) + '\n')
})
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
