// Changes that connected agents must hear about, published after the transaction
// that made them commits. In one process this is an EventEmitter; with several
// replicas on PostgreSQL (issue 6) the same events travel over LISTEN/NOTIFY,
// staged inside the transaction that made them (operation.ts), so subscribers
// never care where a change was made.
import { EventEmitter } from 'node:events'

import type { StoreTx } from './store/store.js'

export type ChangeEvent =
  /** The key set of these services changed: pair keys, intentions, or their peers' agents. */
  | { readonly kind: 'services'; readonly services: readonly string[]; readonly reason: string }
  /** An agent was revoked: its sessions must close at once. */
  | { readonly kind: 'agent-revoked'; readonly agentId: string; readonly service: string }
  /**
   * An agent connected and has its key set (it listens for tunnels by then): the
   * agents of its pairs hear it (peer.up) and dial it again at once. Published after
   * the session's first key set, outside any transaction: a lost one costs a peer
   * agent at most its re-probe interval.
   */
  | { readonly kind: 'agent-connected'; readonly agentId: string; readonly service: string }
  /**
   * Changes may have been missed (the LISTEN connection of cluster/pg-bus.ts was
   * lost and is back): every connected agent's key set must be recomputed. Emitted
   * locally only, never sent to other replicas.
   */
  | { readonly kind: 'resync'; readonly reason: string }

export interface PublishOptions {
  /** The event already left for other replicas with its transaction (stage()): tell this process only. */
  readonly staged?: boolean
}

export interface ChangeBus {
  publish(event: ChangeEvent, o?: PublishOptions): void
  /** Returns the unsubscribe function. */
  subscribe(fn: (event: ChangeEvent) => void): () => void
  /**
   * Optional, on a bus that reaches other processes: sends `events` to them as part
   * of `tx`, so that they leave when it commits and never if it rolls back (a
   * process that dies right after COMMIT cannot lose them). Resolves true when it
   * did; the caller then publishes each after commit with `{ staged: true }`.
   * False (the store cannot carry them): publish them after commit as usual.
   */
  stage?(tx: StoreTx, events: readonly ChangeEvent[]): Promise<boolean>
}

export function createLocalBus(): ChangeBus {
  const emitter = new EventEmitter()
  // Every connected-agent hub and test may subscribe; the default cap of 10 is for leak hints.
  emitter.setMaxListeners(0)
  return {
    publish(event) {
      emitter.emit('change', event)
    },
    subscribe(fn) {
      emitter.on('change', fn)
      return () => emitter.off('change', fn)
    },
  }
}
