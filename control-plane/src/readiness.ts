// GET /readyz for the control plane: ready when the store answers a trivial read
// within `timeoutMs` (a shutting-down control plane answers 503 before it gets
// here: the HTTP layer refuses every request once close() starts), takes writes
// (health/write-health.ts), and on SQLite passed its last integrity check
// (health/integrity-watch.ts); the body also shows the scheduled audit-chain
// verification's state (health/audit-watch.ts), which decides nothing. On a
// shared store, when it hears other replicas' changes: a replica whose LISTEN
// connection has been down longer than `graceMs` (default 10 s: a reconnection
// after a short blip takes less) would leave its agents on stale key sets, so a
// load balancer should send them elsewhere.
//
// The time limit is a wall-clock safety valve, not protocol timing, so it does not
// use the injected clock (a test's fake clock must not make the probe hang).
// While one check is outstanding, later probes share it: a store that hangs gets
// one stuck read, not one per scrape.
import { isKeymeshError } from '../../protocol/src/index.js'
import type { Readiness } from '../../platform/src/index.js'
import type { Store } from './store/store.js'

export const DEFAULT_READY_TIMEOUT_MS = 2_000
export const DEFAULT_LISTEN_GRACE_MS = 10_000

/** What readiness needs of the change bus (cluster/pg-bus.ts). */
export interface ListenState {
  /** 0 while listening; else for how long it has not been. */
  downForMs(): number
}

/** A meta key no one writes: reading it touches the store and nothing else. */
const PROBE_META = 'readyz-probe'

export function storeReadiness(store: Store, timeoutMs = DEFAULT_READY_TIMEOUT_MS): () => Promise<Readiness> {
  let reading: Promise<Readiness> | undefined
  return async () => {
    reading ??= store
      .read((r) => r.getMeta(PROBE_META))
      .then(
        (): Readiness => ({ ready: true }),
        // The code only: a back-end's message may name hosts or users.
        (err: unknown): Readiness => {
          const code = isKeymeshError(err) ? err.code : 'CP_ERR_STORE'
          return { ready: false, code, reason: `the store failed a read (${code})` }
        },
      )
      .finally(() => (reading = undefined))
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<Readiness>((resolve) => {
      timer = setTimeout(() => resolve({ ready: false, code: 'CP_ERR_STORE', reason: `the store did not answer within ${timeoutMs} ms` }), timeoutMs)
    })
    try {
      return await Promise.race([reading, late])
    } finally {
      clearTimeout(timer)
    }
  }
}

/** Ready while `listening` is absent (no other replica to hear) or down for at most `graceMs`. */
export function listenReadiness(listening: ListenState | undefined, graceMs = DEFAULT_LISTEN_GRACE_MS): () => Readiness {
  return () => {
    const down = listening?.downForMs() ?? 0
    return down > graceMs ? { ready: false, reason: `not hearing other replicas' changes for ${Math.round(down / 1000)} s` } : { ready: true }
  }
}

/** /readyz's answer: the verdict (the first check that fails), each check's, and what is shown without deciding. */
export interface ReadinessReport {
  readonly overall: Readiness
  readonly checks: Readonly<Record<string, Readiness>>
  /** Shown in the body, deciding nothing (the audit chain's state). */
  readonly info?: Readonly<Record<string, unknown>>
}

/**
 * Runs every named check at once (in the order given, for the verdict): not ready
 * when any is not, with the first such check's reason and code.
 */
export function readinessReport(
  checks: Readonly<Record<string, () => Readiness | Promise<Readiness>>>,
  info?: () => Readonly<Record<string, unknown>>,
): () => Promise<ReadinessReport> {
  return async () => {
    const names = Object.keys(checks)
    const answers = await Promise.all(names.map((n) => (checks[n] as () => Readiness | Promise<Readiness>)()))
    const overall = answers.find((a) => !a.ready) ?? { ready: true }
    return { overall, checks: Object.fromEntries(names.map((n, i) => [n, answers[i] as Readiness])), ...(info ? { info: info() } : {}) }
  }
}

/** Ready when every check is; otherwise the first check's reason that is not. */
export function allReady(...checks: ReadonlyArray<() => Readiness | Promise<Readiness>>): () => Promise<Readiness> {
  return async () => {
    const answers = await Promise.all(checks.map((check) => check()))
    return answers.find((a) => !a.ready) ?? { ready: true }
  }
}
