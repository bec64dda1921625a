// The agent's probes on its local API: `GET /healthz` (the process answers),
// `GET /readyz` (enrolled and holding a key set, from the control plane or the
// sealed cache: tunnels and the data API can work) and `GET /metrics`
// (Prometheus text). They are the API's only `open` routes, answered without the
// API token: they expose no key material, no token and no data, only state and
// counts, and a kubelet or Prometheus scraper should not need the token.
import { readinessAnswer, type MetricsText, type Readiness } from '../../../platform/src/index.js'
import type { ApiRoute } from './routes.js'

export interface AgentProbeSources {
  readonly enrolled: () => boolean
  readonly hasKeySet: () => boolean
  readonly metrics: () => Promise<MetricsText>
}

export function agentReadiness(enrolled: boolean, hasKeySet: boolean): Readiness {
  if (!enrolled) return { ready: false, reason: 'not enrolled yet: waiting for the control plane to accept the join token' }
  if (!hasKeySet) return { ready: false, reason: 'no key set yet: the control plane has not sent one and there is no cached set' }
  return { ready: true }
}

export function probeRoutes(s: AgentProbeSources): ApiRoute[] {
  return [
    { method: 'GET', path: '/healthz', open: true, handler: async () => ({ body: { status: 'ok' } }) },
    { method: 'GET', path: '/readyz', open: true, handler: async () => readinessAnswer(agentReadiness(s.enrolled(), s.hasKeySet())) },
    { method: 'GET', path: '/metrics', open: true, handler: async () => ({ raw: await s.metrics() }) },
  ]
}
