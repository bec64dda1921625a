import type { WebSocket } from 'ws';
import { type KeymeshError } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import type { EncodedKeySet, Hub, HubSession } from './hub.js';
export interface SessionLimits {
    readonly handshakeTimeoutMs: number;
    /** Bytes queued on the socket beyond which the agent counts as not reading. */
    readonly maxBufferedBytes: number;
    /** Messages held while the session is not yet ready. */
    readonly maxEarlyMessages: number;
}
export type SessionState = 'handshake' | 'admitting' | 'ready' | 'closed';
/** Going Away (RFC 6455): the control plane is shutting down. */
export declare const CLOSE_GOING_AWAY = 1001;
export declare class AgentSession implements HubSession {
    #private;
    /** Called once when the session ends, whatever the reason. */
    onClosed: (() => void) | undefined;
    /** Called once when the session stops being a pending handshake. */
    onSettled: (() => void) | undefined;
    /** Called at most once, with the code, when the session fails or is refused before admission. */
    onHandshakeFailed: ((code: string) => void) | undefined;
    constructor(ctx: CpContext, hub: Hub, ws: WebSocket, remote: string | undefined, limits: SessionLimits);
    get state(): SessionState;
    get agentId(): string;
    get service(): string;
    /** Closes the session with a typed error: an 'error' message when the channel is open, then the close code. */
    terminate(error: KeymeshError): void;
    /** Closes for shutdown (1001). */
    shutdown(): void;
    applyUpdate(seq: number, set: EncodedKeySet): void;
}
