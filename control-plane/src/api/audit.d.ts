import type { AuditVerifyResult } from '../audit-chain.js';
import type { CpContext } from '../context.js';
import type { Route } from '../http/router.js';
import { type OperatorPrincipal } from './principal.js';
export declare const DEFAULT_AUDIT_LIMIT = 100;
export declare const MAX_AUDIT_LIMIT = 1000;
/** A time bound: integer milliseconds since the epoch, or an ISO 8601 date-time. */
export declare function parseAuditTime(text: string, field: string): number;
/** The verify answer: hashes as hex, the head only when the chain is intact. */
export declare function verifyView(v: AuditVerifyResult): Record<string, unknown>;
export declare function auditRoutes(ctx: CpContext): Route<OperatorPrincipal>[];
