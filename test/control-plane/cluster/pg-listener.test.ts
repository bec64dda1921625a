// The bus's LISTEN connection when it goes silent rather than away (a host or
// network that vanished without a reset): its own pings notice, it reconnects and
// resynchronises, and readiness (readiness.ts) sees how long it was not listening.
// Also the periodic resync, the safety net for anything missed all the same.
import t from 'tap'
import { readFileSync } from 'node:fs'

import { allReady, listenReadiness } from '../../../control-plane/src/readiness.js'
import { parsePgUrl } from '../../../control-plane/src/store/pg-url.js'
import { until } from '../../kit/wait.js'
import { FakeClock } from '../../kit/fake-clock.js'
import { pgExec, pgProxy, pgSchema } from '../../kit/pg.js'
import { nextEvent, roundTrip, startBus } from './support.js'

t.test('a LISTEN connection that stops answering is dropped at its next ping; the bus reconnects, resyncs and hears again', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const proxy = await pgProxy(t)
  // The real clock: a ping timeout well above a busy machine's round trip, since a
  // connection dropped while a marker is in flight would miss it for good.
  const a = await startBus(t, parsePgUrl(proxy.via(db.url)), 'a', { pingIntervalMs: 20, pingTimeoutMs: 2_000 })
  const b = await startBus(t, parsePgUrl(db.url), 'b')
  await roundTrip(b.bus, a.bus, 'before')

  const resync = nextEvent(a.bus, (e) => e.kind === 'resync')
  proxy.stall()
  t.match(await resync, { kind: 'resync', reason: /missed/ })
  t.ok(a.logs.some((l) => l.includes('no answer to a ping within 2000 ms')), 'the silent connection was noticed by its ping')
  await roundTrip(b.bus, a.bus, 'after')
  t.equal(a.bus.downForMs(), 0, 'listening again')
  proxy.resume()
})

t.test('on the clock: a ping is sent every interval, and one unanswered for the timeout drops the connection; readiness fails after 10 s down', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const proxy = await pgProxy(t)
  const clock = new FakeClock()
  const a = await startBus(t, parsePgUrl(proxy.via(db.url)), 'a', { clock, resyncIntervalMs: 3_600_000 })
  const ready = allReady(listenReadiness(a.bus))
  t.same(await ready(), { ready: true })

  proxy.stall()
  clock.advance(10_000) // the ping leaves and gets no answer
  clock.advance(4_999)
  t.notOk(a.logs.some((l) => l.includes('LISTEN connection lost')), 'still waiting for the answer')
  clock.advance(1)
  await until(() => a.logs.some((l) => l.includes('no answer to a ping within 5000 ms')), 'the lost connection to be logged')
  t.equal(a.bus.downForMs(), 0, 'down since now')

  // The database stays away: reconnections fail, and the bus is not ready after 10 s.
  await proxy.cut()
  clock.advance(10_000)
  t.equal(a.bus.downForMs(), 10_000)
  t.same(await ready(), { ready: true }, 'a short outage is tolerated')
  clock.advance(1_000)
  t.same(await ready(), { ready: false, reason: "not hearing other replicas' changes for 11 s" })

  await proxy.restore()
  let resynced = false
  a.bus.subscribe((e) => void (e.kind === 'resync' && /missed/.test(e.reason) && (resynced = true)))
  await until(() => resynced || (clock.advance(50), false), 'the bus to listen again')
  t.equal(a.bus.downForMs(), 0)
  t.same(await ready(), { ready: true })
})

t.test('every resyncIntervalMs the bus tells its subscribers to resync anyway; never after close', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const clock = new FakeClock()
  const a = await startBus(t, parsePgUrl(db.url), 'a', { clock, resyncIntervalMs: 30_000 })
  clock.advance(29_999)
  t.same(a.events, [])
  clock.advance(1)
  t.match(a.events, [{ kind: 'resync', reason: /periodic/ }])
  clock.advance(30_000)
  t.equal(a.events.length, 2, 'and again')
  await a.bus.close()
  clock.advance(60_000)
  t.equal(a.events.length, 2, 'not after close')
})

t.test('readiness without a bus to hear (SQLite) is ready; allReady gives the first reason', async (t) => {
  t.same(listenReadiness(undefined)(), { ready: true })
  t.same(listenReadiness({ downForMs: () => 2_000 }, 1_000)(), { ready: false, reason: "not hearing other replicas' changes for 2 s" })
  const no = (reason: string) => () => ({ ready: false as const, reason })
  t.same(await allReady(async () => ({ ready: true }), no('first'), no('second'))(), { ready: false, reason: 'first' })
  t.same(await allReady()(), { ready: true })
})

/**
 * Bytes that arrived and are not read yet on this host's established TCP socket
 * with local port `port` (Linux: /proc/net/tcp); undefined when there is none.
 */
function unreadBytes(port: number): number | undefined {
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue ... (hex; state 01 = ESTABLISHED)
      const [, local, , state, queues] = line.trim().split(/\s+/)
      if (local === undefined || queues === undefined || state !== '01') continue
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue
      return parseInt(queues.slice(queues.indexOf(':') + 1), 16)
    }
  }
  return undefined
}

t.test('a ping answered during an event-loop stall longer than its timeout does not drop the connection', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const clock = new FakeClock()
  const a = await startBus(t, parsePgUrl(db.url), 'a', { clock, resyncIntervalMs: 3_600_000 })
  const [conn] = await pgExec<{ port: number }>('SELECT client_port AS port FROM pg_stat_activity WHERE application_name = $1', [`keymesh:${a.id}:listen`])
  if (conn === undefined || unreadBytes(conn.port) === undefined) {
    t.plan(0, 'the LISTEN connection\'s socket cannot be found in /proc/net/tcp (not Linux, or not over TCP)')
    return
  }
  // One synchronous block: the ping leaves, the process stalls until the answer is
  // in the socket (its receive queue, seen in /proc), and the timeout is due before
  // the answer is read. Waiting for the bytes, not for a fixed time, keeps the
  // order the same on a busy machine; the deadline only turns a hang into a failure.
  clock.advance(10_000)
  const deadline = Date.now() + 30_000
  while ((unreadBytes(conn.port) ?? 0) === 0) {
    if (Date.now() > deadline) {
      t.fail('the answer to the ping did not reach the socket within 30 s')
      return
    }
  }
  clock.advance(5_000)
  let resynced = false
  a.bus.subscribe((e) => void (e.kind === 'resync' && (resynced = true)))
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  t.notOk(a.logs.some((l) => l.includes('no answer to a ping')), 'the answer waiting in the socket counted')
  t.notOk(resynced, 'no needless resync')
})
