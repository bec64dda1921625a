// The scheduled audit-chain verification: a broken chain used to be found only
// when someone ran `keymesh audit verify`.
//
// What must hold:
//   - the first pass after start (or unseal) verifies the whole chain, with the
//     MACs and the stored checkpoints, as `audit verify` does; later passes go on
//     from the last head they verified (audit.ts, `from`), so a pass costs what
//     the log grew by, plus one read of that head to see it is still there;
//   - passes run every `intervalMs` on the injected clock, never two at once,
//     and only while unsealed (the MACs need the master key's chain key);
//   - a break logs once at error (CP_ERR_AUDIT_BROKEN, with the first bad entry
//     and why), sets keymesh_cp_audit_chain_broken to 1 and shows in /readyz's
//     body; later passes check again from the last good head, and a chain found
//     whole again (a restore) clears it. It does not make the control plane
//     unready: the KMS goes on serving, and the break is the operator's to look at;
//   - an entry older than the last verified head that is changed later is not
//     seen by the incremental passes; the next start's full pass, or `audit verify`, sees it.
import type { Logger } from 'pino'

import { type CancelTimer, type TimerClock } from '../../../platform/src/index.js'
import type { AuditBreak } from '../audit-chain.js'
import type { AuditLog } from '../audit.js'
import type { AuditHead } from '../store/records.js'
import type { Store } from '../store/store.js'

export type AuditChainState =
  | { readonly status: 'pending' }
  | { readonly status: 'ok'; readonly verifiedSeq: number; readonly verifiedAt: number }
  | { readonly status: 'broken'; readonly firstBadSeq: number; readonly reason: AuditBreak; readonly foundAt: number; readonly verifiedSeq: number }

export interface AuditWatchOptions {
  readonly store: Store
  /** The keyed audit log; null while sealed (no pass runs then). */
  readonly audit: () => AuditLog | null
  readonly clock: TimerClock
  readonly logger: Logger
  /** Between passes; 0 turns them off. */
  readonly intervalMs: number
}

export class AuditWatch {
  readonly #o: AuditWatchOptions
  #state: AuditChainState = { status: 'pending' }
  /** The last head a pass verified: the next pass starts after it. */
  #head: AuditHead | undefined
  /** When a pass last ended without finding a break. */
  #verifiedAt: number | undefined
  #running: Promise<AuditChainState> | undefined
  #timer: CancelTimer | undefined
  #closed = false

  constructor(o: AuditWatchOptions) {
    if (!Number.isSafeInteger(o.intervalMs) || o.intervalMs < 0) throw new RangeError('intervalMs must be a whole number from 0')
    this.#o = o
  }

  get state(): AuditChainState {
    return this.#state
  }

  /** Starts passes (again, after an unseal): the first at once (on the clock), then every intervalMs. */
  start(): void {
    this.#timer?.()
    this.#timer = undefined
    this.#arm(0)
  }

  /** One pass now, or the running one's result. */
  verify(): Promise<AuditChainState> {
    this.#running ??= this.#pass().finally(() => (this.#running = undefined))
    return this.#running
  }

  /** For /readyz's body. */
  report(): Record<string, unknown> {
    const s = this.#state
    switch (s.status) {
      case 'pending':
        return { status: 'pending' }
      case 'ok':
        return { status: 'ok', verifiedSeq: s.verifiedSeq, verifiedAt: new Date(s.verifiedAt).toISOString() }
      case 'broken':
        return { status: 'broken', code: 'CP_ERR_AUDIT_BROKEN', firstBadSeq: s.firstBadSeq, reason: s.reason, foundAt: new Date(s.foundAt).toISOString() }
    }
  }

  /** For the metrics: 1 while broken, the last verified seq, and when a pass last found the chain whole (0: never). */
  get broken(): number {
    return this.#state.status === 'broken' ? 1 : 0
  }

  get verifiedSeq(): number {
    return this.#head?.seq ?? 0
  }

  get verifiedAt(): number | undefined {
    return this.#verifiedAt
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#timer?.()
    this.#timer = undefined
    await this.#running?.catch(() => undefined)
  }

  async #pass(): Promise<AuditChainState> {
    const audit = this.#o.audit()
    if (audit === null || this.#closed) return this.#state
    const now = (): number => this.#o.clock.now()
    let result: Awaited<ReturnType<AuditLog['verify']>>
    try {
      result = await audit.verify(this.#o.store, this.#head ? { from: this.#head } : {})
    } catch (err) {
      // The store did not answer (readiness says so) or the keys went with a seal: try again next time.
      this.#o.logger.warn({ err: { code: (err as { code?: unknown }).code } }, 'the scheduled audit verification could not run')
      return this.#state
    }
    const before = this.#state
    if (result.ok) {
      this.#head = result.head
      this.#verifiedAt = now()
      this.#state = { status: 'ok', verifiedSeq: result.head.seq, verifiedAt: this.#verifiedAt }
      if (before.status === 'broken') this.#o.logger.info({ verifiedSeq: result.head.seq }, 'the audit chain verifies again')
      return this.#state
    }
    this.#state = { status: 'broken', firstBadSeq: result.firstBadSeq, reason: result.reason, foundAt: now(), verifiedSeq: this.#head?.seq ?? 0 }
    if (before.status !== 'broken' || before.firstBadSeq !== result.firstBadSeq || before.reason !== result.reason) {
      this.#o.logger.error(
        { code: 'CP_ERR_AUDIT_BROKEN', firstBadSeq: result.firstBadSeq, reason: result.reason },
        `the audit chain is broken at entry ${result.firstBadSeq} (${result.reason}): run keymesh audit verify, and restore the database from a backup if the entries were changed`,
      )
    }
    return this.#state
  }

  #arm(delayMs: number): void {
    if (this.#closed || this.#o.intervalMs === 0 || this.#timer !== undefined) return
    this.#timer = this.#o.clock.setTimer(delayMs, () => {
      this.#timer = undefined
      void this.verify().finally(() => this.#arm(this.#o.intervalMs))
    })
  }
}
