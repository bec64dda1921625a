// PRAGMA quick_check of the SQLite store, on a connection of its own in a worker
// thread: the driver is synchronous, and a check reads every page of the file
// (about a second per few hundred MB), which on the main thread would stall
// every request for as long. The worker's read-only connection reads one
// snapshot (WAL) and never blocks the store's writes; a WAL checkpoint that
// meets it waits, as with any reader (the store's scrub retries, sqlite-store.ts).
//
// quick_check, not integrity_check: it checks every page's b-tree structure and
// record format, which is what a torn or overwritten page breaks, in O(N); the
// full check also matches every index against its table, in O(N log N).
//
// The worker is CommonJS given as text (eval): it needs nothing of ours, only
// the driver, so it runs the same from the compiled tree and from sources.
// A stopped check is not waited for: terminate() takes effect only when the
// native call returns, so the worker is unref'd and left to finish on its own.
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'

import type { IntegrityResult, IntegrityRun } from './store.js'

/** quick_check stops after this many problems; the first few are enough to name the damage. */
export const MAX_INTEGRITY_PROBLEMS = 10

const require = createRequire(import.meta.url)
const DAMAGED = /^SQLITE_(CORRUPT|NOTADB)/

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
let db
try {
  const Database = require(workerData.driver)
  db = new Database(workerData.file, { readonly: true, fileMustExist: true, timeout: workerData.busyTimeoutMs })
  const rows = db.pragma('quick_check(' + workerData.max + ')')
  parentPort.postMessage({ rows: rows.map((r) => String(Object.values(r)[0])) })
} catch (e) {
  parentPort.postMessage({ error: String((e && (e.code || e.message)) || e) })
} finally {
  try { if (db) db.close() } catch {}
}
`

/** Starts quick_check of `file`; the result never rejects. */
export function quickCheck(file: string, o: { busyTimeoutMs: number; maxProblems?: number }): IntegrityRun {
  const started = performance.now()
  const ms = (): number => Math.round(performance.now() - started)
  let settle!: (r: IntegrityResult) => void
  const result = new Promise<IntegrityResult>((resolve) => (settle = resolve))
  let done = false
  const finish = (r: IntegrityResult): void => {
    if (done) return
    done = true
    settle(r)
  }
  const couldNotRun = (why: string): IntegrityResult => ({ ok: false, ran: false, problems: [why], ms: ms() })
  let worker: Worker
  try {
    worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver: require.resolve('better-sqlite3'), file, busyTimeoutMs: o.busyTimeoutMs, max: o.maxProblems ?? MAX_INTEGRITY_PROBLEMS },
    })
  } catch (e) {
    finish(couldNotRun(`the check could not start: ${(e as Error).message}`))
    return { result, stop: () => undefined }
  }
  worker.unref()
  worker.on('message', (m: { rows?: string[]; error?: string }) => {
    // A file too damaged to open, or to walk, is the verdict itself.
    if (m.rows === undefined && DAMAGED.test(m.error ?? '')) return finish({ ok: false, ran: true, problems: [`${m.error}: the database disk image is malformed`], ms: ms() })
    if (m.rows === undefined) return finish(couldNotRun(`the check could not read the file: ${m.error ?? 'unknown error'}`))
    if (m.rows.length === 1 && m.rows[0] === 'ok') return finish({ ok: true, ms: ms() })
    finish({ ok: false, ran: true, problems: m.rows, ms: ms() })
  })
  worker.on('error', (e) => finish(couldNotRun(`the check failed: ${e.message}`)))
  worker.on('exit', () => finish(couldNotRun('the check ended without an answer')))
  return {
    result,
    stop: () => {
      finish(couldNotRun('stopped'))
      void worker.terminate().catch(() => undefined)
    },
  }
}
