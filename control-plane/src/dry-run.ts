// `?dryRun=true` on any changing admin route: the operation runs in its store
// transaction exactly as it would, then rolls back. Nothing is kept, no audit entry
// is written (nothing happened) and no agent hears of it. One mechanism for every
// route: the HTTP server runs the handler inside `dryRunScope` (http/server.ts), and
// perform() (operation.ts), through which every admin change goes, records what it
// would have audited and published there instead of committing.
import { AsyncLocalStorage } from 'node:async_hooks'

import type { AuditDetails } from './audit-chain.js'
import type { ChangeEvent } from './events.js'

/** One operation a dry run went through: the audit entry it would write and the events it would publish. */
export interface DryRunChange {
  readonly action: string
  readonly target: string
  readonly reason: string
  readonly details: AuditDetails
  readonly notifications: readonly ChangeEvent[]
}

export interface DryRunState {
  readonly changes: DryRunChange[]
}

export const dryRunScope = new AsyncLocalStorage<DryRunState>()
