// One control-plane replica in a child process, for the HA fault tests that kill
// a replica with SIGKILL (test/ha/replicas.ts starts it):
//
//   node dist/test/ha/cp-child.js '{"dataDir":…,"storeUrl":…,"masterKeyFile":…}'
//
// It runs startControlPlane as the CLI does, with three test hooks the CLI has not:
//   - its clock is the real one plus an offset the test moves forward ("jump"),
//     so a rotation a day away is due now while timers still run in real time;
//   - "hold" arms a trap: the next write transaction that creates a key version
//     stops after its last statement, before COMMIT, says so, and never ends —
//     the moment a test kills the process to die in the middle of a rotation;
//   - "commit" arms the same trap one step later: right after that transaction's
//     COMMIT, before the operation goes on to publish its change;
//   - the scheduler interval is an option (default 1 s, as in production).
//
// stdout carries JSON lines only: first {"url","pid"}, then one answer per command
// read on stdin:
//   jump MS → {"now":ms}        tick → {"ticked":true} (one scheduler pass, if the lease allows)
//   hold    → {"armed":true}    pass → {"rotated":n} (due pair rotations, bypassing the lease)
//   commit  → {"armed":true}
//   quit    → {"closed":true}, then exit 0
// and, unprompted, {"holding":true} or {"committed":true} when a trap springs. Logs (warn and above)
// go to stderr. When stdin ends (the test process died) it shuts down too.
import { createInterface } from 'node:readline'
import { pino } from 'pino'

import type { TimerClock } from '../../platform/src/index.js'
import { startControlPlane } from '../../control-plane/src/index.js'
import { rotateDuePairs } from '../../control-plane/src/index.js'
import { openStore } from '../../control-plane/src/index.js'
import type { StoreTx } from '../../control-plane/src/index.js'

interface ChildOptions {
  readonly dataDir: string
  readonly storeUrl: string
  readonly masterKeyFile: string
  readonly schedulerIntervalMs?: number
  readonly runScheduler?: boolean
}

const o = JSON.parse(process.argv[2] ?? '{}') as ChildOptions
const reply = (m: unknown): void => void process.stdout.write(JSON.stringify(m) + '\n')

let offset = 0
const clock: TimerClock = {
  now: () => Date.now() + offset,
  setTimer(delayMs, fn) {
    const handle = setTimeout(fn, Math.max(0, delayMs))
    handle.unref()
    return () => clearTimeout(handle)
  },
}

const logger = pino({ level: process.env['HA_CHILD_LOG_LEVEL'] ?? 'warn', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }))
const store = await openStore(o.storeUrl, o.dataDir)

// The traps: only a transaction that inserted a key version (a rotation) springs one.
let armed: 'hold' | 'commit' | undefined
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

const cp = await startControlPlane({
  host: '127.0.0.1',
  port: 0,
  dataDir: o.dataDir,
  masterKeyFile: o.masterKeyFile,
  store,
  logger,
  clock,
  settings: { schedulerIntervalMs: o.schedulerIntervalMs ?? 1_000 },
  runScheduler: o.runScheduler ?? false,
})

let stopping: Promise<void> | undefined
const stop = (): Promise<void> =>
  (stopping ??= (async () => {
    setTimeout(() => process.exit(1), 10_000).unref()
    await cp.close()
    reply({ closed: true })
    process.exit(0)
  })())
process.on('SIGTERM', () => void stop())

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/)
    if (cmd === 'jump') {
      offset += Number(arg)
      reply({ now: clock.now() })
    } else if (cmd === 'tick') {
      void cp.scheduler.tick().then(() => reply({ ticked: true }))
    } else if (cmd === 'pass') {
      void rotateDuePairs(cp.ctx, clock.now()).then((rotated) => reply({ rotated }))
    } else if (cmd === 'hold' || cmd === 'commit') {
      armed = cmd
      reply({ armed: true })
    } else if (cmd === 'quit') {
      void stop()
    }
  })
  .on('close', () => void stop())

reply({ url: cp.url, pid: process.pid })
