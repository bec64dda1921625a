import type { NoiseChannel } from '../../../protocol/src/index.js';
import type { CpContext } from '../context.js';
import type { AgentRecord } from '../store/records.js';
import { type EncodedKeySet, type Hub } from './hub.js';
export type FirstSend = 'sent' | 'revoked' | 'closed';
export declare class KeySetStream {
    #private;
    constructor(channel: Pick<NoiseChannel, 'send' | 'sendEncoded'>);
    /**
     * Reads and sends the first key set. The agent row is read in the same snapshot:
     * a revocation that committed before the session joined the hub reached it as no
     * event, so it is caught here ('revoked'). `live` says whether the session is still up.
     */
    sendFirst(ctx: CpContext, hub: Hub, agent: AgentRecord, live: () => boolean): Promise<FirstSend>;
    /** Sends what differs between the last set sent and `set`; throws what the channel throws. */
    apply(seq: number, set: EncodedKeySet): void;
}
