import type { HelloMessage } from '../../../protocol/src/index.js';
import { type Actor, type CpContext } from '../context.js';
import type { AgentRecord } from '../store/records.js';
export interface CreatedJoinToken {
    readonly id: string;
    /** Shown once; only its hash is stored. */
    readonly token: string;
    readonly service: string;
    readonly expiresAt: number;
}
export declare function createJoinToken(ctx: CpContext, actor: Actor, input: {
    service: string;
    ttlMs?: number | undefined;
}): Promise<CreatedJoinToken>;
export interface Admission {
    readonly agent: AgentRecord;
    readonly enrolled: boolean;
}
export interface AdmissionRequest {
    readonly staticKey: Uint8Array;
    readonly hello: HelloMessage;
    /** The remote address, for the audit entry of an unknown caller. */
    readonly remote?: string | undefined;
}
/** Decides an agent session after its handshake: reconnect, enrol, or a typed refusal (audited either way). */
export declare function admitAgent(ctx: CpContext, req: AdmissionRequest): Promise<Admission>;
/** An agent as the admin API lists it: the static key in its text form, never secrets. */
export interface AgentView {
    readonly id: string;
    readonly service: string;
    readonly staticKey: string;
    readonly enrolledAt: number;
    readonly lastSeenAt: number | null;
    readonly revokedAt: number | null;
    readonly endpoint: string | null;
    readonly connected: boolean;
}
export declare function listAgentViews(ctx: CpContext, filter: {
    service?: string | undefined;
    includeRevoked?: boolean | undefined;
}, isConnected: (agentId: string) => boolean): Promise<AgentView[]>;
export interface Revocation {
    readonly id: string;
    readonly service: string;
    readonly revokedAt: number;
    /** Pair keys rotated with no grace, by pair id. */
    readonly rotatedPairs: readonly string[];
}
export declare function revokeAgent(ctx: CpContext, actor: Actor, id: string): Promise<Revocation>;
