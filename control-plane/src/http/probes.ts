// The probe routes beside the built-in `GET /healthz`: `GET /readyz`, `GET /metrics`
// and `GET /v1/identity`. Like /healthz they take no bearer token, as Prometheus and
// load balancers expect: they expose no key material, no token and no data, only
// whether the control plane can serve, counts of what it did, and the public key
// agents pin (DIR/identity.pub: an agent whose handshake fails asks it, to say
// whether its pinned key is the wrong one). They are
// `probe` routes, so a refusal of one (a stray query parameter) is not audited,
// and answering one writes nothing to the store.
import { readinessAnswer, type MetricsText, type Readiness } from '../../../platform/src/index.js'
import { formatPublicKey, publicKeyFingerprint, type CryptoSuite } from '../../../protocol/src/index.js'
import type { ReadinessReport } from '../readiness.js'
import { route, type Route } from './router.js'

export interface ProbeSources {
  /** The verdict alone, or with each check's and what the body shows besides (readiness.ts). */
  readiness(): Promise<Readiness | ReadinessReport>
  metrics(): Promise<MetricsText>
  /** While sealed, what /readyz shows of it (custody/keyring.ts); null when unsealed. */
  sealed?(): Record<string, unknown> | null
  /** The control plane's static public key (throws CP_ERR_SEALED while sealed), for /v1/identity. */
  identity?(): Uint8Array
  readonly suite?: CryptoSuite
}

export function probeRoutes(sources: ProbeSources): Route[] {
  return [
    route({
      method: 'GET',
      path: '/readyz',
      operation: 'probe.ready',
      auth: 'none',
      probe: true,
      handler: async () => {
        const sealed = sources.sealed?.() ?? null
        if (sealed) return { status: 503, body: { status: 'sealed', reason: 'the control plane is sealed: keymesh unseal', ...sealed } }
        return readyzAnswer(await sources.readiness())
      },
    }),
    route({
      method: 'GET',
      path: '/metrics',
      operation: 'probe.metrics',
      auth: 'none',
      probe: true,
      handler: async () => ({ status: 200, raw: await sources.metrics() }),
    }),
    ...(sources.identity && sources.suite ? [identityRoute(sources.identity, sources.suite)] : []),
  ]
}

function identityRoute(identity: () => Uint8Array, suite: CryptoSuite): Route {
  return route({
    method: 'GET',
    path: '/v1/identity',
    operation: 'probe.identity',
    auth: 'none',
    probe: true,
    handler: async () => {
      const key = identity()
      return { status: 200, body: { publicKey: formatPublicKey(key), fingerprint: publicKeyFingerprint(suite, key) } }
    },
  })
}

/** 200 or 503 with the verdict's reason and code, then each check's answer and the extra facts. */
function readyzAnswer(r: Readiness | ReadinessReport): { status: number; body: Record<string, unknown> } {
  if (!('overall' in r)) return readinessAnswer(r)
  const answer = readinessAnswer(r.overall)
  const checks = Object.fromEntries(Object.entries(r.checks).map(([name, c]) => [name, readinessAnswer(c).body]))
  return { status: answer.status, body: { ...answer.body, checks, ...r.info } }
}
