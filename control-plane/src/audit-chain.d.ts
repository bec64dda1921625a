import type { CryptoSuite } from '../../protocol/src/index.js';
import type { AuditHead, AuditRow } from './store/records.js';
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | {
    readonly [key: string]: JsonValue;
};
export type AuditDetails = {
    readonly [key: string]: JsonValue;
};
export declare const ZERO_HASH: Uint8Array;
/**
 * Canonical JSON of a details object (keys sorted at every level, no spaces),
 * after the guard: throws CP_ERR_AUDIT for fields named like secrets
 * (key/secret/token/material/psk/…), byte values, and anything not plain JSON.
 */
export declare function canonicalDetails(details: AuditDetails): string;
/** The entry hash over everything but the hash itself (see the file comment). */
export declare function auditEntryHash(row: Omit<AuditRow, 'hash'>, suite?: CryptoSuite): Uint8Array;
export declare function bytesEqual(a: Uint8Array, b: Uint8Array): boolean;
export type AuditBreak = 'hash-mismatch' | 'prev-mismatch' | 'seq-gap' | 'head-mismatch';
export type AuditVerifyResult = {
    readonly ok: true;
    readonly count: number;
    readonly head: AuditHead;
} | {
    readonly ok: false;
    readonly firstBadSeq: number;
    readonly reason: AuditBreak;
    readonly count: number;
};
/**
 * Checks entries one at a time, in seq order, keeping only the last good link:
 * constant memory whatever the log's length. `count` is the number of intact
 * entries seen before the first break.
 */
export declare class AuditChainVerifier {
    #private;
    private readonly suite;
    constructor(suite?: CryptoSuite);
    get lastSeq(): number;
    /** Checks the next row; false once the chain is broken (later rows are not looked at). */
    push(row: AuditRow): boolean;
    /**
     * The verdict. With the stored head, a log whose end was cut off or extended,
     * or whose tail was rewritten with recomputed hashes, fails as head-mismatch,
     * naming the first entry the head and the rows disagree on.
     */
    finish(head?: AuditHead): AuditVerifyResult;
}
/** Verifies rows (in seq order, sync or async iterable) against an optional stored head. */
export declare function verifyAuditChain(rows: Iterable<AuditRow> | AsyncIterable<AuditRow>, head?: AuditHead, suite?: CryptoSuite): Promise<AuditVerifyResult>;
