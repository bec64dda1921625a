// Routes of the admin API.
//
// A route names its method, a path pattern (`/v1/keys/:name`, fastify's syntax:
// fastify routes the request), whether it needs a bearer token, the operation it
// performs (what the authorizer decides on), and optional body and query schemas.
// The server (server.ts) runs every request through the same hooks —
// authenticate, read and validate, authorize, handle — so no route can skip one
// by forgetting it.
import type { InferFields, InferQuery, ObjectSchema, QuerySchema } from './body.js'

/** Who made a request. The policy module's principal type extends this. */
export interface Principal { readonly id: string }

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

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
  /** Cookies to set (the console's session, ui/session.ts); an empty value with maxAge 0 clears one. */
  readonly cookies?: readonly SetCookie[]
}

export interface SetCookie {
  readonly name: string
  readonly value: string
  readonly options: {
    readonly path: string
    readonly httpOnly: boolean
    readonly secure: boolean
    readonly sameSite: 'strict' | 'lax'
    /** Seconds. */
    readonly maxAge: number
  }
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
  /**
   * false: the change does not run through perform()'s transaction (sealing and rekeying
   * act on keys in memory and on custody), so `?dryRun=true` could not roll it back and is
   * refused instead of pretending.
   */
  readonly dryRun?: false
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
  readonly dryRun?: false
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
