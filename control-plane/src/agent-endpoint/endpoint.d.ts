import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { CpContext } from '../context.js';
import { Hub } from './hub.js';
export declare const AGENT_PATH = "/v1/agent";
export interface AgentEndpointOptions {
    readonly handshakeTimeoutMs?: number;
    readonly maxPendingHandshakes?: number;
    readonly maxBufferedBytes?: number;
    readonly maxEarlyMessages?: number;
    /** Time given to sessions to finish their close handshake at shutdown before their sockets are cut. */
    readonly shutdownGraceMs?: number;
    /** Called with the error code of each session that fails or is refused before admission (metrics). */
    readonly onHandshakeFailure?: (code: string) => void;
}
export declare const DEFAULT_AGENT_ENDPOINT_OPTIONS: Readonly<{
    handshakeTimeoutMs: 10000;
    maxPendingHandshakes: 256;
    maxBufferedBytes: number;
    maxEarlyMessages: 16;
    shutdownGraceMs: 2000;
}>;
export interface AgentEndpoint {
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
    /** Agents with a live, authenticated session. */
    connectedCount(): number;
    /** Closes every agent session (close code 1001) and stops accepting. */
    close(): Promise<void>;
}
/** The endpoint with its hub exposed, for tests and benchmarks. */
export interface AgentEndpointInternals extends AgentEndpoint {
    readonly hub: Hub;
    /** Handshakes accepted and not yet admitted or refused. */
    pendingCount(): number;
}
export declare function createAgentEndpoint(ctx: CpContext, options?: AgentEndpointOptions): AgentEndpointInternals;
