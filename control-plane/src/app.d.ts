import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { CryptoSuite } from '../../protocol/src/index.js';
import { type AgentEndpoint } from './agent-endpoint/endpoint.js';
import { type TimerClock } from '../../platform/src/index.js';
import { type CpContext, type CpSettings } from './context.js';
import type { ChangeBus } from './events.js';
import { type HttpLimits } from './http/server.js';
import { CpMetrics } from './metrics.js';
import { type Scheduler } from './scheduler.js';
import type { Store } from './store/store.js';
export interface ControlPlaneOptions {
    readonly host: string;
    readonly port: number;
    readonly dataDir: string;
    readonly masterKeyFile?: string | undefined;
    readonly masterKeyEnv?: string | undefined;
    readonly logger: Logger;
    readonly settings?: Partial<CpSettings>;
    readonly limits?: HttpLimits;
    /** Injected for tests; real defaults otherwise. */
    readonly clock?: TimerClock;
    readonly suite?: CryptoSuite;
    readonly store?: Store;
    /** `--store`: `sqlite:DIR` or `postgres://…`; the embedded SQLite store in dataDir when absent. */
    readonly storeUrl?: string | undefined;
    readonly bus?: ChangeBus;
    /** Off in tests that drive `scheduler.tick()` themselves. */
    readonly runScheduler?: boolean;
}
export interface ControlPlane {
    readonly ctx: CpContext;
    readonly address: AddressInfo;
    /** `http://host:port`, for the CLI and agents (`ws://` on the same port). */
    readonly url: string;
    readonly endpoint: AgentEndpoint;
    readonly scheduler: Scheduler;
    /** This control plane's metrics (GET /metrics). */
    readonly metrics: CpMetrics;
    close(): Promise<void>;
}
export declare function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane>;
