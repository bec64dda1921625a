// Whether the store takes writes, for GET /readyz: a store that answers reads
// while every commit fails (a full disk, a file or database turned read-only,
// a PostgreSQL schema dropped under it) used to look ready.
//
// How it is found without adding load:
//   - the store tells `watch` the outcome of every write transaction it runs
//     (store.ts, StoreObserver: the back-ends report it; nothing wraps the
//     store); one that fails with a store fault (store/store-faults.ts: disk
//     full, read-only, I/O error, unreachable, damaged — not a conflict or a
//     refusal the store made on purpose) flips the flag and logs once at error;
//   - while flipped, a probe writes one fixed meta row (`write-probe`, eight
//     bytes, overwritten each time: nothing grows) every `probeIntervalMs` on
//     the injected clock; any write that succeeds, the probe's or a real one,
//     clears the flag and logs that writes work again. A healthy store is never
//     probed: it costs nothing until a write has failed;
//   - on SQLite, the file the store holds open is compared with the one at its
//     path at each readiness check (one stat): a database file removed or
//     replaced while open still takes writes, into an inode nobody will read
//     again, so that counts as refusing writes too (store.ts, StoreHealth).
//
// Contract: readiness() is synchronous and cheap; close() stops the probe and
// waits for a running one. The probe row is housekeeping, not an operation: it
// is not audited (nothing an operator did or the KMS decided changes).
import { AsyncLocalStorage } from 'node:async_hooks'

import type { Logger } from 'pino'

import type { CancelTimer, Readiness, TimerClock } from '../../../platform/src/index.js'
import { storeFault, type StoreFault } from '../store/store-faults.js'
import type { Store } from '../store/store.js'

/** The meta row the probe overwrites. */
export const WRITE_PROBE_META = 'write-probe'

export interface WriteHealthOptions {
  readonly clock: TimerClock
  readonly logger: Logger
  /** How often a refusing store is probed. */
  readonly probeIntervalMs: number
  /** Told when a read or a write finds the database damaged (SQLite: an integrity check is due). */
  readonly onDamage?: () => void
}

/** The store refuses writes: since when, why, and the code /readyz answers with. */
export interface WriteFault extends StoreFault {
  readonly since: number
}

export class WriteHealth {
  readonly #o: WriteHealthOptions
  readonly #intervalMs: number
  #store: Store | undefined
  #fault: WriteFault | null = null
  /** Why the file the store holds open is not the one at its path, as last seen. */
  #fileProblem: string | null = null
  #failures = 0
  #timer: CancelTimer | undefined
  #probing: Promise<void> | undefined
  #closed = false
  /** Set in the probe's async context, so that its failures are not counted as the control plane's. */
  readonly #inProbe = new AsyncLocalStorage<true>()

  constructor(o: WriteHealthOptions) {
    this.#o = o
    this.#intervalMs = o.probeIntervalMs
    if (!Number.isSafeInteger(this.#intervalMs) || this.#intervalMs < 1) throw new RangeError('probeIntervalMs must be a positive whole number')
  }

  /**
   * Observes `store` from now on: the outcome of every write transaction it runs
   * (the back-end tells, store.ts StoreObserver), and every read that fails. A
   * store that cannot tell (no `observe`, a test's stand-in) only has its file checked.
   */
  watch(store: Store): void {
    this.#store = store
    store.observe?.({
      // The probe's own outcome is told here too; it is known by the async context it runs in.
      onWriteOutcome: (outcome) => (outcome.ok ? this.#succeeded() : this.#failed(outcome.error, this.#inProbe.getStore() !== true)),
      // A read says nothing about writes, but one that meets a damaged page is worth a check.
      onReadError: (err) => {
        if (storeFault(err)?.code === 'CP_ERR_STORE_CORRUPT') this.#o.onDamage?.()
      },
    })
  }

  /** The current fault, or null while writes work. */
  get fault(): WriteFault | null {
    return this.#fault
  }

  /** Write transactions that failed with a store fault since start (the probe's not counted). */
  get failures(): number {
    return this.#failures
  }

  /** Ready unless writes fail, or the store's file was removed or replaced under it. */
  readiness(): Readiness {
    const file = this.#checkFile()
    if (file !== null) return { ready: false, code: 'CP_ERR_STORE_WRITE', reason: file }
    const f = this.#fault
    if (f === null) return { ready: true }
    return { ready: false, code: f.code, reason: `writes fail since ${new Date(f.since).toISOString()}: ${f.reason}` }
  }

  /** Resolves once no probe is running (tests move the clock, then wait for the probe it started). */
  async idle(): Promise<void> {
    await this.#probing
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#store?.observe?.(undefined)
    this.#timer?.()
    this.#timer = undefined
    await this.#probing
  }

  #checkFile(): string | null {
    const problem = this.#store?.health?.fileProblem() ?? null
    if (problem !== this.#fileProblem) {
      if (problem !== null) this.#o.logger.error({ code: 'CP_ERR_STORE_WRITE', reason: problem }, 'the store refuses writes: /readyz answers 503')
      else this.#o.logger.info('the store file is back in place')
      this.#fileProblem = problem
    }
    return problem
  }

  #succeeded(): void {
    const f = this.#fault
    if (f === null) return
    this.#fault = null
    this.#timer?.()
    this.#timer = undefined
    this.#o.logger.info({ refusedForMs: this.#o.clock.now() - f.since }, 'the store takes writes again')
  }

  /** `counted`: a transaction of the control plane's own (the probe's failures are not counted). */
  #failed(err: unknown, counted = true): void {
    const fault = storeFault(err)
    if (fault === null) return
    if (counted) this.#failures++
    if (fault.code === 'CP_ERR_STORE_CORRUPT') this.#o.onDamage?.()
    const before = this.#fault
    this.#fault = { ...fault, since: before?.since ?? this.#o.clock.now() }
    if (before === null || before.reason !== fault.reason) {
      this.#o.logger.error({ code: fault.code, reason: fault.reason }, 'the store refuses writes: /readyz answers 503 until a write succeeds')
    }
    this.#arm()
  }

  #arm(): void {
    if (this.#closed || this.#timer !== undefined || this.#fault === null) return
    this.#timer = this.#o.clock.setTimer(this.#intervalMs, () => {
      this.#timer = undefined
      this.#probing ??= this.#probe().finally(() => {
        this.#probing = undefined
        this.#arm()
      })
    })
  }

  /** One small write through the watched path: its outcome sets or clears the fault. */
  async #probe(): Promise<void> {
    const store = this.#store
    if (this.#closed || store === undefined) return
    const value = new Uint8Array(8)
    new DataView(value.buffer).setFloat64(0, this.#o.clock.now())
    // Its outcome reaches #succeeded or #failed (not counted) through the store's observer.
    await this.#inProbe.run(true, () => store.transaction((tx) => tx.putMeta(WRITE_PROBE_META, value))).catch(() => undefined)
  }
}
