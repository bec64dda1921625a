// PLACEHOLDER: the scheduler is being written; see app.ts for the contract.
import type { CpContext } from './context.js'

export interface Scheduler {
  /** Starts ticking every settings.schedulerIntervalMs on ctx.clock. */
  start(): void
  /** One pass: due rotations, pair-version expiry, due destructions, expired join tokens. */
  tick(): Promise<void>
  /** Stops ticking and waits for a running pass. */
  stop(): Promise<void>
}

export function createScheduler(_ctx: CpContext): Scheduler {
  return { start() {}, tick: async () => {}, stop: async () => {} }
}
