// Changes that connected agents must hear about, published after the transaction
// that made them commits. In one process this is an EventEmitter; with several
// replicas on PostgreSQL (issue 6) the same events travel over LISTEN/NOTIFY, so
// subscribers never care where a change was made.
import { EventEmitter } from 'node:events'

export type ChangeEvent =
  /** The key set of these services changed: pair keys, intentions, or their peers' agents. */
  | { readonly kind: 'services'; readonly services: readonly string[]; readonly reason: string }
  /** An agent was revoked: its sessions must close at once. */
  | { readonly kind: 'agent-revoked'; readonly agentId: string; readonly service: string }
  /**
   * Changes may have been missed (the LISTEN connection of cluster/pg-bus.ts was
   * lost and is back): every connected agent's key set must be recomputed. Emitted
   * locally only, never sent to other replicas.
   */
  | { readonly kind: 'resync'; readonly reason: string }

export interface ChangeBus {
  publish(event: ChangeEvent): void
  /** Returns the unsubscribe function. */
  subscribe(fn: (event: ChangeEvent) => void): () => void
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
