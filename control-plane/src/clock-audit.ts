// A step of the wall clock, as the control plane reports it (the watch itself is
// platform/src/clock-watch.ts): a warning in the log, the `keymesh_cp_clock_jumps_total`
// counter, and an audit entry `clock.jump` (actor system:clock) with the step's size
// and the wall readings either side — while sealed the audit log cannot be written,
// so then only the first two. Intervals here run on the monotonic clock and are not
// affected; what a step does affect is every wall time written from now on, and the
// deadlines that destroy material, which the elapsed ledger holds to the time really
// observed (elapsed-ledger.ts): that is what the entry tells an auditor.
import { ClockWatch, describeStep, type ClockJump, type TimerClock } from '../../platform/src/index.js'
import type { CpContext } from './context.js'
import { perform } from './operation.js'

export function watchClock(ctx: CpContext, clock: TimerClock, unsealed: () => boolean): ClockWatch {
  const watch = new ClockWatch({ clock, onJump: (j) => void reportJump(ctx, j, unsealed()) })
  watch.start()
  return watch
}

async function reportJump(ctx: CpContext, j: ClockJump, unsealed: boolean): Promise<void> {
  const details = { stepMs: Math.round(j.stepMs), wallBefore: new Date(j.wallBefore).toISOString(), wallAfter: new Date(j.wallAfter).toISOString(), elapsedMs: Math.round(j.elapsedMs) }
  const reason = `the wall clock stepped ${describeStep(j.stepMs)}; deadlines that destroy material also wait for the elapsed time`
  ctx.logger.warn(details, reason)
  if (!unsealed) return
  try {
    await perform(ctx, { actor: { kind: 'system', task: 'clock' }, action: 'clock.jump', target: 'clock', run: () => Promise.resolve({ result: undefined, reason, details }) })
  } catch (err) {
    ctx.logger.error({ err }, 'could not audit a step of the wall clock')
  }
}
