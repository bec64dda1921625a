// The change bus of a replica that shares its PostgreSQL database with others:
// publish() tells this replica's subscribers at once and sends the event to every
// other replica with NOTIFY; one dedicated connection LISTENs for theirs.
//
// What must hold:
// - a publisher's own subscribers hear each event once: notifications carry the
//   sender's replicaId and a replica drops its own echo;
// - a NOTIFY payload stays under PostgreSQL's 8,000-byte limit: a 'services' event
//   too big for one is split into several, which together name every service;
// - notifications sent while the LISTEN connection is down are lost (PostgreSQL
//   does not queue them for a session that is gone), so once it listens again the
//   bus emits { kind: 'resync' } locally and the hub recomputes every key set;
// - a malformed notification is logged and dropped, never thrown.
import pg from 'pg'
import type { Logger } from 'pino'

import { systemClock, type CancelTimer, type TimerClock } from '../../../platform/src/clock.js'
import { cpError } from '../errors.js'
import { createLocalBus, type ChangeBus } from '../events.js'
import type { PgLocation } from '../store/pg-url.js'
import { decodeNotification, encodeNotifications, type WireEvent } from './notification.js'

export interface PgBusOptions {
  readonly location: PgLocation
  readonly logger: Logger
  /** This process's id among the replicas (random per process). */
  readonly replicaId: string
  /** Largest NOTIFY payload sent, in bytes (PostgreSQL refuses 8,000 and more). */
  readonly maxPayloadBytes?: number
  /** First reconnection delay; doubles up to maxBackoffMs. */
  readonly minBackoffMs?: number
  readonly maxBackoffMs?: number
  readonly clock?: TimerClock
  /** [0, 1), for the backoff's jitter. */
  readonly random?: () => number
}

export interface PgBus extends ChangeBus {
  /** Connects and LISTENs; rejects with CP_ERR_STORE when the database cannot be reached. */
  start(): Promise<void>
  /** Resolves when every NOTIFY sent so far has been answered (sent or logged as failed). */
  flush(): Promise<void>
  /** Stops listening, waits for pending NOTIFYs, releases both connections. */
  close(): Promise<void>
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 7_000

export function createPgBus(o: PgBusOptions): PgBus {
  const { location, logger, replicaId } = o
  const clock = o.clock ?? systemClock
  const random = o.random ?? Math.random
  const minBackoff = o.minBackoffMs ?? 250
  const maxBackoff = o.maxBackoffMs ?? 5_000
  const maxPayload = o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES
  const local = createLocalBus()
  const log = logger.child({ component: 'pg-bus', channel: location.channel })

  // One connection for NOTIFY, so notifications leave in the order they were published.
  // Named in pg_stat_activity, so an operator sees which replica holds what.
  const sender = new pg.Pool({
    connectionString: location.connectionString,
    application_name: `keymesh:${replicaId}:notify`,
    max: 1,
    idleTimeoutMillis: 30_000,
  })
  sender.on('error', (err) => log.warn({ err: errText(err) }, 'NOTIFY connection failed while idle'))
  const pending = new Set<Promise<void>>()

  let listener: pg.Client | undefined
  let retry: CancelTimer | undefined
  let attempt = 0
  let closed = false

  // The connection LISTENs on one channel only, so every notification is ours.
  const onNotification = (msg: pg.Notification): void => {
    const decoded = decodeNotification(msg.payload ?? '')
    if (!decoded.ok) {
      log.warn({ why: decoded.why }, 'dropped a malformed change notification')
      return
    }
    if (decoded.replicaId === replicaId) return
    local.publish(decoded.event)
  }

  /** Opens the LISTEN connection; on loss, schedules a reconnection. */
  const listen = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: location.connectionString, application_name: `keymesh:${replicaId}:listen`, keepAlive: true })
    // Only a connection that was listening counts as lost: a failed attempt is
    // reported by connect()/query() rejecting (pg emits 'end' for it too).
    let live = false
    const onLost = (err?: Error): void => {
      if (!live) return
      live = false
      if (listener === client) listener = undefined
      if (closed) return
      log.warn({ err: err ? errText(err) : 'connection ended' }, 'LISTEN connection lost; reconnecting')
      client.end().catch(() => undefined)
      schedule()
    }
    client.on('error', onLost)
    client.on('end', () => onLost())
    client.on('notification', onNotification)
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
  }

  const schedule = (): void => {
    const ceiling = Math.min(maxBackoff, minBackoff * 2 ** attempt)
    attempt++
    // Jitter spreads the replicas' reconnections after a database restart.
    const delay = ceiling / 2 + (random() * ceiling) / 2
    retry = clock.setTimer(delay, () => {
      retry = undefined
      if (closed) return
      listen().then(
        () => {
          if (closed) return
          attempt = 0
          log.info('LISTEN connection restored; resynchronising connected agents')
          local.publish({ kind: 'resync', reason: 'change notifications may have been missed while the LISTEN connection was down' })
        },
        (err: unknown) => {
          log.warn({ err: errText(err), attempt }, 'LISTEN reconnection failed')
          if (!closed) schedule()
        },
      )
    })
  }

  const notify = (event: WireEvent): void => {
    if (closed) {
      log.debug({ kind: event.kind }, 'bus closed; change not sent to other replicas')
      return
    }
    for (const payload of encodeNotifications(replicaId, event, maxPayload)) {
      // The change is already committed; a NOTIFY that fails cannot undo it. It is
      // logged, and the agents on other replicas catch up at their next resync
      // (their hubs refresh every key set when their LISTEN connection comes back).
      const p: Promise<void> = sender
        .query('SELECT pg_notify($1, $2)', [location.channel, payload])
        .then(
          () => undefined,
          (err: unknown) => log.error({ err: errText(err), kind: event.kind }, 'could not notify other replicas of a change'),
        )
        .finally(() => pending.delete(p))
      pending.add(p)
    }
  }

  const flush = async (): Promise<void> => {
    while (pending.size > 0) await Promise.all([...pending])
  }

  return {
    publish(event) {
      // Sent first, so that a local subscriber that throws cannot keep the change from the others.
      if (event.kind !== 'resync') notify(event)
      local.publish(event)
    },
    subscribe: (fn) => local.subscribe(fn),
    async start() {
      try {
        await listen()
      } catch (cause) {
        throw cpError('CP_ERR_STORE', `cannot LISTEN for changes at ${location.display}: ${errText(cause)}`, { cause })
      }
      if (!closed) log.info('listening for changes from other replicas')
    },
    flush,
    async close() {
      if (closed) return
      closed = true
      retry?.()
      retry = undefined
      const client = listener
      listener = undefined
      await client?.end().catch(() => undefined)
      await flush()
      await sender.end().catch(() => undefined)
    },
  }
}

/** An error's message, for logs; pg errors carry no credentials in their text. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
