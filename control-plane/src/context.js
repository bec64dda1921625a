import { DAY, HOUR, SECOND } from '../../platform/src/index.js';
import { lifecyclePolicy } from './key-lifecycle.js';
export const DEFAULT_SETTINGS = Object.freeze({
    joinTokenTtlMs: HOUR,
    joinTokenMaxTtlMs: 30 * DAY,
    schedulerIntervalMs: 1_000,
    lifecycle: lifecyclePolicy(),
    agentIdleTimeoutMs: 15 * SECOND,
    resyncIntervalMs: 60 * SECOND,
});
export function settings(overrides = {}) {
    return Object.freeze({ ...DEFAULT_SETTINGS, ...overrides });
}
export function actorName(a) {
    switch (a.kind) {
        case 'operator':
            return `operator:${a.id}`;
        case 'agent':
            return `agent:${a.id}`;
        case 'system':
            return `system:${a.task}`;
        case 'anonymous':
            return a.remote ? `anonymous:${a.remote}` : 'anonymous';
    }
}
//# sourceMappingURL=context.js.map