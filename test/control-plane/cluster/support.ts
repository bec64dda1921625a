// Shared pieces of the cluster tests: a started bus and a promise for the next
// matching bus event. (The logger whose lines a test reads and the proxy in front
// of PostgreSQL that cuts and stalls are the kit's: test/kit/logs.ts, test/kit/pg.ts.)
import { randomBytes } from 'node:crypto'

import { createPgBus, type PgBus, type PgBusOptions } from '../../../control-plane/src/cluster/pg-bus.js'
import type { ChangeBus, ChangeEvent } from '../../../control-plane/src/events.js'
import type { PgLocation } from '../../../control-plane/src/store/pg-url.js'
import { captureLogger } from '../../kit/logs.js'

interface Tap {
  teardown(fn: () => unknown): void
}

/**
 * Keeps the process alive until teardown. The bus's and lease's retry timers are
 * unref'd (they must not hold a shutting-down process); a test awaiting a
 * reconnection with no socket open would otherwise end early.
 */
export function keepAlive(t: Tap): void {
  const timer = setInterval(() => {}, 60_000)
  t.teardown(() => clearInterval(timer))
}

/** The next event on `bus` matching `pred`. */
export function nextEvent(bus: ChangeBus, pred: (e: ChangeEvent) => boolean = () => true): Promise<ChangeEvent> {
  return new Promise((resolve) => {
    const off = bus.subscribe((e) => {
      if (!pred(e)) return
      off()
      resolve(e)
    })
  })
}

/** A started pg bus closed at teardown, with every event it emitted and its log lines; fast reconnections. */
export async function startBus(t: Tap, location: PgLocation, replicaId: string, extra: Partial<PgBusOptions> = {}) {
  const { logger, logs } = captureLogger()
  keepAlive(t)
  // Unique ids: other test files share the server, and tests find connections by name.
  const id = `${replicaId}-${randomBytes(4).toString('hex')}`
  const bus = createPgBus({ location, logger, replicaId: id, minBackoffMs: 5, maxBackoffMs: 40, ...extra })
  t.teardown(() => bus.close())
  await bus.start()
  const events: ChangeEvent[] = []
  bus.subscribe((e) => events.push(e))
  return { bus, logs, events, id }
}

/** Resolves once `to` has heard a marker published on `from` (notifications arrive in order: it orders what came before). */
export async function roundTrip(from: PgBus, to: PgBus, reason: string): Promise<void> {
  const heard = nextEvent(to, (e) => e.kind === 'services' && e.reason === reason)
  from.publish({ kind: 'services', services: [], reason })
  await heard
}
