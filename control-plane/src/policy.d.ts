import type { CryptoSuite } from '../../protocol/src/index.js';
import { type GrantRecord, type IntentionRecord, type OperatorRole, type Right } from './store/records.js';
export { OPERATOR_ROLES, RIGHTS, type OperatorRole, type Right } from './store/records.js';
export interface Decision {
    readonly allow: boolean;
    readonly reason: string;
}
/** Every admin API operation. `key.state` covers enable, decrypt-only, disable, schedule-destroy and cancel. */
export declare const OPERATIONS: readonly ["key.create", "key.get", "key.list", "key.public", "key.rotate", "key.update", "key.state", "key.grant", "intention.allow", "intention.deny", "intention.list", "pair.rotate", "pair.list", "join-token.create", "agents.list", "agents.revoke", "token.create", "token.list", "token.revoke", "audit.read", "audit.verify", "audit.export"];
export type Operation = (typeof OPERATIONS)[number];
/**
 * admin: everything. operator: everything but operator-token management.
 * auditor: the reads above and the audit log, nothing that changes state.
 * Role and operation are checked at run time too: both may come from a stored row or a route table.
 */
export declare function authorizeOperator(role: OperatorRole, op: Operation): Decision;
export type Grant = Pick<GrantRecord, 'keyName' | 'service' | 'rights'>;
/** Parses `encrypt,decrypt,…` as the CLI's `--allow` takes it; unknown or empty → CP_ERR_BAD_REQUEST. */
export declare function parseRights(text: string): Right[];
/** Several grants for one (service, key) add up. Default deny. */
export declare function authorizeService(grants: readonly Grant[], service: string, keyName: string, right: Right): Decision;
/** `allow src dst`: src may open connections to dst. One direction only; `deny` deletes it. */
export type Intention = Pick<IntentionRecord, 'src' | 'dst'>;
export declare function mayConnect(intentions: readonly Intention[], src: string, dst: string): Decision;
/** Admin and operator tokens share a form: the role lives in the store, not in the token. */
export type TokenKind = 'admin' | 'operator' | 'join';
export type TokenClass = 'operator' | 'join';
export declare const TOKEN_SECRET_BYTES = 32;
/**
 * `kmo_…` (operator or admin) or `kmj_…` (join) + base64url of 32 random bytes. The prefix
 * lets secret scanners and people recognise a keymesh token, and keeps a join token from
 * being mistaken for a bearer token.
 */
export declare function newToken(suite: CryptoSuite, kind: TokenKind): string;
/**
 * Checks a presented token's form and returns its class; `expect` refuses the other class.
 * Throws CP_ERR_TOKEN_FORM whose detail never repeats the token. Non-canonical base64url
 * (stray low bits in the last character) is refused so that each secret has one spelling.
 */
export declare function parseToken(text: unknown, expect?: TokenClass): {
    kind: TokenClass;
};
/**
 * Lower-case hex SHA-256 of the whole token text; `hashTokenBytes` gives the same 32 bytes
 * raw, as the store keeps them. A fast hash is right here, unlike for passwords: the tokens carry 256 random bits, so
 * a stolen hash cannot be reversed by guessing, and a slow KDF would only make every
 * authenticated request slow. Hashing the prefix too keeps the two classes apart.
 */
export declare function hashToken(suite: CryptoSuite, token: string): string;
export declare function hashTokenBytes(suite: CryptoSuite, token: string): Uint8Array;
/**
 * Constant-time comparison of two token hashes, each lower-case hex or 32 raw bytes.
 * Anything that is not a well-formed SHA-256 hash compares unequal; that check looks only
 * at form and length, which are public, and the bytes are compared without early exit.
 */
export declare function tokenHashEquals(a: string | Uint8Array, b: string | Uint8Array): boolean;
