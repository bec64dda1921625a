// What a control plane needs to run beside other replicas, chosen by its store
// (Store.location, set when other processes may share it): on PostgreSQL, a
// change bus over LISTEN/NOTIFY (pg-bus.ts) and the scheduler lease
// (pg-lease.ts); on SQLite (one process per database), the in-process bus and no
// lease. Each process gets a random replica id, logged at start, that tags the
// notifications it sends.
import type { Logger } from 'pino'

import type { RandomSource } from '../../../protocol/src/index.js'
import { createLocalBus, type ChangeBus } from '../events.js'
import type { ListenState } from '../readiness.js'
import type { SchedulerLease } from '../scheduler.js'
import type { Store } from '../store/store.js'
import type { PgBus } from './pg-bus.js'

export interface ReplicaOptions {
  readonly store: Store
  readonly logger: Logger
  readonly random: RandomSource
  /** A bus given by the caller (tests); else one chosen by the store. */
  readonly bus?: ChangeBus | undefined
  /** How often a PostgreSQL replica resynchronises its agents anyway (CpSettings.resyncIntervalMs). */
  readonly resyncIntervalMs?: number
}

export interface Replica {
  /** Set when the store is shared (PostgreSQL). */
  readonly replicaId: string | undefined
  readonly bus: ChangeBus
  readonly lease: SchedulerLease | undefined
  /** Whether it hears other replicas' changes (readiness.ts); absent when there are none to hear. */
  readonly listening: ListenState | undefined
  /** Releases the lease and stops listening. */
  close(): Promise<void>
}

/** Starts listening for other replicas' changes before the caller serves anything. */
export async function startReplica(o: ReplicaOptions): Promise<Replica> {
  const { location } = o.store
  if (location === undefined) {
    return { replicaId: undefined, bus: o.bus ?? createLocalBus(), lease: undefined, listening: undefined, close: async () => {} }
  }
  // Loaded only here: the embedded store's start (the README's first command) does not
  // pay for the PostgreSQL driver.
  const [{ createPgBus }, { createPgLease }] = await Promise.all([import('./pg-bus.js'), import('./pg-lease.js')])
  const replicaId = Buffer.from(o.random(8)).toString('hex')
  const logger = o.logger.child({ replicaId })
  let bus = o.bus
  let pgBus: PgBus | undefined
  if (!bus) {
    bus = pgBus = createPgBus({ location, logger, replicaId, ...(o.resyncIntervalMs !== undefined ? { resyncIntervalMs: o.resyncIntervalMs } : {}) })
    await pgBus.start().catch(async (e: unknown) => {
      await pgBus?.close()
      throw e
    })
  }
  const lease = createPgLease({ location, logger, replicaId })
  o.logger.info({ replicaId, store: location.display }, 'running as one replica of a shared store')
  return {
    replicaId,
    bus,
    lease,
    listening: pgBus,
    async close() {
      await lease.close()
      await pgBus?.close()
    },
  }
}
