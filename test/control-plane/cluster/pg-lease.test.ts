import t from 'tap'

import { createPgLease } from '../../../control-plane/src/cluster/pg-lease.js'
import { parsePgUrl, PG_LOCKS, type PgLocation } from '../../../control-plane/src/store/pg-url.js'
import { until } from '../../kit/wait.js'
import { pgExec, pgProxy, pgSchema } from '../../kit/pg.js'
import { captureLogger } from '../../kit/logs.js'
import { keepAlive } from './support.js'

interface Tap {
  teardown(fn: () => unknown): void
}

function lease(t: Tap, location: PgLocation) {
  const { logger, logs } = captureLogger()
  const l = createPgLease({ location, logger })
  t.teardown(() => l.close())
  return Object.assign(l, { logs })
}

/** Terminates the session holding the scheduler lock of `location`; resolves to how many were. */
async function killHolder(location: PgLocation): Promise<number> {
  // Two-key advisory locks show their keys as classid/objid (unsigned) with objsubid 2.
  const rows = await pgExec<{ ok: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_locks
      WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted`,
    [location.lockSpace >>> 0, PG_LOCKS.scheduler],
  )
  return rows.length
}

t.test('of two replicas one holds the lease; when it closes, the other takes it', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = lease(t, location)
  const b = lease(t, location)
  t.equal(await a.tryAcquire(), true)
  t.equal(a.held, true)
  t.equal(await b.tryAcquire(), false)
  t.equal(await a.tryAcquire(), true, 'the holder keeps it')
  t.equal(await b.tryAcquire(), false, 'and the other keeps asking')
  t.equal(b.held, false)
  t.ok(a.logs.some((l) => l.includes('scheduler lease acquired')))

  await a.close()
  t.equal(a.held, false)
  t.equal(await a.tryAcquire(), false, 'a closed lease is never held')
  t.equal(await b.tryAcquire(), true)
})

t.test('when the holder\'s connection is terminated, it knows at once and the other takes the lease', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = lease(t, location)
  const b = lease(t, location)
  t.equal(await a.tryAcquire(), true)
  t.equal(await b.tryAcquire(), false)
  t.equal(await killHolder(location), 1)
  await until(() => !a.held, 'the holder to notice')
  t.ok(a.logs.some((l) => l.includes('scheduler lease lost')))
  t.equal(await b.tryAcquire(), true, 'the other replica takes it at its next tick')
  t.equal(await a.tryAcquire(), false, 'the old holder reconnects and finds it taken')
})

t.test('concurrent tryAcquire calls share one attempt', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const a = lease(t, parsePgUrl(db.url))
  const [x, y] = await Promise.all([a.tryAcquire(), a.tryAcquire()])
  t.same([x, y], [true, true])
  await a.close()
  // Reentrant session locks would need as many unlocks: one attempt means the
  // lock is free for others as soon as the session ends.
  const b = lease(t, parsePgUrl(db.url))
  t.equal(await b.tryAcquire(), true)
})

t.test('a close while an attempt runs: the attempt reports not held and the lock is free', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = lease(t, location)
  const attempt = a.tryAcquire()
  await a.close()
  t.equal(await attempt, false)
  t.equal(a.held, false)
  t.equal(await lease(t, location).tryAcquire(), true)
})

t.test('an unreachable database means "not the holder", logged once per outage, and recovers', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  keepAlive(t)
  const proxy = await pgProxy(t)
  const location = parsePgUrl(proxy.via(db.url))
  const a = lease(t, location)
  t.equal(await a.tryAcquire(), true)
  await proxy.cut()
  await until(() => !a.held, 'the lease to be lost')
  t.equal(await a.tryAcquire(), false)
  t.equal(await a.tryAcquire(), false)
  t.equal(a.logs.filter((l) => l.includes('cannot check the scheduler lease')).length, 1)
  await proxy.restore()
  t.equal(await a.tryAcquire(), true)
  t.ok(a.logs.some((l) => l.includes('scheduler lease check works again')))
})

t.test('a query failure on a live connection drops it and reports not held', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const { logger, logs } = captureLogger()
  // A lock key out of int4 range makes the server refuse the query, not the connection.
  const a = createPgLease({ location: parsePgUrl(db.url), logger, lock: 2 ** 40 })
  t.teardown(() => a.close())
  t.equal(await a.tryAcquire(), false)
  t.ok(logs.some((l) => l.includes('cannot check the scheduler lease')))
})
