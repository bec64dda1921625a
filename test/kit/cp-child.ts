// The control plane in a child process, for every test and bench that needs one
// there: to kill it with SIGKILL, or to read its RSS and CPU from /proc apart from
// the load. Started by startChildControlPlane (cp.ts):
//
//   node dist/test/kit/cp-child.js '{"dataDir":…[,"storeUrl":…,"masterKeyFile":…,…]}'
//
// Options (CpChildOptions below): SQLite in dataDir or a shared PostgreSQL store;
// `cli` runs it through the CLI's main exactly as `keymesh control-plane` does (its
// JSON logs on stdout, with the "control plane listening" line that carries the URL;
// no hooks then); otherwise startControlPlane on 127.0.0.1 port 0, logs (warn and
// above by default) on stderr, and a greeting {"url","pid"} on stdout.
//
// stdout carries JSON lines only. Commands, one a line on stdin:
//   stats  → {"stats":{rss,heapUsed,external,arrayBuffers,connected,pending}} (after a GC
//            when node runs with --expose-gc, so the figures are less noisy)
//   pushes → {"pushes":{count,first,last}}: key-set pushes handed to agent sessions since
//            the last 'pushes', first and last in epoch ms (performance.timeOrigin + now())
//   quit   → {"closed":true} after a graceful shutdown, then exit 0
// and with `faults` (the HA fault tests):
//   jump MS → {"now":ms}: the wall clock is the real one plus an offset this moves forward,
//             so a rotation a day away is due now while timers and intervals (monotonic)
//             still run in real time
//   tick    → {"ticked":true}: one scheduler pass, if the lease allows
//   pass    → {"rotated":n}: due pair rotations, bypassing the lease
//   hold    → {"armed":true}: the next write transaction that creates a key version stops
//             after its last statement, before COMMIT, prints {"holding":true}, never ends
//   commit  → {"armed":true}: the same one step later, right after COMMIT, before the
//             operation publishes its change ({"committed":true})
//   push-only SERVICE → {"armed":true}: from now on key-set pushes reach the sessions of
//             SERVICE only; every other session's are dropped, as when the process dies
//             between two pushes of one change (the agents of SERVICE hear, the others not)
// Ending stdin, SIGTERM or SIGINT stop it as 'quit' does.
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { pino } from 'pino'

import { lifecyclePolicy, openStore, rotateDuePairs, startControlPlane, type AgentEndpointInternals, type StoreTx } from '../../control-plane/src/index.js'
import type { TimerClock } from '../../platform/src/index.js'

export interface CpChildOptions {
  readonly dataDir: string
  /** The port to listen on (default 0: any); a restart on the old port keeps the agents' URLs. */
  readonly port?: number
  /** A postgres:// store shared with other replicas; SQLite in dataDir when absent. */
  readonly storeUrl?: string
  readonly masterKeyFile?: string
  /** Through the CLI's main, as `keymesh control-plane` runs (no commands but quit); plain HTTP on loopback (--insecure-http) unless `tls`. */
  readonly cli?: boolean
  /** With `cli`: HTTPS with the certificate it makes in dataDir (tls.crt), as `keymesh control-plane` serves by default. */
  readonly tls?: boolean
  /** With `cli`: more arguments for `keymesh control-plane` (--config FILE …). */
  readonly args?: readonly string[]
  /** The fault hooks: the clock that jumps and the hold/commit traps. */
  readonly faults?: boolean
  readonly runScheduler?: boolean
  readonly schedulerIntervalMs?: number
  /** The pair-key grace (default 1 h): a soak that rotates every 30 s keeps a few versions, not a growing pile. */
  readonly pairGraceMs?: number
  /** Log level of the stderr logs (default: KEYMESH_CHILD_LOG_LEVEL, else warn). */
  readonly logLevel?: string
}

const o = JSON.parse(process.argv[2] ?? '{}') as CpChildOptions
if (!o.dataDir) {
  process.stderr.write('usage: cp-child \'{"dataDir":DIR[,"storeUrl":URL,"masterKeyFile":FILE,"cli":true,"faults":true]}\'\n')
  process.exit(2)
}
const reply = (m: unknown): void => void process.stdout.write(JSON.stringify(m) + '\n')

/** Resolves on 'quit', when stdin ends (the parent exited or died), or on SIGTERM/SIGINT. */
const stopAsked = new Promise<string>((resolve) => {
  process.once('SIGTERM', () => resolve('SIGTERM'))
  process.once('SIGINT', () => resolve('SIGINT'))
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      if (line.trim() === 'quit') resolve('quit')
      else onCommand(line.trim())
    })
    .on('close', () => resolve('stdin closed'))
})
let onCommand: (line: string) => void = () => {}
// A safety valve: never outlive a wedged shutdown.
void stopAsked.then(() => setTimeout(() => process.exit(1), 15_000).unref())

if (o.cli) {
  const args = ['control-plane', '--listen', `127.0.0.1:${o.port ?? 0}`, '--data-dir', o.dataDir, ...(o.tls ? [] : ['--insecure-http']), ...(o.args ?? [])]
  if (o.storeUrl) args.push('--store', o.storeUrl)
  if (o.masterKeyFile) args.push('--master-key-file', o.masterKeyFile)
  // Imported here only: the CLI's modules would count in the RSS a bench reads of the other form.
  const { main } = await import('../../cli/index.js')
  const code = await main(args, { stopSignal: stopAsked })
  reply({ closed: true })
  process.exit(code)
}

const logger = pino({ level: o.logLevel ?? process.env['KEYMESH_CHILD_LOG_LEVEL'] ?? 'warn', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }))

let offset = 0
const clock: TimerClock = {
  now: () => Date.now() + offset,
  monotonicMs: () => Math.floor(performance.now()),
  setTimer(delayMs, fn) {
    const handle = setTimeout(fn, Math.max(0, delayMs))
    handle.unref()
    return () => clearTimeout(handle)
  },
}

// The traps: only a transaction that inserted a key version (a rotation) springs one.
let armed: 'hold' | 'commit' | undefined
async function trappedStore(): Promise<Awaited<ReturnType<typeof openStore>>> {
  const store = await openStore(o.storeUrl, o.dataDir)
  const transaction = store.transaction.bind(store)
  const forever = (): Promise<never> => new Promise<never>(() => {})
  store.transaction = async <T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> => {
    let rotates = false
    const result = await transaction(async (tx) => {
      const insertKeyVersion = tx.insertKeyVersion.bind(tx)
      tx.insertKeyVersion = (v) => {
        rotates = true
        return insertKeyVersion(v)
      }
      const result = await fn(tx)
      if (armed === 'hold' && rotates) {
        armed = undefined
        reply({ holding: true })
        await forever()
      }
      return result
    })
    if (armed === 'commit' && rotates) {
      armed = undefined
      reply({ committed: true })
      await forever()
    }
    return result
  }
  return store
}

const cp = await startControlPlane({
  host: '127.0.0.1',
  port: o.port ?? 0,
  dataDir: o.dataDir,
  masterKeyFile: o.masterKeyFile,
  // The parent (cp.ts) points it beside the data directory, never at the user's own.
  keyDir: process.env['KEYMESH_CONFIG_HOME'],
  logger,
  ...(o.faults ? { store: await trappedStore(), clock } : { storeUrl: o.storeUrl }),
  ...(o.runScheduler !== undefined ? { runScheduler: o.runScheduler } : {}),
  settings: {
    ...(o.schedulerIntervalMs !== undefined ? { schedulerIntervalMs: o.schedulerIntervalMs } : {}),
    ...(o.pairGraceMs !== undefined ? { lifecycle: lifecyclePolicy({ pairGraceMs: o.pairGraceMs }) } : {}),
  },
})
const endpoint = cp.endpoint as AgentEndpointInternals

// Timing hook for rotate-to-delivery: each session's applyUpdate (the hub hands it the
// encoded key set; the session writes what changed to its socket) is wrapped on register.
const epochNow = (): number => performance.timeOrigin + performance.now()
let pushes = { count: 0, first: 0, last: 0 }
/** push-only: the one service whose sessions still get pushes. */
let pushOnly: string | undefined
const register = endpoint.hub.register.bind(endpoint.hub)
endpoint.hub.register = (session) => {
  const apply = session.applyUpdate.bind(session)
  Object.defineProperty(session, 'applyUpdate', {
    value: (seq: number, set: Parameters<typeof apply>[1]) => {
      if (pushOnly !== undefined && session.service !== pushOnly) return
      apply(seq, set)
      const t = epochNow()
      if (pushes.count++ === 0) pushes.first = t
      pushes.last = t
    },
  })
  register(session)
}

onCommand = (line) => {
  const [cmd, arg] = line.split(/\s+/)
  if (cmd === 'stats') {
    ;(globalThis as { gc?: () => void }).gc?.()
    const m = process.memoryUsage()
    reply({ stats: { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, connected: endpoint.connectedCount(), pending: endpoint.pendingCount() } })
  } else if (cmd === 'pushes') {
    reply({ pushes })
    pushes = { count: 0, first: 0, last: 0 }
  } else if (!o.faults) {
    return
  } else if (cmd === 'jump') {
    offset += Number(arg)
    reply({ now: clock.now() })
  } else if (cmd === 'tick') {
    void cp.scheduler.tick().then(() => reply({ ticked: true }))
  } else if (cmd === 'pass') {
    void rotateDuePairs(cp.ctx, clock.now()).then((rotated) => reply({ rotated }))
  } else if (cmd === 'hold' || cmd === 'commit') {
    armed = cmd
    reply({ armed: true })
  } else if (cmd === 'push-only' && arg !== undefined) {
    pushOnly = arg
    reply({ armed: true })
  }
}

reply({ url: cp.url, pid: process.pid })
await stopAsked
await cp.close()
reply({ closed: true })
logger.flush()
process.exit(0)
