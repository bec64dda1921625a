// The PostgreSQL store's writer queue fails fast instead of queueing behind a
// database that does not answer: the queue alone (its connect step stands in for
// the pool), then the store in front of a connection that went silent.
import t from 'tap'

import { WriterQueue } from '../../../control-plane/src/store/pg-writer-queue.js'
import { openPgStore } from '../../../control-plane/src/store/pg-store.js'
import { PG_LOCKS, parsePgUrl } from '../../../control-plane/src/store/pg-url.js'
import { storeFault } from '../../../control-plane/src/store/store-faults.js'
import { pgExec, pgProxy, pgSchema } from '../../kit/pg.js'
import { rejectsCode } from './contract.js'
import { bytes } from './fixtures.js'

interface Pending<T> {
  readonly promise: Promise<T>
  resolve(v: T): void
  reject(e: Error): void
}

function pending<T>(): Pending<T> {
  let resolve!: (v: T) => void
  let reject!: (e: Error) => void
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

/** Lets a writer that entered reach its connect step (the mutex hands over in a later turn). */
const settle = () => new Promise((resolve) => setImmediate(resolve))

const DOWN = new Error('connect ECONNREFUSED')
const isDown = (e: unknown): boolean => e === DOWN

function queue(over: { maxWaiting?: number } = {}) {
  let now = 0
  const q = new WriterQueue({ maxWaiting: over.maxWaiting ?? 1_000, connectTimeoutMs: 5_000, now: () => now, display: 'postgres://db/x' })
  let connects = 0
  /** A writer whose connection is `c` (a value, or a promise the test settles). */
  const writer = (c: Promise<string> | string = 'conn') =>
    q.enter(() => {
      connects++
      return Promise.resolve(c)
    }, isDown)
  return { q, writer, advance: (ms: number) => (now += ms), connects: () => connects }
}

t.test('beyond maxWaiting writers waiting for their turn, the next is refused at once', async (t) => {
  const { writer } = queue({ maxWaiting: 2 })
  const first = await writer()
  const second = writer()
  const third = writer()
  await rejectsCode(t, writer(), 'CP_ERR_STORE', /database unreachable at postgres:\/\/db\/x: 2 write transactions are already waiting/)
  first.release()
  ;(await second).release()
  ;(await third).release()
  const later = await writer()
  t.equal(later.connection, 'conn', 'room again once they had their turn')
  later.release()
})

t.test('while the writer whose turn it is has had no answer for connectTimeoutMs, new writers are refused at once', async (t) => {
  const { writer, advance } = queue()
  const slow = pending<string>()
  const first = writer(slow.promise)
  const second = writer()
  await settle()
  advance(4_999)
  const third = writer()
  advance(1)
  await rejectsCode(t, writer(), 'CP_ERR_STORE', /: the write whose turn it is has had no answer for 5000 ms/)
  slow.resolve('late')
  const turn = await first
  t.equal(turn.connection, 'late', 'the slow writer goes on once it is answered')
  turn.release()
  ;(await second).release()
  ;(await third).release()
})

t.test('when a writer cannot reach the database, those queued behind it fail without trying; the next writer probes', async (t) => {
  const { writer, connects } = queue()
  const refused = pending<string>()
  const first = writer(refused.promise)
  const queued = [writer(), writer()]
  refused.reject(DOWN)
  await t.rejects(first, DOWN, 'the first writer gets the database\'s error')
  for (const w of queued) await rejectsCode(t, w, 'CP_ERR_STORE', /an earlier write could not reach it/)
  t.equal(connects(), 1, 'only the first writer tried')

  const probing = pending<string>()
  const probe = writer(probing.promise)
  await settle()
  await rejectsCode(t, writer(), 'CP_ERR_STORE', /the last write could not reach it \(1 waiting\)/)
  probing.resolve('back')
  const turn = await probe
  t.equal(turn.connection, 'back')
  const after = writer()
  turn.release()
  ;(await after).release()
  t.equal(connects(), 3, 'once one got through, writers queue again')
})

t.test('a failure that does not mean the database is away starts no outage', async (t) => {
  const { writer, connects } = queue()
  const failing = pending<string>()
  const first = writer(failing.promise)
  const second = writer()
  failing.reject(new Error('syntax error'))
  await t.rejects(first, /syntax error/)
  ;(await second).release()
  t.equal(connects(), 2)
})

t.test('the store: writers arriving while one hangs on a silent connection are refused at once; all finish once it answers', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const proxy = await pgProxy(t)
  let now = 0
  const store = await openPgStore({ url: proxy.via(db.url), poolSize: 2, connectTimeoutMs: 1_000, now: () => now })
  t.teardown(() => store.close())
  await store.transaction((tx) => tx.putMeta('warm', bytes(1)))

  proxy.stall() // the pooled connection goes silent: the next BEGIN gets no answer
  const hanging = store.transaction((tx) => tx.putMeta('first', bytes(2)))
  const queued = store.transaction((tx) => tx.putMeta('second', bytes(3)))
  await settle()
  now += 1_000
  await rejectsCode(t, store.transaction((tx) => tx.putMeta('third', bytes(4))), 'CP_ERR_STORE', /database unreachable at postgres:.*: the write whose turn it is has had no answer for 1000 ms$/)
  t.same(await store.read((r) => r.getMeta('warm')), bytes(1), 'reads are not held up (a connection of their own)')

  proxy.resume()
  await hanging
  await queued
  t.same(await store.read(async (r) => [await r.getMeta('first'), await r.getMeta('second'), await r.getMeta('third')]), [bytes(2), bytes(3), null])
})

t.test('the store: a write lock held elsewhere longer than the connect timeout is waited for, not taken for an outage', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  let now = 0
  const store = await openPgStore({ url: db.url, poolSize: 3, connectTimeoutMs: 1_000, now: () => now })
  t.teardown(() => store.close())
  const other = await openPgStore({ url: db.url, poolSize: 1 }) // another replica
  t.teardown(() => other.close())
  const holding = pending<void>()
  const locked = pending<void>()
  const long = other.transaction(async (tx) => {
    await tx.putMeta('elsewhere', bytes(9)) // it holds the installation's write lock now
    locked.resolve()
    await holding.promise
  })
  await locked.promise
  const waiting = store.transaction((tx) => tx.putMeta('first', bytes(1)))
  // Wait until that writer is queued on the lock itself (its BEGIN answered).
  const { lockSpace } = parsePgUrl(db.url)
  const waitingOnLock = async () => (await pgExec<{ n: string }>(
    "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2 AND objsubid = 2",
    [lockSpace >>> 0, PG_LOCKS.write],
  ))[0]?.n !== '0'
  while (!(await waitingOnLock())) await settle()
  now += 5_000 // far past connectTimeoutMs while the lock is held elsewhere
  const arriving = store.transaction((tx) => tx.putMeta('second', bytes(2)))
  holding.resolve()
  await long
  await waiting
  await arriving
  t.same(await store.read(async (r) => [await r.getMeta('elsewhere'), await r.getMeta('first'), await r.getMeta('second')]), [bytes(9), bytes(1), bytes(2)],
    'every writer finished once the lock was free; none was refused')
})

t.test('the store: every connection busy is not an outage', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const store = await openPgStore({ url: db.url, poolSize: 1, connectTimeoutMs: 300 })
  t.teardown(() => store.close())
  const holding = pending<void>()
  const reading = pending<void>()
  const read = store.read(async (r) => {
    reading.resolve()
    await holding.promise
    return r.getMeta('x')
  })
  await reading.promise
  const busy = store.transaction((tx) => tx.putMeta('w', bytes(1)))
  await rejectsCode(t, busy, 'CP_ERR_STORE', /all 1 connections to postgres:.* are busy; try again/)
  t.equal(storeFault(await busy.catch((e: unknown) => e)), null, 'readiness does not take it for the database being unreachable')
  holding.resolve()
  await read
  await store.transaction((tx) => tx.putMeta('w', bytes(1)))
  t.same(await store.read((r) => r.getMeta('w')), bytes(1), 'the next writer is not refused as if the database were away')
})

t.test('the store: a full pool whose connections are still being made to a silent database is an outage, not busy', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const proxy = await pgProxy(t)
  const store = await openPgStore({ url: proxy.via(db.url), poolSize: 1, connectTimeoutMs: 300 })
  t.teardown(() => store.close())
  // The database goes silent: the pooled connection is cut, new ones are accepted and never answered.
  proxy.freeze()
  await proxy.cut()
  await proxy.restore()
  const read = store.read((r) => r.getMeta('x')).catch((e: unknown) => e) // takes the pool's one place, connecting
  await settle()
  const write = store.transaction((tx) => tx.putMeta('w', bytes(1))).catch((e: unknown) => e)
  const [readErr, writeErr] = await Promise.all([read, write])
  t.match(readErr, { code: 'CP_ERR_STORE' })
  t.match(writeErr, { code: 'CP_ERR_STORE', message: /database unreachable at postgres:/ }, 'the writer waiting for the pool is told the database does not answer')
  t.match(storeFault(writeErr), { code: 'CP_ERR_STORE_WRITE', reason: /^database unreachable/ }, 'and readiness flips')
})
