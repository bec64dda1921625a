// The `limits` section of the agent configuration: each AgentLimits field, by
// name, as a positive integer within bounds that keep a typo (a value in seconds
// where milliseconds are meant, an extra zero) from making the agent useless or
// unbounded. Layers are given highest precedence first; each field is taken from
// the first layer that sets it, else DEFAULT_LIMITS.
import { DEFAULT_LIMITS, MAX_DURATION_MS, type AgentLimits } from './config.js'
import { agentError } from './errors.js'

type Bounds = readonly [min: number, max: number]

const KIB = 1024
const MIB = 1024 * KIB
const GIB = 1024 * MIB

export const LIMIT_BOUNDS: { readonly [K in keyof AgentLimits]: Bounds } = Object.freeze({
  rehandshakeAfterMs: [1, MAX_DURATION_MS],
  // Noise's nonce space is 2^64; any safe integer is far below it.
  rehandshakeAfterRecords: [1, Number.MAX_SAFE_INTEGER],
  handshakeTimeoutMs: [1, MAX_DURATION_MS],
  dialTimeoutMs: [1, MAX_DURATION_MS],
  unreachableBackoffMs: [1, MAX_DURATION_MS],
  maxTunnels: [1, 1_000_000],
  maxPendingHandshakes: [1, 100_000],
  helloTimeoutMs: [1, MAX_DURATION_MS],
  maxIdleConnections: [1, 1_000_000],
  maxIdlePerSource: [1, 1_000_000],
  maxPendingPerSource: [1, 100_000],
  maxPendingPerPrefix: [1, 100_000],
  loadConnectionsPerSecond: [1, 1_000_000],
  sourceConnectionsPerSecond: [1, 1_000_000],
  sourceConnectionBurst: [1, 1_000_000],
  replayCacheEntries: [1, 10_000_000],
  // At least one full record (64 KiB) must fit, or a single record would stall a tunnel.
  highWaterBytes: [64 * KIB, GIB],
  spoolMaxBytes: [64 * KIB, 1024 * GIB],
  usageFlushMs: [1, MAX_DURATION_MS],
  reconnectMinMs: [1, MAX_DURATION_MS],
  reconnectMaxMs: [1, MAX_DURATION_MS],
  reconnectResyncMaxMs: [1, MAX_DURATION_MS],
  reconnectResyncWindowMs: [0, MAX_DURATION_MS],
  keySetWaitMs: [0, MAX_DURATION_MS],
  controlPingMs: [1, MAX_DURATION_MS],
  controlDeadMs: [2, MAX_DURATION_MS],
  sweepMs: [1, MAX_DURATION_MS],
})

const NAMES = Object.keys(DEFAULT_LIMITS) as Array<keyof AgentLimits>

export interface LimitsLayer {
  /** An object of AgentLimits fields, or undefined when this layer sets none. */
  readonly value: unknown
  /** Where it came from, for messages (`"limits" in agent.json`). */
  readonly from: string
}

export function loadLimits(layers: readonly LimitsLayer[]): AgentLimits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS }
  const set = new Set<string>()
  for (const layer of layers) {
    if (layer.value === undefined || layer.value === null) continue
    if (typeof layer.value !== 'object' || Array.isArray(layer.value)) {
      throw agentError('AGENT_ERR_CONFIG', `${layer.from} must be an object of limits (${NAMES.join(', ')})`)
    }
    for (const [name, value] of Object.entries(layer.value)) {
      if (!Object.hasOwn(LIMIT_BOUNDS, name)) {
        throw agentError('AGENT_ERR_CONFIG', `${layer.from} has an unknown limit ${JSON.stringify(name.slice(0, 40))}; the limits are ${NAMES.join(', ')}`)
      }
      if (set.has(name)) continue
      const [min, max] = LIMIT_BOUNDS[name as keyof AgentLimits]
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
        const unit = name.endsWith('Ms') ? ' (milliseconds)' : name.endsWith('Bytes') ? ' (bytes)' : ''
        throw agentError('AGENT_ERR_CONFIG', `${layer.from}: ${name} must be an integer from ${min} to ${max}${unit}`)
      }
      out[name] = value
      set.add(name)
    }
  }
  const limits = out as unknown as AgentLimits
  if (limits.reconnectMinMs > limits.reconnectMaxMs) {
    throw agentError('AGENT_ERR_CONFIG', 'limits: reconnectMinMs must not be larger than reconnectMaxMs')
  }
  if (limits.keySetWaitMs >= limits.handshakeTimeoutMs) {
    throw agentError('AGENT_ERR_CONFIG', 'limits: keySetWaitMs must be smaller than handshakeTimeoutMs')
  }
  if (limits.controlPingMs >= limits.controlDeadMs) {
    throw agentError('AGENT_ERR_CONFIG', 'limits: controlPingMs must be smaller than controlDeadMs')
  }
  return Object.freeze(limits)
}
