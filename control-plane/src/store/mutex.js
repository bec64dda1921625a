// A FIFO lock for the stores: transactions of one process queue here, in the
// order they were started, before they touch the database.
export function createMutex() {
    let tail = Promise.resolve();
    return {
        acquire() {
            let release;
            const held = new Promise((resolve) => (release = resolve));
            const before = tail;
            tail = before.then(() => held);
            return before.then(() => release);
        },
    };
}
//# sourceMappingURL=mutex.js.map