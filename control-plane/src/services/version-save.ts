// Writing a key version's change, for every service that changes one (keys.ts,
// pairs.ts): compare-and-set on its state, so a concurrent change is not
// overwritten, and the elapsed guard of each deadline that destroys it
// (../elapsed-ledger.ts): a deadline set or moved gets the ledger reading at which
// the time left to it will have been observed; one kept keeps its guard; one
// cleared loses it. A version already destroyed has nothing left to guard.
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { KeyVersionRecord } from '../store/records.js'
import type { StoreTx } from '../store/store.js'

export async function saveVersion(ctx: CpContext, tx: StoreTx, before: KeyVersionRecord, after: KeyVersionRecord): Promise<void> {
  const guard = async (deadline: number | null, was: number | null, wasGuard: number | null | undefined): Promise<number | null> => {
    if (deadline === was || after.state === 'destroyed') return wasGuard ?? null
    return ctx.elapsed.guard(tx, deadline)
  }
  const changed = await tx.updateKeyVersion(before.keyName, before.version, {
    state: after.state,
    sealedMaterial: after.sealedMaterial,
    stateChangedAt: after.stateChangedAt,
    destroyAt: after.destroyAt,
    notAfter: after.notAfter,
    previousState: after.previousState,
    destroyAtObserved: await guard(after.destroyAt, before.destroyAt, before.destroyAtObserved),
    notAfterObserved: await guard(after.notAfter, before.notAfter, before.notAfterObserved),
  }, before.state)
  if (!changed) throw cpError('CP_ERR_CONFLICT', `${before.keyName} v${before.version} changed meanwhile; try again`)
}
