// Changes staged inside their write transaction (ChangeBus.stage, called by
// perform()): the database delivers them to the other replicas at COMMIT, so the
// publishing replica's NOTIFY connection, or its survival after COMMIT, no longer
// matters; a rollback sends nothing.
import t from 'tap'
import { pino } from 'pino'

import { createAuditLog } from '../../../control-plane/src/audit.js'
import type { CpContext } from '../../../control-plane/src/context.js'
import type { ChangeEvent } from '../../../control-plane/src/events.js'
import { perform } from '../../../control-plane/src/operation.js'
import { openPgStore, type PgStore } from '../../../control-plane/src/store/pg-store.js'
import { parsePgUrl } from '../../../control-plane/src/store/pg-url.js'
import type { StoreTx } from '../../../control-plane/src/store/store.js'
import { pgExec, pgSchema } from '../../kit/pg.js'
import { roundTrip, startBus } from './support.js'

interface Tap {
  teardown(fn: () => unknown): void
}

const rotate = (services: string[]): ChangeEvent => ({ kind: 'services', services, reason: 'pair.rotate' })

async function openStore(t: Tap, url: string): Promise<PgStore> {
  const store = await openPgStore({ url, poolSize: 2 })
  t.teardown(() => store.close())
  return store
}

/** The minimum of a context that perform() uses, on `store` and `bus`. */
function contextOf(store: PgStore, bus: CpContext['bus']): CpContext {
  return { store, bus, audit: createAuditLog(), logger: pino({ level: 'silent' }) } as unknown as CpContext
}

t.test('a change made through perform() reaches the other replica even when the publisher\'s bus closes right after COMMIT', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  const store = await openStore(t, db.url)
  // What a replica dying between COMMIT and publish() looks like to the others:
  // its NOTIFY connection is gone the moment the transaction has committed.
  const ctx = contextOf(
    Object.assign(Object.create(store) as PgStore, {
      transaction: <T>(fn: (tx: StoreTx) => Promise<T>) => store.transaction(fn).then(async (r) => (await a.bus.close(), r)),
    }),
    a.bus,
  )

  const result = await perform(ctx, {
    actor: { kind: 'system', task: 'test' },
    action: 'pair.rotate',
    target: 'pair:api:web',
    run: async (tx) => {
      await tx.putMeta('rotated', new Uint8Array([1]))
      return { result: 'done', events: [rotate(['api', 'web'])] }
    },
  })
  t.equal(result, 'done')
  t.same(a.events, [rotate(['api', 'web'])], 'the publisher\'s own subscribers heard it once, after commit')
  t.notOk(a.logs.some((l) => l.includes('bus closed')), 'nothing was left to send after commit')

  const c = await startBus(t, location, 'c')
  await roundTrip(c.bus, b.bus, 'marker')
  t.same(b.events.filter((e) => e.kind === 'services' && e.reason === 'pair.rotate'), [rotate(['api', 'web'])], 'the other replica heard it, once')
  const notifiers = await pgExec(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, [`keymesh:${a.id}:notify`])
  t.same(notifiers, [], 'no NOTIFY connection was ever needed')
})

t.test('a transaction that rolls back sends nothing to the other replicas', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  const store = await openStore(t, db.url)
  const failed = await store
    .transaction(async (tx) => {
      t.equal(await a.bus.stage(tx, [rotate(['web'])]), true, 'staged')
      throw new Error('changed my mind')
    })
    .catch((e: Error) => e.message)
  t.equal(failed, 'changed my mind')
  await roundTrip(a.bus, b.bus, 'marker')
  t.same(b.events, [{ kind: 'services', services: [], reason: 'marker' }], 'only the marker arrived')
})

t.test('staged events: a big services list is split, resync is never sent, and they leave only at COMMIT', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  const store = await openStore(t, db.url)
  const services = Array.from({ length: 600 }, (_, i) => `svc-${i}-${'n'.repeat(40)}`)
  await store.transaction(async (tx) => {
    await a.bus.stage(tx, [{ kind: 'resync', reason: 'local only' }, { kind: 'services', services, reason: 'intention.add' }])
    // A marker sent outside the transaction overtakes the staged parts: they wait for COMMIT.
    await roundTrip(a.bus, b.bus, 'before commit')
  })
  await roundTrip(a.bus, b.bus, 'after commit')
  const reasons = b.events.map((e) => (e.kind === 'services' ? e.reason : e.kind))
  t.equal(reasons[0], 'before commit')
  t.equal(reasons.at(-1), 'after commit')
  const parts = b.events.filter((e): e is Extract<ChangeEvent, { kind: 'services' }> => e.kind === 'services' && e.reason === 'intention.add')
  t.ok(parts.length > 1, `arrived in ${parts.length} parts`)
  t.same(parts.flatMap((e) => e.services), services, 'together they name every service')
  t.notOk(b.events.some((e) => e.kind === 'resync'), 'no resync crossed')
})

t.test('a transaction that cannot carry notifications (SQLite) is refused by stage(): perform() publishes after commit', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  t.equal(await a.bus.stage({} as StoreTx, [rotate(['web'])]), false)

  const store = await openStore(t, db.url)
  // The same store, with tx objects that lack notify(), as SQLite's do.
  const plain = Object.assign(Object.create(store) as PgStore, {
    transaction: <T>(fn: (tx: StoreTx) => Promise<T>) => store.transaction((tx) => fn(Object.assign(tx, { notify: undefined }))),
  })
  const heard = new Promise<ChangeEvent>((resolve) => b.bus.subscribe(resolve))
  await perform(contextOf(plain, a.bus), {
    actor: { kind: 'system', task: 'test' },
    action: 'pair.rotate',
    target: 'pair:api:web',
    run: async () => ({ result: undefined, events: [rotate(['api'])] }),
  })
  t.same(await heard, rotate(['api']), 'sent after commit on the bus\'s own connection')
  t.same(a.events, [rotate(['api'])])
})
