// One control plane in its own process, for bench/ha.bench.ts: the same
// startControlPlane as `keymesh control-plane`, on SQLite in DATA_DIR or on a
// shared PostgreSQL store (one replica of several).
//
//   node dist/bench/ha-child.js '{"dataDir":…,"storeUrl":…,"masterKeyFile":…}'
//
// Listens on 127.0.0.1, port 0, and prints one JSON line on stdout:
// {"url":"http://127.0.0.1:PORT","pid":N}. It shuts down gracefully (and prints
// {"closed":true}) on "quit", when stdin ends (the bench exited or died), or on
// SIGTERM/SIGINT. Logs (warn and above) go to stderr.
import { createInterface } from 'node:readline'
import { pino } from 'pino'

import { startControlPlane } from '../control-plane/src/index.js'

interface ChildOptions {
  readonly dataDir: string
  readonly storeUrl?: string
  readonly masterKeyFile?: string
}

const o = JSON.parse(process.argv[2] ?? '{}') as ChildOptions
if (!o.dataDir) {
  process.stderr.write('usage: ha-child \'{"dataDir":DIR[,"storeUrl":URL,"masterKeyFile":FILE]}\'\n')
  process.exit(2)
}
const reply = (m: unknown): void => void process.stdout.write(JSON.stringify(m) + '\n')
const logger = pino({ level: process.env['BENCH_CP_LOG_LEVEL'] ?? 'warn', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: false }))
const cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: o.dataDir, storeUrl: o.storeUrl, masterKeyFile: o.masterKeyFile, logger })

let stopping: Promise<void> | undefined
const stop = (): Promise<void> =>
  (stopping ??= (async () => {
    setTimeout(() => process.exit(1), 15_000).unref() // never outlive a wedged shutdown
    await cp.close()
    reply({ closed: true })
    logger.flush()
    process.exit(0)
  })())
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'quit') void stop()
  })
  .on('close', () => void stop())

reply({ url: cp.url, pid: process.pid })
