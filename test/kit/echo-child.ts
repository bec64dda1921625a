// The HTTP echo (echo.ts) alone in a process, for benches that measure it beside
// an agent: prints {"port":N,"pid":N} and exits when its stdin ends (the bench
// finished or died).
//
//   node dist/test/kit/echo-child.js
import { startHttpEcho } from './echo.js'

const { port } = await startHttpEcho()
process.stdout.write(JSON.stringify({ port, pid: process.pid }) + '\n')
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
