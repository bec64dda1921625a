import { type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { KeymeshError } from '../../../protocol/src/index.js';
import { type Principal, type RequestContext, type Route } from './router.js';
export interface HttpLimits {
    /** Largest request body in bytes (default 1 MiB); larger is 413 CP_ERR_BODY_TOO_LARGE. */
    readonly bodyBytes?: number;
    /** Time to receive the request headers (default 20 s); node answers 408. */
    readonly headersTimeoutMs?: number;
    /** Time to receive the whole request (default 30 s); node answers 408. */
    readonly requestTimeoutMs?: number;
    /** Idle time before a keep-alive socket is closed (default 5 s). */
    readonly keepAliveTimeoutMs?: number;
    /** How long `close()` waits for in-flight requests before aborting them (default 10 s). */
    readonly shutdownTimeoutMs?: number;
    /** How often node checks the two request timeouts (default 1 s). */
    readonly timeoutCheckIntervalMs?: number;
}
export interface Decision {
    readonly allow: boolean;
    readonly reason: string;
}
export interface DeniedEvent<P extends Principal> {
    readonly kind: 'unauthenticated' | 'forbidden';
    readonly requestId: string;
    readonly method: string;
    readonly path: string;
    readonly operation: string;
    readonly principal: P | null;
    readonly reason: string;
    /** The error the client was answered with (its code is what the audit records). */
    readonly error: KeymeshError;
    readonly remoteAddress: string | undefined;
}
/** A request that matched a route and was refused before its handler ran (bad query or body, 413, 415 …). */
export interface RejectedEvent<P extends Principal> {
    readonly requestId: string;
    readonly method: string;
    readonly path: string;
    readonly operation: string;
    readonly principal: P | null;
    readonly error: KeymeshError;
    readonly remoteAddress: string | undefined;
}
export interface AnsweredEvent {
    /** The route's operation; `healthz` for the built-in probe, `(unmatched)` when no route matched. */
    readonly operation: string;
    readonly status: number;
    readonly seconds: number;
}
export interface HttpServerOptions<P extends Principal> {
    readonly routes: readonly Route<P>[];
    /** Resolves a bearer token (undefined when none was sent) to a principal, or null. */
    authenticate(bearer: string | undefined): Promise<P | null>;
    /** Decides a token route's operation; the context carries params, query and validated body. */
    authorize(principal: P, operation: string, ctx: RequestContext<P>): Promise<Decision>;
    /** Called once for every 401 and 403 before it is answered. A throw is logged; the denial stands. */
    onDenied?(event: DeniedEvent<P>): void | Promise<void>;
    /**
     * Called once for every other 4xx raised before the route's handler ran, so bad input
     * is audited like a denial (the handler audits its own refusals). A throw is logged.
     */
    onRejected?(event: RejectedEvent<P>): void | Promise<void>;
    /** Called once per answered request, after it is written (metrics). A throw is logged. */
    onAnswered?(event: AnsweredEvent): void;
    /** Receives every HTTP upgrade (the agent WebSocket endpoint). Without it, upgrades get 404. */
    onUpgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
    readonly logger: Logger;
    readonly limits?: HttpLimits;
    /** Request id generator (default randomUUID); a well-formed `x-request-id` header wins. */
    readonly requestId?: () => string;
}
export interface HttpServer {
    /** Starts listening; resolves the bound address (port 0 picks a free port). */
    listen(host: string, port: number): Promise<AddressInfo>;
    /** Graceful shutdown (see the file comment). Idempotent: later calls share the first. */
    close(): Promise<void>;
    /** The node server, for tests and for attaching to its events. */
    readonly server: Server;
}
export declare function createHttpServer<P extends Principal>(opts: HttpServerOptions<P>): HttpServer;
