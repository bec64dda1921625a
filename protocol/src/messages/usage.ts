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

export const usageBatchSchema = object({
  seq: int(1, Number.MAX_SAFE_INTEGER),
  events: array(usageEventSchema, MAX_USAGE_EVENTS, 1),
})

export const usageAckSchema = object({ seq: int(1, Number.MAX_SAFE_INTEGER) })
