// GET /readyz for the control plane: ready when the store answers a trivial read
// within `timeoutMs` (a shutting-down control plane answers 503 before it gets
// here: the HTTP layer refuses every request once close() starts).
//
// The time limit is a wall-clock safety valve, not protocol timing, so it does not
// use the injected clock (a test's fake clock must not make the probe hang).
// While one check is outstanding, later probes share it: a store that hangs gets
// one stuck read, not one per scrape.
import { isKeymeshError } from '../../protocol/src/errors.js'
import type { Readiness } from '../../platform/src/metrics.js'
import type { Store } from './store/store.js'

export const DEFAULT_READY_TIMEOUT_MS = 2_000

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
        (err: unknown): Readiness => ({ ready: false, reason: `the store failed a read (${isKeymeshError(err) ? err.code : 'CP_ERR_STORE'})` }),
      )
      .finally(() => (reading = undefined))
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<Readiness>((resolve) => {
      timer = setTimeout(() => resolve({ ready: false, reason: `the store did not answer within ${timeoutMs} ms` }), timeoutMs)
    })
    try {
      return await Promise.race([reading, late])
    } finally {
      clearTimeout(timer)
    }
  }
}
