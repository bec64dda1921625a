export interface Mutex {
    /** Resolves with the release function once every earlier holder released. */
    acquire(): Promise<() => void>;
}
export declare function createMutex(): Mutex;
