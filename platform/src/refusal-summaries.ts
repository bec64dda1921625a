// A RefusalTally driven by a clock's timer, for a listener that records refusals
// somewhere slow (the audit log): the caller says how to record the first refusal of a
// (source, reason) in a window and how to record a window's summary; this arms the
// timer, hands over the summaries when their windows end, and chains every write so
// that the caller can wait for all of them (tests, shutdown). Used by the control
// plane's agent endpoint (agent-endpoint/admission.ts) and admin API
// (http/stranger-limits.ts).
import type { CancelTimer, TimerClock } from './clock.js'
import { RefusalTally, type RefusalTallyOptions, type TallyEntry } from './refusal-tally.js'

export type RecordRefusal = (entry: TallyEntry) => Promise<void>

export class RefusalSummaries {
  readonly #tally: RefusalTally
  readonly #clock: TimerClock
  readonly #summary: RecordRefusal
  #cancel: CancelTimer | undefined
  #writes: Promise<void> = Promise.resolve()
  #closed = false

  /** `summary` records a window's count; a rejection is ignored here (the writer logs its own failures). */
  constructor(o: RefusalTallyOptions, clock: TimerClock, summary: RecordRefusal) {
    this.#tally = new RefusalTally(o, clock)
    this.#clock = clock
    this.#summary = summary
  }

  /**
   * One refusal. When it opens its window, `first` records it (its entry has count 1,
   * and the source `(other)` past maxKeys) and its promise is returned, rejection
   * included; otherwise it is counted for the summary and nothing is written now.
   */
  note(source: string, reason: string, first: RecordRefusal): Promise<void> {
    if (this.#closed) return Promise.resolve()
    const entry = this.#tally.note(source, reason)
    this.#arm()
    return entry === undefined ? Promise.resolve() : this.#write(first, entry)
  }

  /** Resolves once every write started so far has ended. */
  idle(): Promise<void> {
    return this.#writes
  }

  /** Stops the timer and records the counts of windows still open, so none is lost; later refusals are not counted. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#cancel?.()
    this.#cancel = undefined
    for (const e of this.#tally.flush()) void this.#write(this.#summary, e).catch(() => undefined)
  }

  #arm(): void {
    if (this.#cancel !== undefined) return
    const next = this.#tally.nextDue()
    if (next === undefined) return
    this.#cancel = this.#clock.setTimer(next - this.#clock.monotonicMs(), () => {
      this.#cancel = undefined
      for (const e of this.#tally.due()) void this.#write(this.#summary, e).catch(() => undefined)
      this.#arm()
    })
  }

  #write(record: RecordRefusal, entry: TallyEntry): Promise<void> {
    const write = record(entry)
    const settled = write.catch(() => undefined)
    this.#writes = this.#writes.then(() => settled)
    return write
  }
}
