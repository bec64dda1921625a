import t from 'tap'

import { createPgBus } from '../../../control-plane/src/cluster/pg-bus.js'
import type { ChangeEvent } from '../../../control-plane/src/events.js'
import { parsePgUrl } from '../../../control-plane/src/store/pg-url.js'
import { until } from '../../kit/wait.js'
import { pgExec, pgProxy, pgSchema } from '../../kit/pg.js'
import { captureLogger } from '../../kit/logs.js'
import { nextEvent, roundTrip, startBus } from './support.js'

const rotate = (services: string[]): ChangeEvent => ({ kind: 'services', services, reason: 'pair.rotate' })
const isServices = (e: ChangeEvent): e is Extract<ChangeEvent, { kind: 'services' }> => e.kind === 'services'

t.test('an event published on one replica reaches the other once, and its publisher once', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'replica-a')
  const b = await startBus(t, location, 'replica-b')

  const heard = nextEvent(b.bus)
  a.bus.publish(rotate(['web', 'api']))
  t.same(a.events, [rotate(['web', 'api'])], 'the publisher hears it at once')
  t.same(await heard, rotate(['web', 'api']), 'the other replica hears it')

  // Notifications reach every listener in the order they were sent: once b's
  // marker reaches a, a's own echo (sent before) has been seen and dropped.
  await roundTrip(b.bus, a.bus, 'marker')
  t.same(a.events.map((e) => e.kind === 'services' && e.reason), ['pair.rotate', 'marker'], 'no echo')
  t.same(b.events, [rotate(['web', 'api']), { kind: 'services', services: [], reason: 'marker' }])

  const revoked = nextEvent(a.bus, (e) => e.kind === 'agent-revoked')
  b.bus.publish({ kind: 'agent-revoked', agentId: 'agt_x', service: 'web' })
  t.same(await revoked, { kind: 'agent-revoked', agentId: 'agt_x', service: 'web' })
})

t.test('a big services list is split on the wire and arrives whole', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  const services = Array.from({ length: 600 }, (_, i) => `svc-${i}-${'n'.repeat(40)}`)
  a.bus.publish({ kind: 'services', services, reason: 'intention.add' })
  t.equal(a.events.length, 1, 'the publisher hears it as one event')
  await roundTrip(a.bus, b.bus, 'done')
  const parts = b.events.filter(isServices).filter((e) => e.reason === 'intention.add')
  t.ok(parts.length > 1, `arrived in ${parts.length} parts`)
  t.same(parts.flatMap((e) => e.services), services)
})

t.test('when the LISTEN connection is terminated the bus reconnects, emits resync, and hears changes again', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  const resync = nextEvent(a.bus, (e) => e.kind === 'resync')
  const resyncB = nextEvent(b.bus, (e) => e.kind === 'resync')
  const killed = await pgExec<{ ok: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()`,
    [`LISTEN "${location.channel}"`],
  )
  t.equal(killed.length, 2, 'both replicas were listening')
  t.match(await resync, { kind: 'resync', reason: /missed/ })
  t.ok(a.logs.some((l) => l.includes('LISTEN connection lost')))
  await resyncB
  await roundTrip(b.bus, a.bus, 'after')
  await roundTrip(a.bus, b.bus, 'after too')
  t.equal(b.events.filter((e) => e.kind === 'services' && e.reason === 'after').length, 1, 'b still drops its own echo')
})

t.test('an outage of the database: reconnection retries with backoff until it answers, then resync', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const proxy = await pgProxy(t)
  const location = parsePgUrl(proxy.via(db.url))
  const a = await startBus(t, location, 'a')
  await proxy.cut()
  await until(() => a.logs.filter((l) => l.includes('LISTEN reconnection failed')).length >= 2, 'failed reconnections')
  t.notOk(a.events.some((e) => e.kind === 'resync'), 'no resync while the database is away')
  const resync = nextEvent(a.bus, (e) => e.kind === 'resync')
  await proxy.restore()
  await resync
  t.pass('resynchronised after the outage')
  t.notOk(a.logs.join('').includes('password'), 'no credentials in logs')
})

t.test('a malformed notification is logged and dropped; the bus goes on', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  await pgExec('SELECT pg_notify($1, $2)', [location.channel, 'garbage'])
  await pgExec('SELECT pg_notify($1, $2)', [location.channel, '{"v":1,"r":"z","e":{"kind":"resync","reason":"x"}}'])
  await pgExec('SELECT pg_notify($1, $2)', [`${location.channel}_other`, 'elsewhere'])
  await roundTrip(b.bus, a.bus, 'still alive')
  t.same(a.events, [{ kind: 'services', services: [], reason: 'still alive' }])
  const dropped = a.logs.filter((l) => l.includes('dropped a malformed change notification'))
  t.equal(dropped.length, 2)
  t.match(dropped[0], /not JSON/)
  t.notMatch(dropped.join(''), /garbage/, 'the payload itself is not logged')
})

t.test('a NOTIFY the server refuses is logged; the change still reached local subscribers', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const a = await startBus(t, parsePgUrl(db.url), 'a', { maxPayloadBytes: 100_000 })
  a.bus.publish(rotate(Array.from({ length: 400 }, (_, i) => `s${i}-${'x'.repeat(30)}`)))
  await a.bus.flush()
  t.equal(a.events.length, 1)
  t.ok(a.logs.some((l) => l.includes('could not notify other replicas')))
})

t.test('after close, publish reaches local subscribers only; close twice is fine', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const a = await startBus(t, parsePgUrl(db.url), 'a')
  await a.bus.close()
  a.bus.publish(rotate(['x']))
  t.equal(a.events.length, 1)
  t.ok(a.logs.some((l) => l.includes('bus closed')))
  await a.bus.close()
})

t.test('a NOTIFY connection dropped while idle is logged and replaced at the next publish', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const a = await startBus(t, location, 'a')
  const b = await startBus(t, location, 'b')
  await roundTrip(a.bus, b.bus, 'first')
  const killed = await pgExec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`keymesh:${a.id}:notify`])
  t.equal(killed.length, 1)
  await until(() => a.logs.some((l) => l.includes('NOTIFY connection failed while idle')), 'the idle error to be logged')
  await roundTrip(a.bus, b.bus, 'second')
  t.pass('the next change went through a new connection')
})

t.test('close during start leaves no LISTEN connection behind', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const location = parsePgUrl(db.url)
  const { logger, logs } = captureLogger()
  const bus = createPgBus({ location, logger, replicaId: 'a' })
  const started = bus.start()
  await bus.close()
  await started
  t.notMatch(logs.join(''), /listening for changes/, 'not logged as listening')
  await until(
    async () => (await pgExec('SELECT pid FROM pg_stat_activity WHERE query = $1', [`LISTEN "${location.channel}"`])).length === 0,
    'the LISTEN session to end',
  )
  t.pass('nobody listens on this channel')
})

t.test('start fails with CP_ERR_STORE when the database does not answer', async (t) => {
  const { logger } = captureLogger()
  const bus = createPgBus({ location: parsePgUrl('postgres://user:secret@127.0.0.1:1/test'), logger, replicaId: 'a' })
  const err = await bus.start().catch((e: unknown) => e)
  t.match(err, { code: 'CP_ERR_STORE', message: /cannot LISTEN for changes at postgres:\/\/user:\*\*\*@127\.0\.0\.1:1\/test/ })
  t.notMatch((err as Error).message, /secret/)
  await bus.close()
})
