// Usage reports: the agent numbers its batches per agent from 1 and resends a
// batch, with the same seq and events, until it sees usage.ack for that seq; the
// control plane records each (agent, seq) exactly once and acks duplicates again.
//
// MAX_USAGE_EVENTS is bounded so that a batch of the largest legal events fits in
// one record (test/protocol/messages/index.test.ts checks it).
import { agentId, count, errorCode, keyVersion, pairIdField, serviceName, timeMs } from './fields.js'
import { array, int, object, oneOf, optional, type Infer } from './schema.js'

export const MAX_USAGE_EVENTS = 128

export const USAGE_EVENT_KINDS = ['conn.open', 'conn.close', 'handshake.fail', 'conn.reject', 'drop.seal', 'drop.open'] as const

export const usageEventSchema = object({
  kind: oneOf(...USAGE_EVENT_KINDS),
  at: timeMs,
  pairId: optional(pairIdField),
  peerService: optional(serviceName),
  peerAgent: optional(agentId),
  keyVersion: optional(keyVersion),
  bytesIn: optional(count),
  bytesOut: optional(count),
  durationMs: optional(count),
  /** Why a handshake failed or a connection was rejected: an error code, never free text. */
  reason: optional(errorCode),
})

export type UsageEvent = Infer<typeof usageEventSchema>

/** A loss report names at most this many seqs; the rest are counted. */
export const MAX_LOST_SEQS = 64

/**
 * What an agent could not recover from a damaged usage spool (agent/src/usage/
 * spool-salvage.ts). It travels as a batch of its own, numbered like the others, so it
 * is spooled, resent until acked and recorded exactly once; the control plane audits
 * it as `usage.loss`.
 */
export const usageLossSchema = object({
  /** When the damage was found. */
  at: timeMs,
  /** Spool lines that did not read back intact. */
  lines: count,
  bytes: count,
  /** Of those lines, the ones that held, or may have held, a batch not yet acknowledged. */
  batches: count,
  /** The seqs of the lost batches whose number could still be read, ascending. */
  seqs: array(int(1, Number.MAX_SAFE_INTEGER), MAX_LOST_SEQS),
})

export type UsageLoss = Infer<typeof usageLossSchema>

/** Events, a loss report, or both; never neither. */
export const usageBatchSchema = object(
  {
    seq: int(1, Number.MAX_SAFE_INTEGER),
    events: array(usageEventSchema, MAX_USAGE_EVENTS),
    loss: optional(usageLossSchema),
  },
  (b) => ((b['events'] as unknown[]).length === 0 && b['loss'] === undefined ? 'events' : undefined),
)

export type UsageBatch = Infer<typeof usageBatchSchema>

export const usageAckSchema = object({ seq: int(1, Number.MAX_SAFE_INTEGER) })
