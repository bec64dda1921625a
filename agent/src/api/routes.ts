// The local API's routes and how a request finds one. Deliberately small: exact
// paths only (every route of the agent API is a fixed path such as /v1/status or
// /v1/encrypt), so adding a route is one entry in a list, and a path that exists
// under another method answers 405 with an Allow header rather than 404.
import type { AgentStatus } from './status.js'

export interface ApiRequest {
  /** The parsed JSON body; undefined for GET and for an empty body. */
  readonly body: unknown
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
  /**
   * Answers the request. A thrown KeymeshError is answered with its status and
   * `{ error: { code, message } }`; anything else is logged and answered 500
   * AGENT_ERR_INTERNAL without details.
   */
  handler(req: ApiRequest): Promise<ApiResponse>
}

export type RouteMatch =
  | { readonly kind: 'found'; readonly route: ApiRoute }
  | { readonly kind: 'method-not-allowed'; readonly allowed: readonly string[] }
  | { readonly kind: 'not-found' }

const METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE'])

export class RouteTable {
  readonly #byPath = new Map<string, Map<string, ApiRoute>>()

  /** Throws a plain Error on a programming mistake: a bad method or path, or a route given twice. */
  constructor(routes: readonly ApiRoute[]) {
    for (const route of routes) {
      if (!METHODS.has(route.method)) throw new Error(`API route ${route.path}: unsupported method ${route.method}`)
      if (!/^\/[A-Za-z0-9/_.-]*$/.test(route.path)) throw new Error(`API route ${route.path}: path must be a fixed path starting with /`)
      const methods = this.#byPath.get(route.path) ?? new Map<string, ApiRoute>()
      if (methods.has(route.method)) throw new Error(`API route ${route.method} ${route.path} is given twice`)
      methods.set(route.method, route)
      this.#byPath.set(route.path, methods)
    }
  }

  match(method: string, path: string): RouteMatch {
    const methods = this.#byPath.get(path)
    if (methods === undefined) return { kind: 'not-found' }
    const route = methods.get(method)
    return route !== undefined ? { kind: 'found', route } : { kind: 'method-not-allowed', allowed: [...methods.keys()] }
  }
}

/** The built-in route: `GET /v1/status`. */
export function statusRoute(status: () => AgentStatus): ApiRoute {
  return { method: 'GET', path: '/v1/status', handler: async () => ({ body: status() }) }
}
