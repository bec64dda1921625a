// The control plane alone in its own process, for bench/cp.bench.ts: the bench reads
// this process's VmRSS from /proc while the simulated agents live in the parent.
//
//   node dist/bench/cp-child.js DATA_DIR
//
// Listens on 127.0.0.1, port 0, and prints one JSON line on stdout:
// {"url":"http://127.0.0.1:PORT","pid":N}. Then it answers lines on stdin:
//   stats → {"stats":{rss,heapUsed,external,arrayBuffers,connected,pending}} (after a GC when
//           node runs with --expose-gc, so the figures are less noisy)
//   pushes → {"pushes":{count,first,last}}: how many key-set pushes were handed to agent
//           sessions since the last 'pushes', and when the first and last were (epoch ms,
//           performance.timeOrigin + now(), so the parent can compare with its own clock)
//   quit  → shuts down gracefully, prints {"closed":true} and exits 0.
// When stdin ends (the bench exited or died) it shuts down and exits too; a SIGTERM
// or SIGINT does the same. Logs (warn and above) go to stderr.
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { pino } from 'pino'

import { startControlPlane } from '../control-plane/src/index.js'
import type { AgentEndpointInternals } from '../control-plane/src/index.js'

const dataDir = process.argv[2]
if (!dataDir) {
  process.stderr.write('usage: cp-child DATA_DIR\n')
  process.exit(2)
}

const logger = pino({ level: process.env['BENCH_CP_LOG_LEVEL'] ?? 'warn', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: false }))
const cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir, logger })
const endpoint = cp.endpoint as AgentEndpointInternals

// Timing hook for rotate-to-delivery: each session's applyUpdate (the hub hands it the
// encoded key set; the session writes what changed to its socket) is wrapped on register.
// Only this benchmark child does this; the control plane itself is unchanged.
const epochNow = (): number => performance.timeOrigin + performance.now()
let pushes = { count: 0, first: 0, last: 0 }
const register = endpoint.hub.register.bind(endpoint.hub)
endpoint.hub.register = (session) => {
  const apply = session.applyUpdate.bind(session)
  Object.defineProperty(session, 'applyUpdate', {
    value: (seq: number, set: Parameters<typeof apply>[1]) => {
      apply(seq, set)
      const t = epochNow()
      if (pushes.count++ === 0) pushes.first = t
      pushes.last = t
    },
  })
  register(session)
}

const reply = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n')
}

let stopping: Promise<void> | undefined
const stop = (): Promise<void> =>
  (stopping ??= (async () => {
    // A safety valve: never outlive a wedged shutdown.
    setTimeout(() => process.exit(1), 15_000).unref()
    await cp.close()
    reply({ closed: true })
    logger.flush()
    process.exit(0)
  })())

process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = line.trim()
  if (cmd === 'stats') {
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    const m = process.memoryUsage()
    reply({ stats: { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, connected: endpoint.connectedCount(), pending: endpoint.pendingCount() } })
  } else if (cmd === 'pushes') {
    reply({ pushes })
    pushes = { count: 0, first: 0, last: 0 }
  } else if (cmd === 'quit') {
    void stop()
  }
})
rl.on('close', () => void stop())

reply({ url: cp.url, pid: process.pid })
