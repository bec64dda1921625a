// The control-plane replicas, as the console's overview shows them. On a shared
// store (PostgreSQL) each replica writes its own row every `beatMs` (default 5 s):
// its URL, readiness, sealed or not, and the agents connected to it; a replica's
// row not rewritten for three beats is shown as silent, and rows silent for an hour
// are removed. On SQLite there is one replica, this one, and nothing is written.
//
// The same rows tell every replica which agents are connected anywhere, so the
// console of one replica shows the sessions held by the others.
import type { Readiness } from '../../../platform/src/index.js'
import type { CancelTimer } from '../../../platform/src/index.js'
import { HOUR, SECOND } from '../../../platform/src/index.js'
import type { CpContext } from '../context.js'
import type { ConsoleReplicaRecord } from '../store/records.js'

export const DEFAULT_BEAT_MS = 5 * SECOND

export interface ReplicaSelf {
  /** The replica id on a shared store (cluster/replica.ts); undefined on SQLite. */
  readonly id: string | undefined
  /** Where it serves (known once it listens). */
  url(): string
  readiness(): Promise<Readiness>
  sealed(): boolean
  /** Ids of the agents with a session on this replica. */
  connectedAgents(): readonly string[]
}

/** One replica as the overview lists it. */
export interface ReplicaView {
  readonly id: string
  readonly url: string
  readonly self: boolean
  readonly startedAt: number
  readonly seenAt: number
  /** Its row was rewritten within three beats (always true for this replica). */
  readonly live: boolean
  readonly ready: boolean
  readonly reason: string | null
  readonly sealed: boolean
  readonly agentsConnected: number
}

interface ReplicaStatus {
  readonly ready: boolean
  readonly reason: string | null
  readonly sealed: boolean
  readonly agents: readonly string[]
}

export class ReplicaBoard {
  readonly #ctx: CpContext
  readonly #self: ReplicaSelf
  readonly #beatMs: number
  readonly #startedAt: number
  #timer: CancelTimer | undefined
  #closed = false
  /** The last beat failed: the next failure is not logged again (once per outage). */
  #failing = false

  constructor(ctx: CpContext, self: ReplicaSelf, beatMs = DEFAULT_BEAT_MS) {
    this.#ctx = ctx
    this.#self = self
    this.#beatMs = beatMs
    this.#startedAt = ctx.clock.now()
  }

  /** Writes this replica's row now and every beat after (a shared store only). */
  start(): void {
    if (this.#self.id === undefined || this.#closed) return
    void this.beat()
  }

  /** One beat: this replica's row rewritten, rows silent for an hour removed. A failure is logged once per outage; the next beat tries again. */
  async beat(): Promise<void> {
    const id = this.#self.id
    if (id === undefined) return
    try {
      const status = await this.#status()
      const now = this.#ctx.clock.now()
      await this.#ctx.store.transaction(async (tx) => {
        await tx.putConsoleReplica({ id, url: this.#self.url(), startedAt: this.#startedAt, seenAt: now, statusJson: JSON.stringify(status) })
        await tx.deleteConsoleReplicasSeenBefore(now - HOUR)
      })
      this.#failing = false
    } catch (err) {
      if (!this.#failing) this.#ctx.logger.warn({ err }, 'console: could not write this replica\'s status; trying again every beat')
      this.#failing = true
    } finally {
      if (!this.#closed) this.#timer = this.#ctx.clock.setTimer(this.#beatMs, () => void this.beat())
    }
  }

  close(): void {
    this.#closed = true
    this.#timer?.()
  }

  /** Every replica (this one first, as it is now), and the agents connected to any of them. */
  async list(rows: readonly ConsoleReplicaRecord[]): Promise<{ replicas: ReplicaView[]; connected: ReadonlySet<string> }> {
    const now = this.#ctx.clock.now()
    const own = await this.#status()
    const selfId = this.#self.id ?? 'local'
    const connected = new Set(own.agents)
    const replicas: ReplicaView[] = [{
      id: selfId, url: this.#self.url(), self: true, startedAt: this.#startedAt, seenAt: now, live: true,
      ready: own.ready, reason: own.reason, sealed: own.sealed, agentsConnected: own.agents.length,
    }]
    for (const row of rows) {
      if (row.id === selfId) continue
      const status = parseStatus(row.statusJson)
      const live = now - row.seenAt <= 3 * this.#beatMs
      if (live) for (const a of status.agents) connected.add(a)
      replicas.push({
        id: row.id, url: row.url, self: false, startedAt: row.startedAt, seenAt: row.seenAt, live,
        ready: live && status.ready, reason: live ? status.reason : `silent for ${Math.round((now - row.seenAt) / 1000)} s`,
        sealed: status.sealed, agentsConnected: live ? status.agents.length : 0,
      })
    }
    return { replicas, connected }
  }

  async #status(): Promise<ReplicaStatus> {
    const r = await this.#self.readiness()
    return { ready: r.ready, reason: r.ready ? null : r.reason, sealed: this.#self.sealed(), agents: [...this.#self.connectedAgents()] }
  }
}

function parseStatus(json: string): ReplicaStatus {
  try {
    const v = JSON.parse(json) as Partial<ReplicaStatus>
    return { ready: v.ready === true, reason: typeof v.reason === 'string' ? v.reason : null, sealed: v.sealed === true, agents: Array.isArray(v.agents) ? v.agents.filter((a) => typeof a === 'string') : [] }
  } catch {
    return { ready: false, reason: 'unreadable status', sealed: false, agents: [] }
  }
}
