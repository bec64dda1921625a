// The elapsed ledger (control-plane/src/elapsed-ledger.ts) on one SQLite store: time
// is counted from the reading a process last saw, written every LEDGER_WRITE_MS, and
// never twice however two processes (replicas) take turns advancing it.
import t, { type Test } from 'tap'

import { ElapsedLedger, LEDGER_WRITE_MS } from '../../control-plane/src/elapsed-ledger.js'
import { openSqliteStore, type Store } from '../../control-plane/src/store/index.js'
import { FakeClock, HOUR, SECOND } from '../kit/fake-clock.js'
import { captureLogger } from '../kit/logs.js'

async function store(t: Test): Promise<Store> {
  const s = await openSqliteStore({ dir: t.testdir() })
  t.teardown(() => s.close())
  return s
}

const persisted = (s: Store) => s.read((r) => r.getElapsedLedger())

t.test('counts from load, writes once LEDGER_WRITE_MS have gathered, and a flush writes the rest', async (t) => {
  const s = await store(t)
  const clock = new FakeClock()
  const ledger = new ElapsedLedger({ store: s, clock, logger: captureLogger().logger, writer: 'a' })
  t.same(await persisted(s), { observedMs: 0, writer: '', advancedAt: 0 }, 'no row before the first advance')
  await ledger.load()
  clock.advance(SECOND)
  t.equal(await ledger.advance(), SECOND, 'the reading includes what is not written yet')
  t.equal((await persisted(s)).observedMs, 0)
  clock.jump(3 * HOUR)
  clock.advance(LEDGER_WRITE_MS)
  t.equal(await ledger.advance(), SECOND + LEDGER_WRITE_MS, 'a step of the wall clock adds nothing')
  t.same(await persisted(s), { observedMs: SECOND + LEDGER_WRITE_MS, writer: 'a', advancedAt: clock.now() })
  clock.advance(SECOND)
  t.equal(await s.read((r) => ledger.observed(r)), 2 * SECOND + LEDGER_WRITE_MS)
  await ledger.flush()
  t.equal((await persisted(s)).observedMs, 2 * SECOND + LEDGER_WRITE_MS, 'flushed at a clean stop')
  t.equal(await s.read((r) => ledger.guard(r, null)), null)
  t.equal(await s.read((r) => ledger.guard(r, clock.now() + HOUR)), 2 * SECOND + LEDGER_WRITE_MS + HOUR)
  t.equal(await s.read((r) => ledger.guard(r, clock.now() - HOUR)), 2 * SECOND + LEDGER_WRITE_MS, 'a deadline already past needs nothing more')
  t.ok(await s.read((r) => ledger.covers(r, undefined)), 'no guard, nothing to wait for')
  t.notOk(await s.read((r) => ledger.covers(r, HOUR)))
})

t.test('two processes taking turns never count the same time twice', async (t) => {
  const s = await store(t)
  const clock = new FakeClock()
  const [a, b] = ['a', 'b'].map((writer) => new ElapsedLedger({ store: s, clock, logger: captureLogger().logger, writer })) as [ElapsedLedger, ElapsedLedger]
  await a.load()
  await b.load()
  clock.advance(10 * SECOND)
  t.equal(await a.advance(), 10 * SECOND)
  t.equal(await b.advance(), 10 * SECOND, 'B finds A\'s write and counts from it, adding nothing')
  clock.advance(10 * SECOND)
  t.ok((await s.read((r) => b.observed(r))) <= 20 * SECOND, 'B\'s estimate never exceeds what elapsed')
  t.equal(await a.advance(), 20 * SECOND)
  // The lease moves to B: only B advances now.
  clock.advance(10 * SECOND)
  t.equal(await b.advance(), 20 * SECOND, 'B first sees A\'s last write: it counts from now (the gap since is lost, erring late)')
  clock.advance(10 * SECOND)
  t.equal(await b.advance(), 30 * SECOND, 'then adds the time since')
  await a.flush()
  t.equal(await a.advance(), 30 * SECOND, 'A, no longer the writer, writes nothing and counts from B\'s reading')
  clock.advance(10 * SECOND)
  await b.flush()
  t.same(await persisted(s), { observedMs: 40 * SECOND, writer: 'b', advancedAt: clock.now() }, '50 s elapsed, 40 s counted, none twice')
})

t.test('items due by the wall clock wait for their elapsed time, each logged once', async (t) => {
  const s = await store(t)
  const clock = new FakeClock()
  const { logger, logs } = captureLogger()
  const ledger = new ElapsedLedger({ store: s, clock, logger, writer: 'a' })
  await ledger.load()
  const items = [{ id: 'x', required: HOUR }, { id: 'y', required: null }, { id: 'z', required: undefined }]
  const guard = (i: (typeof items)[number]) => ({ what: `item ${i.id}`, deadline: clock.now(), required: i.required })
  t.same(await ledger.due([], guard), [])
  t.same((await ledger.due(items, guard)).map((i) => i.id), ['y', 'z'])
  t.same((await ledger.due(items, guard)).map((i) => i.id), ['y', 'z'])
  t.equal(logs.filter((l) => /item x: its wall time has come but not the elapsed time/.test(l) && /"level":40/.test(l)).length, 1, 'logged once')
  for (let i = 0; i < 1_001; i++) await ledger.due([{ id: `n${i}`, required: HOUR }], guard)
  clock.advance(HOUR)
  t.same((await ledger.due(items, guard)).map((i) => i.id), ['x', 'y', 'z'], 'due once the hour is observed')
})

t.test('a tick with nothing to write runs no write transaction; one with something writes once', async (t) => {
  const s = await store(t)
  const clock = new FakeClock()
  const ledger = new ElapsedLedger({ store: s, clock, logger: captureLogger().logger, writer: 'a' })
  let writes = 0
  s.observe?.({ onWriteOutcome: () => void writes++, onReadError: () => undefined })
  await ledger.load()
  for (let i = 0; i < 4; i++) {
    clock.advance(SECOND)
    await ledger.advance()
  }
  t.equal(writes, 0, 'four ticks under LEDGER_WRITE_MS: no write transaction (readiness would take an empty commit for a working store)')
  clock.advance(LEDGER_WRITE_MS)
  t.equal(await ledger.advance(), 4 * SECOND + LEDGER_WRITE_MS)
  t.equal(writes, 1)
  t.equal((await persisted(s)).observedMs, 4 * SECOND + LEDGER_WRITE_MS)
})

t.test('a write by another process between the read and the set adds nothing, and the next tick counts from it', async (t) => {
  const s = await store(t)
  const clock = new FakeClock()
  const a = new ElapsedLedger({ store: s, clock, logger: captureLogger().logger, writer: 'a' })
  const b = new ElapsedLedger({ store: s, clock, logger: captureLogger().logger, writer: 'b' })
  await a.load()
  await b.load()
  clock.advance(10 * SECOND)
  // B writes while A is between its read and its compare-and-set.
  const transaction = s.transaction.bind(s)
  s.transaction = async (fn) => {
    s.transaction = transaction
    await b.advance()
    return transaction(fn)
  }
  t.equal(await a.advance(), 0, "A's set failed: it adds nothing")
  t.same(await persisted(s), { observedMs: 10 * SECOND, writer: 'b', advancedAt: clock.now() }, "B's write stands")
  clock.advance(10 * SECOND)
  t.equal(await a.advance(), 10 * SECOND, "A first sees B's write: it counts from now")
  clock.advance(10 * SECOND)
  t.equal(await a.advance(), 20 * SECOND, 'then adds the time since: the same 10 s was never counted twice')
})
