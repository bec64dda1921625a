// Changes that connected agents must hear about, published after the transaction
// that made them commits. In one process this is an EventEmitter; with several
// replicas on PostgreSQL (issue 6) the same events travel over LISTEN/NOTIFY,
// staged inside the transaction that made them (operation.ts), so subscribers
// never care where a change was made.
import { EventEmitter } from 'node:events';
export function createLocalBus() {
    const emitter = new EventEmitter();
    // Every connected-agent hub and test may subscribe; the default cap of 10 is for leak hints.
    emitter.setMaxListeners(0);
    return {
        publish(event) {
            emitter.emit('change', event);
        },
        subscribe(fn) {
            emitter.on('change', fn);
            return () => emitter.off('change', fn);
        },
    };
}
//# sourceMappingURL=events.js.map