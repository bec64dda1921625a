import type { AgentPatch, AgentRecord, AuditHead, AuditRow, JoinTokenRecord, OperatorTokenRecord, UsageBatchRecord } from './records.js';
import { SqlKeyRepository } from './sql-tx-keys.js';
import type { AuditFilter, StoreTx } from './store.js';
export declare abstract class SqlTx extends SqlKeyRepository implements StoreTx {
    #private;
    getAgent(id: string): Promise<AgentRecord | null>;
    getAgentByStaticKey(staticKey: Uint8Array): Promise<AgentRecord | null>;
    listAgents(filter?: {
        service?: string;
        includeRevoked?: boolean;
    }): Promise<AgentRecord[]>;
    insertAgent(a: AgentRecord): Promise<void>;
    updateAgent(id: string, patch: AgentPatch): Promise<boolean>;
    getJoinToken(id: string): Promise<JoinTokenRecord | null>;
    getJoinTokenByHash(tokenHash: Uint8Array): Promise<JoinTokenRecord | null>;
    listJoinTokens(filter?: {
        service?: string;
        unusedOnly?: boolean;
    }): Promise<JoinTokenRecord[]>;
    insertJoinToken(t: JoinTokenRecord): Promise<void>;
    markJoinTokenUsed(id: string, usedAt: number, agentId: string): Promise<boolean>;
    deleteJoinTokensExpiredBefore(time: number): Promise<number>;
    getOperatorToken(id: string): Promise<OperatorTokenRecord | null>;
    getOperatorTokenByHash(tokenHash: Uint8Array): Promise<OperatorTokenRecord | null>;
    listOperatorTokens(filter?: {
        includeRevoked?: boolean;
    }): Promise<OperatorTokenRecord[]>;
    insertOperatorToken(t: OperatorTokenRecord): Promise<void>;
    revokeOperatorToken(id: string, revokedAt: number): Promise<boolean>;
    recordUsageBatch(b: UsageBatchRecord): Promise<boolean>;
    lastUsageBatchSeq(agentId: string): Promise<number | null>;
    getAuditHead(): Promise<AuditHead>;
    lockAuditHead(): Promise<AuditHead>;
    appendAuditRow(r: AuditRow): Promise<void>;
    listAuditEntries(f: AuditFilter): Promise<AuditRow[]>;
}
