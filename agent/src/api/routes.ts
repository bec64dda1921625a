// The local API's routes. Deliberately small: exact paths only (every route of the
// agent API is a fixed path such as /v1/status or /v1/encrypt), so adding a route
// is one entry in a list; fastify routes them (server.ts), and a path that exists
// under another method answers 405 with an Allow header rather than 404.
import type { AgentStatus } from './status.js'

export interface ApiRequest {
  /**
   * The parsed JSON body; undefined for GET and for an empty body; the bytes
   * themselves (a Buffer) for an `application/octet-stream` body on a route
   * with `binaryBody`.
   */
  readonly body: unknown
  /** The parsed query string (`/readyz?check=kms`); empty when there is none. */
  readonly query?: Readonly<Record<string, unknown>>
  /** Aborted when the client goes away before the answer is sent. */
  readonly signal: AbortSignal
}

export interface ApiResponse {
  /** Default 200. */
  readonly status?: number
  /** Sent as JSON (`null` when absent and there is no `raw`). */
  readonly body?: unknown
  /** Sent as is instead of `body`, with its own content type (Prometheus text for /metrics, the data API's JSON). */
  readonly raw?: { readonly contentType: string; readonly body: string | Uint8Array }
}

export interface ApiRoute {
  readonly method: string
  /** An exact path, e.g. `/v1/encrypt`. */
  readonly path: string
  /** Largest accepted body for this route in bytes (default: the server's limit, 1 MiB). */
  readonly maxBodyBytes?: number
  /** Also takes `application/octet-stream` bodies, handed over as bytes (the data API's binary batches). */
  readonly binaryBody?: boolean
  /**
   * Answered without the API token (the probes /healthz, /readyz, /metrics): only for
   * routes whose answer holds no key, token or data, never for the data API.
   */
  readonly open?: boolean
  /**
   * Answers the request. A thrown KeymeshError is answered with its status and
   * `{ error: { code, message } }`; anything else is logged and answered 500
   * AGENT_ERR_INTERNAL without details.
   */
  handler(req: ApiRequest): Promise<ApiResponse>
}

const METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE'])

/**
 * Throws a plain Error on a programming mistake: a bad method, a path that is not
 * fixed (fastify would read `:x` as a parameter), or a route given twice.
 */
export function checkRoutes(routes: readonly ApiRoute[]): void {
  const seen = new Set<string>()
  for (const route of routes) {
    if (!METHODS.has(route.method)) throw new Error(`API route ${route.path}: unsupported method ${route.method}`)
    if (!/^\/[A-Za-z0-9/_.-]*$/.test(route.path)) throw new Error(`API route ${route.path}: path must be a fixed path starting with /`)
    const key = `${route.method} ${route.path}`
    if (seen.has(key)) throw new Error(`API route ${key} is given twice`)
    seen.add(key)
  }
}

/** The built-in route: `GET /v1/status`. */
export function statusRoute(status: () => AgentStatus): ApiRoute {
  return { method: 'GET', path: '/v1/status', handler: async () => ({ body: status() }) }
}
