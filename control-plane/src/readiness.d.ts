import type { Readiness } from '../../platform/src/index.js';
import type { Store } from './store/store.js';
export declare const DEFAULT_READY_TIMEOUT_MS = 2000;
export declare const DEFAULT_LISTEN_GRACE_MS = 10000;
/** What readiness needs of the change bus (cluster/pg-bus.ts). */
export interface ListenState {
    /** 0 while listening; else for how long it has not been. */
    downForMs(): number;
}
export declare function storeReadiness(store: Store, timeoutMs?: number): () => Promise<Readiness>;
/** Ready while `listening` is absent (no other replica to hear) or down for at most `graceMs`. */
export declare function listenReadiness(listening: ListenState | undefined, graceMs?: number): () => Readiness;
/** Ready when every check is; otherwise the first check's reason that is not. */
export declare function allReady(...checks: ReadonlyArray<() => Readiness | Promise<Readiness>>): () => Promise<Readiness>;
