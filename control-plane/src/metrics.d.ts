import { Registry } from 'prom-client';
import { type MetricsText } from '../../platform/src/index.js';
import type { AuditInput, AuditLog } from './audit.js';
import type { AnsweredEvent } from './http/server.js';
/** Distinct key names shown by keymesh_cp_key_operations_total; further names show as "(other)". */
export declare const DEFAULT_MAX_KEY_LABELS = 1000;
export interface CpMetricsOptions {
    readonly maxKeyLabels?: number;
}
/** What one audit entry adds to the counters. */
export interface AuditFacts {
    readonly operation: string;
    readonly outcome: string;
    /** Calls the entry stands for: details.count for a KMS entry, else 1. */
    readonly calls: number;
    /** The key named by a `key:<name>` target. */
    readonly key?: string;
    /** A rotation that happened (not a scheduled pass that found nothing to do). */
    readonly rotation?: {
        readonly kind: 'key' | 'pair';
        readonly trigger: 'scheduled' | 'manual';
    };
}
export declare function auditFacts(input: AuditInput): AuditFacts;
export declare class CpMetrics {
    #private;
    readonly registry: Registry<"text/plain; version=0.0.4; charset=utf-8">;
    constructor(o?: CpMetricsOptions);
    /** Where the connected-agents gauge reads from (the agent endpoint, built after the metrics). */
    watchAgents(count: () => number): void;
    /** The same audit log, with every append timed and counted. */
    instrumentAudit(audit: AuditLog): AuditLog;
    httpAnswered(e: AnsweredEvent): void;
    handshakeFailed(code: string): void;
    text(): Promise<MetricsText>;
}
