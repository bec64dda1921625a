import type { UsageBatchMessage } from '../../../protocol/src/index.js';
import type { AuditDetails } from '../audit-chain.js';
import { type CpContext } from '../context.js';
import type { AgentRecord } from '../store/records.js';
/** True when the batch was new and is now recorded; false for a duplicate. */
export declare function recordUsageBatch(ctx: CpContext, agent: AgentRecord, batch: UsageBatchMessage): Promise<boolean>;
export declare function summarizeUsage(agent: AgentRecord, batch: UsageBatchMessage): AuditDetails;
