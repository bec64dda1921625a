// Routes of the admin API and how a request path finds one.
//
// A route names its method, a path pattern (`/v1/keys/:name`), whether it needs a
// bearer token, the operation it performs (what the authorizer decides on), and
// optional body and query schemas. The server (server.ts) runs every request
// through the same steps — match, authenticate, read and validate, authorize,
// handle — so no route can skip one by forgetting it.
import { cpError } from '../errors.js'
import type { InferFields, InferQuery, ObjectSchema, QuerySchema } from './body.js'

/** Who made a request. The policy module's principal type extends this. */
export interface Principal { readonly id: string }

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
const METHODS: readonly string[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']

export interface RequestContext<P = Principal | null, B = unknown, Q = Readonly<Record<string, unknown>>> {
  readonly method: HttpMethod
  /** The path as received, without the query string. */
  readonly path: string
  /** The route's pattern, e.g. `/v1/keys/:name` (for logs and audit). */
  readonly pattern: string
  readonly operation: string
  /** Path parameters, percent-decoded. */
  readonly params: Readonly<Record<string, string>>
  readonly query: Q
  /** The validated body (`{}` when the route declares a schema and none was sent). */
  readonly body: B
  /** The authenticated caller; null only on routes with `auth: 'none'`. */
  readonly principal: P
  /** Echoed in the `x-request-id` response header and every log line. */
  readonly requestId: string
  readonly remoteAddress: string | undefined
  /** Aborted when the client goes away or shutdown gives up waiting. */
  readonly signal: AbortSignal
}

export interface RouteResult {
  readonly status: number
  /** Sent as JSON; omit for 204. */
  readonly body?: unknown
  readonly headers?: Readonly<Record<string, string>>
  /**
   * Sent instead of `body`, chunk by chunk (chunked encoding, `content-type` from
   * `headers`), waiting for the socket to drain: constant memory for exports. An
   * error part-way destroys the connection, so the client sees a cut-off answer,
   * never a short one that looks complete.
   */
  readonly stream?: AsyncIterable<string>
  /** Sent as is instead of `body`, with its own content type (Prometheus text for /metrics). */
  readonly raw?: { readonly contentType: string; readonly body: string }
}

export interface Route<P extends Principal = Principal> {
  readonly method: HttpMethod
  readonly path: string
  readonly operation: string
  /** `token`: a valid bearer token and an allow from the authorizer are required. */
  readonly auth: 'token' | 'none'
  /**
   * A probe (readiness, metrics): anonymous, read-only and hit every few seconds.
   * Its refusals never reach `onRejected`, so a scraper cannot grow the audit log,
   * and its successful answers are logged at debug.
   */
  readonly probe?: boolean
  readonly body?: ObjectSchema
  readonly query?: QuerySchema
  // Method syntax on purpose: a route's handler takes a narrower context than this
  // erased type, and method parameters are checked bivariantly.
  handler(ctx: RequestContext<P | null, any, any>): Promise<RouteResult>
}

type BodyOf<S> = S extends ObjectSchema ? InferFields<S['fields']> : undefined
type QueryOf<Q> = Q extends QuerySchema ? InferQuery<Q> : Readonly<Record<string, never>>

export interface RouteSpec<P extends Principal, A extends 'token' | 'none', S, Q> {
  readonly method: HttpMethod
  readonly path: string
  readonly operation: string
  readonly auth: A
  readonly probe?: A extends 'none' ? boolean : never
  readonly body?: S
  readonly query?: Q
  readonly handler: (ctx: RequestContext<A extends 'token' ? P : null, BodyOf<S>, QueryOf<Q>>) => Promise<RouteResult>
}

/**
 * Returns a `route()` helper typed for a principal type, so handlers see their
 * body, query and principal with the right types:
 * `const route = routeFactory<OperatorPrincipal>()`.
 */
export function routeFactory<P extends Principal>() {
  return <A extends 'token' | 'none', const S extends ObjectSchema | undefined = undefined, const Q extends QuerySchema | undefined = undefined>(
    spec: RouteSpec<P, A, S, Q>,
  ): Route<P> => spec as unknown as Route<P>
}

export const route = routeFactory<Principal>()

export type RouteMatch<P extends Principal> =
  | { readonly kind: 'found'; readonly route: Route<P>; readonly params: Readonly<Record<string, string>> }
  | { readonly kind: 'method-not-allowed'; readonly allowed: readonly HttpMethod[] }
  | { readonly kind: 'not-found' }

interface Compiled<P extends Principal> {
  readonly route: Route<P>
  /** Literal segments as strings, parameters as `{ param }`. */
  readonly segments: ReadonlyArray<string | { readonly param: string }>
}

export class Router<P extends Principal = Principal> {
  readonly #routes: Compiled<P>[]

  constructor(routes: readonly Route<P>[]) {
    const compiled = routes.map((r) => compile(r))
    const seen = new Set<string>()
    for (const c of compiled) {
      // Two routes with the same method and shape would make one unreachable.
      const shape = `${c.route.method} ${c.segments.map((s) => (typeof s === 'string' ? s : ':')).join('/')}`
      if (seen.has(shape)) throw new Error(`duplicate route: ${c.route.method} ${c.route.path}`)
      seen.add(shape)
    }
    // Literal segments win over parameters at the first place two patterns differ,
    // so `/v1/keys/export` is found before `/v1/keys/:name`.
    this.#routes = compiled.sort((a, b) => specificity(a, b))
  }

  get routes(): readonly Route<P>[] {
    return this.#routes.map((c) => c.route)
  }

  match(method: string, path: string): RouteMatch<P> {
    const parts = path.split('/')
    const allowed: HttpMethod[] = []
    for (const c of this.#routes) {
      const params = matchSegments(c.segments, parts)
      if (params === null) continue
      if (c.route.method === method) return { kind: 'found', route: c.route, params }
      if (!allowed.includes(c.route.method)) allowed.push(c.route.method)
    }
    return allowed.length > 0 ? { kind: 'method-not-allowed', allowed } : { kind: 'not-found' }
  }
}

function compile<P extends Principal>(route: Route<P>): Compiled<P> {
  if (!METHODS.includes(route.method)) throw new Error(`route ${route.path}: unsupported method ${route.method}`)
  if (!route.path.startsWith('/')) throw new Error(`route ${route.path}: path must start with /`)
  const names = new Set<string>()
  const segments = route.path.slice(1).split('/').map((s) => {
    if (!s.startsWith(':')) return s
    const param = s.slice(1)
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(param) || names.has(param)) {
      throw new Error(`route ${route.path}: bad or repeated parameter name :${param}`)
    }
    names.add(param)
    return { param }
  })
  return { route, segments }
}

function specificity<P extends Principal>(a: Compiled<P>, b: Compiled<P>): number {
  const n = Math.min(a.segments.length, b.segments.length)
  for (let i = 0; i < n; i++) {
    const la = typeof a.segments[i] === 'string'
    const lb = typeof b.segments[i] === 'string'
    if (la !== lb) return la ? -1 : 1
  }
  return 0
}

/** `parts` is the path split on `/` (so parts[0] is the empty string before the first slash). */
function matchSegments(segments: Compiled<Principal>['segments'], parts: readonly string[]): Record<string, string> | null {
  if (parts.length !== segments.length + 1 || parts[0] !== '') return null
  const params: Record<string, string> = {}
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]
    const part = parts[i + 1] as string
    if (typeof seg === 'string') {
      if (seg !== part) return null
    } else {
      if (part === '') return null
      params[(seg as { param: string }).param] = decodeSegment(part)
    }
  }
  return params
}

function decodeSegment(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw cpError('CP_ERR_BAD_REQUEST', 'path has a malformed percent-encoding')
  }
}

/** Splits a query string; a parameter given twice is refused rather than guessed at. */
export function parseQuery(search: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of new URLSearchParams(search)) {
    if (Object.hasOwn(out, name)) throw cpError('CP_ERR_BAD_REQUEST', 'a query parameter is given more than once')
    out[name] = value
  }
  return out
}

/** Splits a request target into path and query string (an absolute-form target matches no route). */
export function splitTarget(target: string): { path: string; search: string } {
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const search = q === -1 ? '' : target.slice(q + 1)
  return { path, search }
}
