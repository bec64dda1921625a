import { type KmsBatchMessage, type KmsRequestMessage } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import { type KmsCaller } from './kms.js';
export interface KmsSessionSink {
    /** Sends one encoded message on the session (and wipes it); throws when the session cannot. */
    send(encoded: Uint8Array): void;
    /** False once the session has ended. */
    isOpen(): boolean;
    /** A send failed: end the session. */
    fail(err: unknown): void;
}
export declare class KmsSessionCalls {
    #private;
    constructor(ctx: CpContext, caller: KmsCaller, sink: KmsSessionSink);
    /** Calls performed and not yet answered. */
    get inFlight(): number;
    request(req: KmsRequestMessage): void;
    batch(batch: KmsBatchMessage): void;
}
