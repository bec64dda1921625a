import type { ChangeEvent } from '../events.js';
export declare const NOTIFICATION_VERSION = 1;
/** The events that travel between replicas. */
export type WireEvent = Exclude<ChangeEvent, {
    kind: 'resync';
}>;
export type Decoded = {
    readonly ok: true;
    readonly replicaId: string;
    readonly event: WireEvent;
} | {
    readonly ok: false;
    readonly why: string;
};
/**
 * The payloads that carry `event`, each at most `maxBytes` long (UTF-8). A part
 * always names at least one service, so a single over-long name is sent alone
 * (and refused by the server, which the sender logs).
 */
export declare function encodeNotifications(replicaId: string, event: WireEvent, maxBytes: number): string[];
/** Parses and checks one payload; anything unexpected is `ok: false` with a short reason (no payload text). */
export declare function decodeNotification(text: string): Decoded;
