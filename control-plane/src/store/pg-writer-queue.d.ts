export interface WriterQueueOptions {
    readonly maxWaiting: number;
    readonly connectTimeoutMs: number;
    readonly now: () => number;
    /** The store's URL for messages, password hidden. */
    readonly display: string;
}
export interface WriterTurn<C> {
    /** What `connect` gave this writer. */
    readonly connection: C;
    /** Lets the next writer go; call once the transaction has ended. */
    release(): void;
}
export declare class WriterQueue {
    #private;
    constructor(o: WriterQueueOptions);
    /**
     * Waits for this writer's turn, then for `connect`. A rejection of `connect`
     * that `unreachable` recognises starts an outage (see above); any success ends it.
     */
    enter<C>(connect: () => Promise<C>, unreachable: (e: unknown) => boolean): Promise<WriterTurn<C>>;
}
