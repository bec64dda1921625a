// The public surface of the agent package: what the CLI, the tests of other
// packages and the benches may use. Everything else is internal (test/boundaries.test.ts).
//
// The CLI imports this entry for every command, so nothing it loads when imported
// may pull in ws or prom-client: what would (agent.ts, tunnel/service.ts) is
// exported as an async function that imports its module on first call
// (test/cli/light.test.ts keeps this true).
import type * as AgentModule from './agent.js'
import type * as MetricsModule from './metrics.js'
import type * as TunnelServiceModule from './tunnel/service.js'

export type { Agent } from './agent.js'
export { requestAgentApi } from './api/client.js'
export { AgentApiServer } from './api/server.js'
export type { AgentStatus } from './api/status.js'
export { DEFAULT_LOG_LEVEL, DEFAULT_TUNNEL_LISTEN, LOG_LEVELS, envName, loadAgentConfig, loadAgentLogLevel, parseApiListen } from './config-load.js'
export { DEFAULT_LIMITS } from './config.js'
export type { AgentConfig, AgentLimits, ApiListen, HostPort } from './config.js'
export { AGENT_ERRORS, agentError } from './errors.js'
export { KeySet } from './keyset.js'
export type { PairEntry } from './keyset.js'
export type { TunnelDeps, TunnelService } from './tunnel/service.js'

/** Starts an agent (agent.ts), loading its control session, tunnels and metrics on first call. */
export const startAgent: typeof AgentModule.startAgent = async (config, deps) => (await import('./agent.js')).startAgent(config, deps)

/** Starts the tunnel listener and dialer on their own (TunnelService.start), loading ws on first call. */
export const startTunnelService: typeof TunnelServiceModule.TunnelService.start = async (deps) =>
  (await import('./tunnel/service.js')).TunnelService.start(deps)
export type { AgentMetrics } from './metrics.js'

/** The agent's Prometheus metrics (metrics.ts), loading prom-client on first call. */
export const createAgentMetrics = async (...args: ConstructorParameters<typeof MetricsModule.AgentMetrics>): Promise<MetricsModule.AgentMetrics> =>
  new (await import('./metrics.js')).AgentMetrics(...args)
export { decodeBinaryAnswers, encodeBinaryBatch, BINARY_CONTENT_TYPE, type BinaryBatchItem, type BinaryResult } from './kms/binary-body.js'
