import type { StoreTx } from './store/store.js';
export type ChangeEvent = 
/** The key set of these services changed: pair keys, intentions, or their peers' agents. */
{
    readonly kind: 'services';
    readonly services: readonly string[];
    readonly reason: string;
}
/** An agent was revoked: its sessions must close at once. */
 | {
    readonly kind: 'agent-revoked';
    readonly agentId: string;
    readonly service: string;
}
/**
 * Changes may have been missed (the LISTEN connection of cluster/pg-bus.ts was
 * lost and is back): every connected agent's key set must be recomputed. Emitted
 * locally only, never sent to other replicas.
 */
 | {
    readonly kind: 'resync';
    readonly reason: string;
};
export interface PublishOptions {
    /** The event already left for other replicas with its transaction (stage()): tell this process only. */
    readonly staged?: boolean;
}
export interface ChangeBus {
    publish(event: ChangeEvent, o?: PublishOptions): void;
    /** Returns the unsubscribe function. */
    subscribe(fn: (event: ChangeEvent) => void): () => void;
    /**
     * Optional, on a bus that reaches other processes: sends `events` to them as part
     * of `tx`, so that they leave when it commits and never if it rolls back (a
     * process that dies right after COMMIT cannot lose them). Resolves true when it
     * did; the caller then publishes each after commit with `{ staged: true }`.
     * False (the store cannot carry them): publish them after commit as usual.
     */
    stage?(tx: StoreTx, events: readonly ChangeEvent[]): Promise<boolean>;
}
export declare function createLocalBus(): ChangeBus;
