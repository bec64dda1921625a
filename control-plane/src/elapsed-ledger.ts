// The elapsed ledger: how much time the control planes of an installation have seen
// pass, measured on their monotonic clocks and kept in the store, so that a deadline
// that destroys key material is met only when the wall clock has reached it AND that
// much time has actually been observed.
//
// Why both. A deadline is shown to people as a wall time ("destroyed at 14:00",
// "grace ends at 15:00"), and until then it can be cancelled: destroying before the
// wall time shown would break that promise, so the wall time must be reached. But
// the wall clock can be stepped: by NTP after a bad start, by an operator, by a VM
// resumed with a stale clock, by an attacker with root on the host. A forward step of
// three hours would then destroy at once what was meant to wait three hours, and
// destruction cannot be undone. So each such deadline also records the ledger reading
// at which the time left to it, as of when it was set, has passed on the monotonic
// clock (`destroyAtObserved`, `notAfterObserved`, `expiresAtObserved`; schema 7), and
// is met only when the ledger reaches it as well.
//
// What each direction of step does:
//   - forward (+3 h): the wall condition holds early; the elapsed one holds
//     destruction back until the time is really observed: nothing goes early.
//   - backward (−3 h): the elapsed condition holds on time; the wall one holds
//     destruction back until the wall clock reaches the time shown again, 3 h late.
//     It never stalls for good: the wall clock keeps moving. The step is logged,
//     audited (`clock.jump`) and counted, so the delay has a visible cause.
//
// Why a ledger in the store, and not each process's own reading: a monotonic reading
// means nothing across a restart, and a 7-day window spans many. The ledger is the
// sum of elapsed time observed by whichever process ran; it is persisted every
// LEDGER_WRITE_MS while the scheduler runs, and at a clean stop. Time when no
// control plane ran (downtime) is not counted: a restart after a day down looks just
// like a restart after the clock was stepped a day ahead, and only the first is
// harmless. So a deadline pending across downtime is met that much later (never
// earlier); one set after the restart is not affected. A crash loses at most the
// last LEDGER_WRITE_MS, with the same effect.
//
// Several replicas (PostgreSQL): only the one holding the scheduler lease advances
// the ledger, and each advance is a compare-and-set on (observedMs, writer) from the
// reading this process last saw (read outside the write, see advance()), adding only
// the time since it saw it. If anyone
// else wrote in between, the set fails and the process starts again from the new
// reading, adding nothing: elapsed time is counted at most once, whoever holds the
// lease, however leases overlap (a gap is lost, which errs towards later).
//
// A reading between writes is estimated as the persisted value plus the time since
// this process saw it, which never exceeds what was observed. A guard set from such
// an estimate may be up to LEDGER_WRITE_MS lower than exact: after a forward step, a
// destruction may come that much before the full window is observed, never more.
import type { Logger } from 'pino'

import type { Clock, MonotonicClock } from '../../platform/src/index.js'
import type { ElapsedLedgerRecord } from './store/records.js'
import type { Store, StoreReader } from './store/store.js'

/** How much elapsed time the ledger's writer may hold unwritten (a crash loses at most this). */
export const LEDGER_WRITE_MS = 5_000

/** How many held deadlines are remembered so that each is logged once. */
const HELD_LOGGED_MAX = 1_000

export interface ElapsedLedgerOptions {
  readonly store: Store
  readonly clock: Clock & MonotonicClock
  readonly logger: Logger
  /** This process's tag in the ledger row (random per process). */
  readonly writer: string
}

const same = (a: ElapsedLedgerRecord, b: ElapsedLedgerRecord): boolean => a.observedMs === b.observedMs && a.writer === b.writer

export class ElapsedLedger {
  readonly #o: ElapsedLedgerOptions
  /** The row as this process last saw (or wrote) it, and its monotonic reading then. */
  #seen: { row: ElapsedLedgerRecord; mono: number } | undefined
  readonly #held = new Set<string>()

  constructor(o: ElapsedLedgerOptions) {
    this.#o = o
  }

  /** Reads the ledger: this process counts elapsed time from now on (at start). */
  async load(): Promise<void> {
    const row = await this.#o.store.read((r) => r.getElapsedLedger())
    this.#see(row, this.#o.clock.monotonicMs())
  }

  /**
   * Adds the time elapsed since this process last saw the ledger, written when it is
   * LEDGER_WRITE_MS or more (or `flush`). Only the scheduler-lease holder calls it.
   * Returns the reading.
   *
   * The row is read outside any write transaction, and written only when there is
   * something to write, by a compare-and-set against the row as read: a tick with
   * nothing to write takes no write lock (PostgreSQL's is shared by every replica)
   * and commits nothing (an empty commit would tell readiness that writes work).
   * Whoever wrote between the read and the set (another replica, or this process's
   * own flush) makes the set fail: nothing is added, and the next tick counts from
   * the row it then reads, so no elapsed time is counted twice.
   */
  async advance(flush = false): Promise<number> {
    const row = await this.#o.store.read((r) => r.getElapsedLedger())
    const mono = this.#o.clock.monotonicMs()
    const seen = this.#seen
    // Someone else wrote since (or this is the first look): count from here.
    if (seen === undefined || !same(row, seen.row)) return this.#see(row, mono).row.observedMs
    const add = Math.max(0, Math.floor(mono - seen.mono))
    if (add === 0 || (add < LEDGER_WRITE_MS && !flush)) return row.observedMs + add
    const next: ElapsedLedgerRecord = { observedMs: row.observedMs + add, writer: this.#o.writer, advancedAt: this.#o.clock.now() }
    if (!(await this.#o.store.transaction((tx) => tx.advanceElapsedLedger(row, next)))) return row.observedMs
    // Noted after the commit (a rolled-back write must not count as seen): `next`
    // covers the time up to `mono` exactly, whatever a read meanwhile noted.
    this.#seen = { row: next, mono }
    return next.observedMs
  }

  /** At a clean stop: writes what this process observed since its last write, if it is the ledger's writer. */
  async flush(): Promise<void> {
    if (this.#seen?.row.writer === this.#o.writer) await this.advance(true)
  }

  /** The reading now, estimated from the row read in `r` (see the header). */
  async observed(r: StoreReader): Promise<number> {
    const row = await r.getElapsedLedger()
    const mono = this.#o.clock.monotonicMs()
    const seen = this.#see(row, mono)
    return row.observedMs + Math.max(0, Math.floor(mono - seen.mono))
  }

  /** The reading at which a deadline at wall time `deadline`, set now, is also covered by observed time; null for no deadline. */
  async guard(r: StoreReader, deadline: number | null): Promise<number | null> {
    if (deadline === null) return null
    return (await this.observed(r)) + Math.max(0, deadline - this.#o.clock.now())
  }

  /** True when the elapsed side of a deadline is met (a deadline without a guard has none to meet). */
  async covers(r: StoreReader, required: number | null | undefined): Promise<boolean> {
    return required === null || required === undefined || (await this.observed(r)) >= required
  }

  /**
   * Of items whose wall time has come, those whose elapsed time has too. Each of the
   * others is logged at warn once (the usual cause: a wall clock stepped ahead) and
   * left for a later pass.
   */
  async due<T>(items: readonly T[], guard: (item: T) => { what: string; deadline: number; required: number | null | undefined }): Promise<T[]> {
    if (items.length === 0) return []
    const observed = await this.#o.store.read((r) => this.observed(r))
    return items.filter((item) => {
      const { what, deadline, required } = guard(item)
      if (required === null || required === undefined || observed >= required) return true
      if (!this.#held.has(what)) {
        if (this.#held.size >= HELD_LOGGED_MAX) this.#held.clear()
        this.#held.add(what)
        this.#o.logger.warn(
          { target: what, deadline: new Date(deadline).toISOString(), waitMs: required - observed },
          `${what}: its wall time has come but not the elapsed time since it was set (the wall clock may have been stepped ahead); held until it has passed`,
        )
      }
      return false
    })
  }

  #see(row: ElapsedLedgerRecord, mono: number): { row: ElapsedLedgerRecord; mono: number } {
    // A reading already seen keeps its time: moving it later would lose what elapsed since.
    if (this.#seen === undefined || !same(row, this.#seen.row)) this.#seen = { row, mono }
    return this.#seen
  }
}
