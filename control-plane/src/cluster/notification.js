export const NOTIFICATION_VERSION = 1;
function encode(replicaId, event) {
    return JSON.stringify({ v: NOTIFICATION_VERSION, r: replicaId, e: event });
}
/**
 * The payloads that carry `event`, each at most `maxBytes` long (UTF-8). A part
 * always names at least one service, so a single over-long name is sent alone
 * (and refused by the server, which the sender logs).
 */
export function encodeNotifications(replicaId, event, maxBytes) {
    const whole = encode(replicaId, event);
    if (event.kind !== 'services' || Buffer.byteLength(whole) <= maxBytes)
        return [whole];
    const base = Buffer.byteLength(encode(replicaId, { ...event, services: [] }));
    const parts = [];
    let part = [];
    let size = base;
    for (const service of event.services) {
        const add = Buffer.byteLength(JSON.stringify(service)) + 1;
        if (part.length > 0 && size + add > maxBytes) {
            parts.push(part);
            part = [];
            size = base;
        }
        part.push(service);
        size += add;
    }
    parts.push(part);
    return parts.map((services) => encode(replicaId, { kind: 'services', services, reason: event.reason }));
}
const isString = (v) => typeof v === 'string';
/** Parses and checks one payload; anything unexpected is `ok: false` with a short reason (no payload text). */
export function decodeNotification(text) {
    let m;
    try {
        m = JSON.parse(text);
    }
    catch {
        return { ok: false, why: 'not JSON' };
    }
    if (typeof m !== 'object' || m === null)
        return { ok: false, why: 'not an object' };
    const { v, r, e } = m;
    if (v !== NOTIFICATION_VERSION)
        return { ok: false, why: `unknown version ${JSON.stringify(v)}` };
    if (!isString(r) || r === '')
        return { ok: false, why: 'no replica id' };
    const event = decodeEvent(e);
    return event ? { ok: true, replicaId: r, event } : { ok: false, why: 'not a change event' };
}
function decodeEvent(e) {
    if (typeof e !== 'object' || e === null)
        return null;
    const f = e;
    if (f['kind'] === 'services') {
        const services = f['services'];
        const reason = f['reason'];
        if (!Array.isArray(services) || !services.every(isString) || !isString(reason))
            return null;
        return { kind: 'services', services, reason };
    }
    if (f['kind'] === 'agent-revoked') {
        const agentId = f['agentId'];
        const service = f['service'];
        if (!isString(agentId) || !isString(service))
            return null;
        return { kind: 'agent-revoked', agentId, service };
    }
    return null;
}
//# sourceMappingURL=notification.js.map