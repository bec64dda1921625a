import type { Actor, CpContext } from '../context.js';
import type { OperatorRole, OperatorTokenRecord } from '../store/records.js';
/** Shortest and longest lifetime a new token may be given (when one is given). */
export declare const MIN_TOKEN_TTL_MS = 60000;
export declare const MAX_TOKEN_TTL_MS: number;
/** Printable, no spaces, so a name reads well in a table and an audit line. */
export declare const TOKEN_NAME: RegExp;
export type TokenStatus = 'active' | 'expired' | 'revoked';
/** A token as operators see it: never the token, never its hash. */
export interface TokenView {
    readonly id: string;
    readonly name: string;
    readonly role: OperatorRole;
    readonly status: TokenStatus;
    readonly createdAt: number;
    readonly expiresAt: number | null;
    readonly revokedAt: number | null;
}
/** The answer to a create: the one time the bearer token itself is shown. */
export interface CreatedToken {
    readonly id: string;
    readonly name: string;
    readonly role: OperatorRole;
    readonly token: string;
    readonly expiresAt: number | null;
}
export interface CreateTokenInput {
    readonly name: string;
    readonly role: OperatorRole;
    /** Lifetime from now; omitted → the token does not expire (like the bootstrap token). */
    readonly ttlMs?: number | undefined;
}
export declare function tokenStatus(r: OperatorTokenRecord, now: number): TokenStatus;
export declare function tokenView(r: OperatorTokenRecord, now: number): TokenView;
export declare function createOperatorToken(ctx: CpContext, actor: Actor, input: CreateTokenInput): Promise<CreatedToken>;
export declare function listOperatorTokens(ctx: CpContext, options?: {
    includeRevoked?: boolean;
}): Promise<TokenView[]>;
export declare function revokeOperatorToken(ctx: CpContext, actor: Actor, id: string): Promise<TokenView>;
