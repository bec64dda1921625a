// The agent's probes on its local API: `GET /healthz` (the process answers),
// `GET /readyz` (enrolled and holding a key set, from the control plane or the
// sealed cache: tunnels can work; `?check=tunnels` the same, `?check=kms` also needs
// the control-plane session, which every encrypt/decrypt/datakey call goes through;
// the body lists both checks) and `GET /metrics`
// (Prometheus text). They are the API's only `open` routes, answered without the
// API token: they expose no key material, no token and no data, only state and
// counts, and a kubelet or Prometheus scraper should not need the token.
import { readinessAnswer, type MetricsText, type Readiness } from '../../../platform/src/index.js'
import { agentError } from '../errors.js'
import type { ApiRoute } from './routes.js'

export interface AgentProbeSources {
  readonly enrolled: () => boolean
  readonly hasKeySet: () => boolean
  /** The control-plane session is up: KMS calls (encrypt, decrypt, datakey …) can be answered. */
  readonly controlConnected: () => boolean
  readonly metrics: () => Promise<MetricsText>
}

export function agentReadiness(enrolled: boolean, hasKeySet: boolean): Readiness {
  if (!enrolled) return { ready: false, reason: 'not enrolled yet: waiting for the control plane to accept the join token' }
  if (!hasKeySet) return { ready: false, reason: 'no key set yet: the control plane has not sent one and there is no cached set' }
  return { ready: true }
}

export function kmsReadiness(tunnels: Readiness, controlConnected: boolean): Readiness {
  if (!tunnels.ready) return tunnels
  if (!controlConnected) return { ready: false, reason: 'the control plane session is down: KMS calls (/v1/encrypt …) answer 503 until it is back' }
  return { ready: true }
}

const CHECKS = ['tunnels', 'kms'] as const

/** `/readyz[?check=tunnels|kms]`: the named check decides the status; the body lists both. */
export function readyzAnswer(s: Pick<AgentProbeSources, 'enrolled' | 'hasKeySet' | 'controlConnected'>, check: unknown): { status: number; body: Record<string, unknown> } {
  if (check !== undefined && !(CHECKS as readonly unknown[]).includes(check)) {
    throw agentError('AGENT_ERR_BAD_REQUEST', `check must be one of ${CHECKS.join(', ')} (GET /readyz?check=kms)`)
  }
  const tunnels = agentReadiness(s.enrolled(), s.hasKeySet())
  const results = { tunnels, kms: kmsReadiness(tunnels, s.controlConnected()) }
  const answer = readinessAnswer(results[(check ?? 'tunnels') as (typeof CHECKS)[number]])
  const checks = Object.fromEntries(Object.entries(results).map(([name, r]) => [name, readinessAnswer(r).body]))
  return { status: answer.status, body: { ...answer.body, checks } }
}

export function probeRoutes(s: AgentProbeSources): ApiRoute[] {
  return [
    { method: 'GET', path: '/healthz', open: true, handler: async () => ({ body: { status: 'ok' } }) },
    { method: 'GET', path: '/readyz', open: true, handler: async (req) => readyzAnswer(s, req.query?.['check']) },
    { method: 'GET', path: '/metrics', open: true, handler: async () => ({ raw: await s.metrics() }) },
  ]
}
