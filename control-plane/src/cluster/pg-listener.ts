// The LISTEN side of the pg bus (pg-bus.ts): one dedicated connection that LISTENs
// on the installation's channel and hands every payload on.
//
// What must hold:
// - a lost connection is replaced, with jittered backoff, until closed; each time
//   it listens again `onRestored` runs (notifications sent meanwhile are lost:
//   PostgreSQL queues nothing for a session that is gone);
// - a connection that went silent (half-open: the database host or the network
//   vanished without a reset) counts as lost: the listener pings itself every
//   `pingIntervalMs` and drops the connection when `SELECT 1` fails or has no
//   answer within `pingTimeoutMs`. The server's keepalives (pgConnection) end
//   the session on its side too;
// - downForMs() tells how long it has not been listening (readiness.ts).
import pg from 'pg'
import type { Logger } from 'pino'

import type { CancelTimer, TimerClock } from '../../../platform/src/index.js'
import { pgConnection } from '../store/pg-store.js'
import type { PgLocation } from '../store/pg-url.js'
import { pgErrorText } from '../store/pg-errors.js'

export interface PgListenerOptions {
  readonly location: PgLocation
  readonly logger: Logger
  readonly replicaId: string
  readonly clock: TimerClock
  /** [0, 1), for the backoff's jitter. */
  readonly random: () => number
  readonly minBackoffMs: number
  readonly maxBackoffMs: number
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  onPayload(payload: string): void
  onRestored(): void
}

export interface PgListener {
  /** Connects and LISTENs; rejects (with pg's error) when that fails. */
  start(): Promise<void>
  /** 0 while listening; else how long since the connection was lost. */
  downForMs(): number
  close(): Promise<void>
}

export function createPgListener(o: PgListenerOptions): PgListener {
  const { location, logger: log, clock } = o
  let listener: pg.Client | undefined
  let retry: CancelTimer | undefined
  let ping: CancelTimer | undefined
  /** The connection whose ping has not been answered yet. */
  let pinging: pg.Client | undefined
  let attempt = 0
  let closed = false
  let downSince: number | undefined
  // Called once per connection that was listening; the first cause wins.
  let lose: ((why: string) => void) | undefined

  /** Opens the LISTEN connection; on loss, schedules a reconnection. */
  const listen = async (): Promise<void> => {
    const client = new pg.Client(pgConnection(location, `keymesh:${o.replicaId}:listen`))
    // Only a connection that was listening counts as lost: a failed attempt is
    // reported by connect()/query() rejecting (pg emits 'end' for it too).
    let live = false
    const onLost = (why: string): void => {
      if (!live) return
      live = false
      if (listener === client) listener = undefined
      downSince ??= clock.monotonicMs()
      // end() destroys the socket when a query hangs, so a silent peer cannot keep it open.
      client.end().catch(() => undefined)
      if (closed) return
      log.warn({ err: why }, 'LISTEN connection lost; reconnecting')
      schedule()
    }
    client.on('error', (err) => onLost(pgErrorText(err, location)))
    client.on('end', () => onLost('connection ended'))
    client.on('notification', (msg) => o.onPayload(msg.payload ?? ''))
    try {
      await client.connect()
      await client.query(`LISTEN "${location.channel}"`)
    } catch (err) {
      await client.end().catch(() => undefined)
      throw err
    }
    if (closed) {
      await client.end().catch(() => undefined)
      return
    }
    live = true
    listener = client
    lose = onLost
    downSince = undefined
  }

  const schedule = (): void => {
    const ceiling = Math.min(o.maxBackoffMs, o.minBackoffMs * 2 ** attempt)
    attempt++
    // Jitter spreads the replicas' reconnections after a database restart.
    const delay = ceiling / 2 + (o.random() * ceiling) / 2
    retry = clock.setTimer(delay, () => {
      retry = undefined
      if (closed) return
      listen().then(
        () => {
          if (closed) return
          attempt = 0
          o.onRestored()
        },
        (err: unknown) => {
          log.warn({ err: pgErrorText(err, location), attempt }, 'LISTEN reconnection failed')
          if (!closed) schedule()
        },
      )
    })
  }

  /** Pings the current connection every interval; one ping at a time. */
  const pingLater = (): void => {
    ping = clock.setTimer(o.pingIntervalMs, () => {
      if (closed) return
      pingLater()
      const client = listener
      const lost = lose
      if (!client || !lost || pinging === client) return
      pinging = client
      // After a long event-loop stall the timer fires before the poll phase reads
      // an answer already waiting in the socket: look again two turns later, so a
      // busy replica does not drop a healthy connection and resync every agent.
      const expired = (turns: number): void => {
        if (pinging !== client) return
        if (turns > 0) setImmediate(() => expired(turns - 1))
        else lost(`no answer to a ping within ${o.pingTimeoutMs} ms`)
      }
      const timeout = clock.setTimer(o.pingTimeoutMs, () => expired(2))
      const answered = (err?: Error): void => {
        timeout()
        if (pinging === client) pinging = undefined
        if (err) lost(`ping failed: ${pgErrorText(err, location)}`)
      }
      client.query('SELECT 1').then(() => answered(), answered)
    })
  }

  return {
    async start() {
      await listen()
      if (!closed) pingLater()
    },
    downForMs: () => (downSince === undefined ? 0 : Math.max(0, clock.monotonicMs() - downSince)),
    async close() {
      if (closed) return
      closed = true
      retry?.()
      ping?.()
      const client = listener
      listener = undefined
      await client?.end().catch(() => undefined)
    },
  }
}
