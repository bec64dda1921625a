// The agent's metrics: one prom-client Registry per agent, scraped at GET /metrics
// on the local API (api/probes.ts). See docs/metrics.md for every series.
//
// Most values are read at each scrape from state the agent keeps anyway (tunnel
// stats, usage spool stats, the control session's state), so tunnels and the
// spool do no extra work per record. Only two counters are counted as things
// happen: local API answers (one per request) and KMS calls (one per call, when
// it settles).
import { Counter, Registry } from 'prom-client'

import { isKeymeshError } from '../../protocol/src/index.js'
import type { KmsOp } from '../../protocol/src/index.js'
import { counterFromState, gaugeFromState, metricsText, type MetricsText, type Sample } from '../../platform/src/index.js'
import type { KmsBackend } from './kms/routes.js'
import type { TunnelServiceStats } from './tunnel/service.js'
import type { UsageStats } from './usage/reporter.js'

export interface AgentMetricSources {
  readonly tunnels: () => TunnelServiceStats
  readonly usage: () => UsageStats
  /** The control session is up and its first key set arrived. */
  readonly controlConnected: () => boolean
  /** Wall-clock steps seen since start (platform/src/clock-watch.ts); none when absent. */
  readonly clockJumps?: () => { readonly forward: number; readonly backward: number }
}

export type KmsOutcome = 'ok' | 'deny' | 'error'

/** deny: the control plane refused the caller (401/403); error: anything else that failed. */
export function kmsOutcome(err: unknown): KmsOutcome {
  return isKeymeshError(err) && (err.status === 401 || err.status === 403) ? 'deny' : 'error'
}

function byCode(counts: Readonly<Record<string, number>>): Sample<'code'>[] {
  return Object.entries(counts).map(([code, n]) => [{ code }, n])
}

export class AgentMetrics {
  readonly registry = new Registry()
  readonly #apiRequests: Counter<'method' | 'route' | 'status'>
  readonly #kmsCalls: Counter<'op' | 'outcome'>

  constructor(s: AgentMetricSources) {
    const registry = this.registry
    this.#apiRequests = new Counter({
      name: 'keymesh_agent_api_requests_total',
      help: 'Local API requests answered, by method, route ("(unmatched)" when none matched) and HTTP status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    })
    this.#kmsCalls = new Counter({
      name: 'keymesh_agent_kms_calls_total',
      help: 'KMS calls sent to the control plane, by op and outcome (ok, deny, error); a batch counts each item',
      labelNames: ['op', 'outcome'],
      registers: [registry],
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_control_connected',
      help: '1 while the control session is up and has delivered the key set, else 0',
      read: () => (s.controlConnected() ? 1 : 0),
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_tunnels_open',
      help: 'Open tunnels, by direction (outbound: this agent dialed)',
      labelNames: ['direction'],
      read: () => {
        const t = s.tunnels()
        return [[{ direction: 'inbound' }, t.inbound], [{ direction: 'outbound' }, t.outbound]]
      },
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_tunnel_handshakes_pending',
      help: 'Inbound tunnel handshakes in progress',
      read: () => s.tunnels().pending,
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_tunnel_connections_awaiting_hello',
      help: 'Inbound tunnel connections that have not sent their first handshake message',
      read: () => s.tunnels().awaitingHello,
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_tunnel_preauth_refusals_total',
      help: 'Inbound tunnel connections refused before authentication by a limit (or while under load), by error code',
      labelNames: ['code'],
      read: () => byCode(s.tunnels().preauthRefusalsByCode),
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_tunnel_buffered_bytes',
      help: 'Bytes the tunnels hold in memory now, queued towards either side',
      read: () => s.tunnels().bufferedBytes,
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_tunnel_bytes_total',
      help: 'Plaintext bytes through tunnels since start, by direction (in: received from peer agents, out: sent to them)',
      labelNames: ['direction'],
      read: () => {
        const t = s.tunnels()
        return [[{ direction: 'in' }, t.bytesIn], [{ direction: 'out' }, t.bytesOut]]
      },
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_tunnel_handshake_failures_total',
      help: 'Tunnel handshakes that failed (bad or forged handshake, timeout, cut connection), by error code',
      labelNames: ['code'],
      read: () => byCode(s.tunnels().handshakeFailuresByCode),
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_tunnel_rejections_total',
      help: 'Tunnel connections refused by policy or limits before opening, by error code',
      labelNames: ['code'],
      read: () => byCode(s.tunnels().rejectionsByCode),
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_usage_spool_unacked_batches',
      help: 'Usage batches spooled (or being written to the spool) and not yet acknowledged by the control plane',
      read: () => s.usage().unackedBatches,
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_usage_spool_unacked_bytes',
      help: 'Bytes of the usage batches not yet acknowledged',
      read: () => s.usage().unackedBytes,
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_usage_spool_file_bytes',
      help: 'Size of the usage spool file once the writes under way land (acknowledged lines awaiting compaction included)',
      read: () => s.usage().spoolBytes,
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_clock_jumps_total',
      help: 'Steps of the wall clock seen (wall time and elapsed time disagreeing by more than 2 s), by direction (forward, backward)',
      labelNames: ['direction'],
      read: () => {
        const j = s.clockJumps?.() ?? { forward: 0, backward: 0 }
        return [[{ direction: 'forward' }, j.forward], [{ direction: 'backward' }, j.backward]]
      },
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_usage_lost_batches_total',
      help: 'Usage batches a damaged spool could not give back (since start); each loss is reported to the control plane (audited as usage.loss)',
      read: () => s.usage().lostBatches,
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_usage_recovered_batches_total',
      help: 'Intact usage batches recovered from a damaged spool at start and delivered as usual',
      read: () => s.usage().recoveredBatches,
    })
    gaugeFromState({
      registry,
      name: 'keymesh_agent_usage_loss_reports_pending',
      help: 'Usage-loss reports not yet acknowledged by the control plane',
      read: () => s.usage().lossReportsPending,
    })
    counterFromState({
      registry,
      name: 'keymesh_agent_usage_events_dropped_total',
      help: 'Usage events dropped because the spool was full',
      read: () => s.usage().dropped,
    })
  }

  apiAnswered(route: string, method: string, status: number): void {
    this.#apiRequests.inc({ method, route, status: String(status) })
  }

  /** The same backend, with every call counted by op and outcome when it settles. */
  instrumentKms(backend: KmsBackend): KmsBackend {
    const observe = (op: KmsOp, p: Promise<unknown>): void => {
      p.then(
        () => this.#kmsCalls.inc({ op, outcome: 'ok' }),
        (err: unknown) => this.#kmsCalls.inc({ op, outcome: kmsOutcome(err) }),
      )
    }
    return {
      request: (req, signal) => {
        const op = req.op
        const p = backend.request(req, signal)
        observe(op, p)
        return p
      },
      requestBatch: (reqs, signal) => {
        const ops = reqs.map((r) => r.op)
        const ps = backend.requestBatch(reqs, signal)
        ps.forEach((p, i) => observe(ops[i] as KmsOp, p))
        return ps
      },
      get connected() {
        return backend.connected
      },
    }
  }

  text(): Promise<MetricsText> {
    return metricsText(this.registry)
  }
}
