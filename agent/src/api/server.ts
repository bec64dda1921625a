// The agent's local API: JSON over HTTP on a loopback port or a unix socket, on
// fastify. `GET /v1/status` is built in; other routes (the data API's encrypt,
// decrypt …, the probes /healthz, /readyz and /metrics) are passed in as ApiRoute
// entries. The pipeline is short: onRequest (refuse while closing, the bearer
// token, the Host check), fastify's body
// reading within the route's limit, the handler, the error handler, and
// onResponse (the log line and onAnswered: metrics).
//
// Contract:
//   - Every answer is JSON, except a route's `raw` answer (/metrics). Errors are `{ error: { code, message } }` with the
//     KeymeshError's status: unknown path 404 AGENT_ERR_NOT_FOUND, known path with
//     another method 405 AGENT_ERR_METHOD_NOT_ALLOWED (with Allow), a body over the
//     limit 413 AGENT_ERR_BODY_TOO_LARGE (and the connection is closed). A throw that
//     is not a KeymeshError is logged and answered 500 AGENT_ERR_INTERNAL with no
//     detail; a KeymeshError's message is fixed text plus a detail that by contract
//     holds no secret (protocol/src/errors.ts), so it is passed on.
//   - Over TCP every route but the `open` ones (the probes) needs
//     `Authorization: Bearer <token>`, else 401 AGENT_ERR_API_TOKEN before the body
//     is read; that includes unknown paths, so a caller without the token learns
//     nothing about the routes. Over a unix socket the socket's mode (0600) is the
//     boundary: a token is accepted but not needed. A TCP server without a token
//     does not start.
//   - On a loopback TCP address, a request whose Host header names something other
//     than an IP literal or localhost is refused: a web page on a domain that
//     re-binds to 127.0.0.1 must not reach encrypt/decrypt. On a non-loopback
//     address (only with --api-allow-remote) there is no Host to expect: the token,
//     which a browser never sends on its own, is the guard.
//   - close() stops accepting, closes idle keep-alive connections, lets requests in
//     progress finish (their answers close the connection), answers any request
//     that still arrives with 503 AGENT_ERR_CLOSED, and resolves when no connection
//     is left; a unix socket file it created is removed.
import { isIP } from 'node:net'
import { fastify, LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'

import { isKeymeshError, type KeymeshError } from '../../../protocol/src/index.js'
import { allowedMethods, useJsonBodies } from '../../../platform/src/index.js'
import { formatHostPort, isLoopbackHost, type ApiListen } from '../config.js'
import { agentError } from '../errors.js'
import { bearerMatches } from './token.js'
import { listenTcp, listenUnix, unlinkOwnSocket, type UnixBinding } from './listen.js'
import { checkRoutes, statusRoute, type ApiResponse, type ApiRoute } from './routes.js'
import type { AgentStatus } from './status.js'

export type { AgentStatus, ControlPlaneState, PairStatus } from './status.js'
export type { ApiRequest, ApiResponse, ApiRoute } from './routes.js'

export const DEFAULT_BODY_LIMIT = 1024 * 1024

export interface ApiServerOptions {
  readonly listen: ApiListen
  /** Builds the answer to GET /v1/status; called once per request. */
  readonly status: () => AgentStatus
  readonly logger: Logger
  /** Further routes; none may claim GET /v1/status. */
  readonly routes?: readonly ApiRoute[]
  /** The bearer token (STATE_DIR/api.token); required over TCP, accepted over a unix socket. */
  readonly token?: string
  /** Largest request body in bytes for routes that do not set their own (default 1 MiB). */
  readonly bodyLimitBytes?: number
  /** Called once per answered request with its route (`(unmatched)` when none matched) and status (metrics). */
  readonly onAnswered?: (route: string, method: string, status: number) => void
}

const JSON_TYPE = 'application/json; charset=utf-8'
const BAD_MEDIA = 'a request body must be sent as application/json (UTF-8)'

export class AgentApiServer {
  readonly #app: FastifyInstance
  readonly #log: Logger
  readonly #onAnswered: ApiServerOptions['onAnswered']
  /** The AbortController of each request in progress (its handler's signal). */
  readonly #signals = new WeakMap<FastifyRequest, AbortController>()
  #url = ''
  #checkHost = false
  /** The token every non-open request must carry; undefined over a unix socket. */
  #requireToken: string | undefined
  readonly #openRoutes: ReadonlySet<string>
  #unix: UnixBinding | undefined
  #closing = false
  #closed: Promise<void> | undefined

  private constructor(o: ApiServerOptions) {
    const routes = [statusRoute(o.status), ...(o.routes ?? [])]
    checkRoutes(routes)
    this.#log = o.logger
    this.#onAnswered = o.onAnswered
    this.#openRoutes = new Set(routes.filter((r) => r.open === true).map((r) => `${r.method} ${r.path}`))
    const bodyLimit = o.bodyLimitBytes ?? DEFAULT_BODY_LIMIT
    const allowed = allowedMethods(routes)
    const app = fastify({
      loggerInstance: o.logger as FastifyBaseLogger,
      // The debug line in onResponse is the request log; fastify's would repeat it at info.
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit,
      exposeHeadRoutes: false,
      return503OnClosing: false,
      keepAliveTimeout: 5_000,
      requestTimeout: 30_000,
      http: { headersTimeout: 20_000 },
      // A path fastify cannot decode (a malformed percent-encoding) never reaches a route.
      frameworkErrors: (_err, req, reply) => {
        reply.raw.on('finish', () => this.#answered(req.method, pathOf(req.url), '(unmatched)', reply.raw.statusCode))
        this.#send(reply, 400, { error: agentError('AGENT_ERR_BAD_REQUEST', 'the path is malformed').toJSON() })
      },
    })
    this.#app = app
    const binaryRoutes = new Set(routes.filter((r) => r.binaryBody === true).map((r) => `${r.method} ${r.path}`))
    useJsonBodies(app, {
      mediaType: () => agentError('AGENT_ERR_BAD_REQUEST', BAD_MEDIA),
      notUtf8: () => agentError('AGENT_ERR_BAD_REQUEST', 'body is not UTF-8'),
      badJson: () => agentError('AGENT_ERR_BAD_REQUEST', 'body is not valid JSON'),
    }, { octetStream: (req) => binaryRoutes.has(`${req.method} ${req.routeOptions.url ?? ''}`) })
    for (const route of routes) {
      app.route({
        method: route.method as 'GET',
        url: route.path,
        bodyLimit: route.maxBodyBytes ?? bodyLimit,
        handler: async (req, reply) => {
          const ac = this.#signals.get(req) as AbortController
          const result = await route.handler({ body: req.body, query: (req.query ?? {}) as Readonly<Record<string, unknown>>, signal: ac.signal })
          return this.#send(reply, result.status ?? 200, result.body, result.raw)
        },
      })
    }

    app.addHook('onRequest', async (req, reply) => {
      const ac = new AbortController()
      this.#signals.set(req, ac)
      reply.raw.on('close', () => { if (!reply.raw.writableFinished) ac.abort() })
      if (this.#closing) throw agentError('AGENT_ERR_CLOSED')
      if (this.#requireToken !== undefined && !this.#openRoutes.has(`${req.method} ${req.routeOptions.url ?? ''}`) &&
        !bearerMatches(req.headers.authorization, this.#requireToken)) {
        throw agentError('AGENT_ERR_API_TOKEN', req.headers.authorization === undefined ? 'no Authorization header' : 'the token does not match')
      }
      if (this.#checkHost && !isLocalHostHeader(req.headers.host)) {
        throw agentError('AGENT_ERR_BAD_REQUEST', 'the Host header must be an IP address or localhost')
      }
    })

    app.addHook('onResponse', async (req, reply) => {
      this.#answered(req.method, pathOf(req.url), req.routeOptions.url ?? '(unmatched)', reply.statusCode)
    })

    app.setNotFoundHandler(async (req, reply) => {
      const methods = allowed(pathOf(req.url))
      if (methods.length === 0) throw agentError('AGENT_ERR_NOT_FOUND', 'see GET /v1/status')
      reply.header('allow', methods.join(', '))
      throw agentError('AGENT_ERR_METHOD_NOT_ALLOWED', `use ${methods.join(', ')}`)
    })

    app.setErrorHandler(async (err, req, reply) => {
      const e = isKeymeshError(err) ? err : fromFastify(err as Error & { code?: string; statusCode?: number }, req.routeOptions.bodyLimit)
      // A known condition (503 the control plane is away, busy, not ready) is a warning
      // without a stack; only what nobody expected is an error with one.
      if (e === undefined || e.code === 'AGENT_ERR_INTERNAL') this.#log.error({ err, method: req.method, path: pathOf(req.url) }, 'API request failed')
      else if (e.status >= 500) this.#log.warn({ code: e.code, reason: e.message, method: req.method, path: pathOf(req.url) }, 'API request refused')
      const answer = e ?? agentError('AGENT_ERR_INTERNAL')
      // A body left unread (413, 401) cannot leave the connection reusable.
      if (answer.code === 'AGENT_ERR_BODY_TOO_LARGE' || answer.code === 'AGENT_ERR_API_TOKEN') reply.header('connection', 'close')
      return this.#send(reply, answer.status, { error: answer.toJSON() })
    })
  }

  /** Binds the listener; AGENT_ERR_LISTEN when the address or socket path cannot be used. */
  static async start(o: ApiServerOptions): Promise<AgentApiServer> {
    const api = new AgentApiServer(o)
    await api.#app.ready()
    if ('socketPath' in o.listen) {
      api.#unix = await listenUnix(api.#app.server, o.listen.socketPath)
      api.#url = `unix:${o.listen.socketPath}`
    } else {
      if (o.token === undefined || o.token === '') throw new Error('a local API on TCP needs a token (any local user can connect to the port)')
      api.#requireToken = o.token
      const bound = await listenTcp(api.#app.server, o.listen)
      api.#url = `http://${formatHostPort(bound)}`
      api.#checkHost = isLoopbackHost(o.listen.host)
    }
    o.logger.info({ url: api.#url }, 'local API listening')
    return api
  }

  /** `http://HOST:PORT` (the bound port) or `unix:PATH`. */
  get url(): string {
    return this.#url
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true
      // fastify stops accepting, closes idle keep-alive sockets and resolves when the
      // server has no connection left (the agent API has no upgraded sockets).
      await this.#app.close()
      if (this.#unix !== undefined) unlinkOwnSocket(this.#unix)
    })()
    return this.#closed
  }

  #answered(method: string, path: string, route: string, status: number): void {
    this.#log.debug({ method, path, status }, 'API request')
    try {
      this.#onAnswered?.(route, method, status)
    } catch (err) {
      this.#log.error({ err }, 'onAnswered failed')
    }
  }

  /** Writes a JSON answer (or a raw one). */
  #send(reply: FastifyReply, status: number, body: unknown, raw?: ApiResponse['raw']): FastifyReply {
    const payload = raw?.body ?? JSON.stringify(body ?? null)
    if (this.#closing) reply.header('connection', 'close')
    // Answers may carry plaintext or data keys: never cached, never sniffed.
    return reply
      .code(status)
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .header('content-type', raw?.contentType ?? JSON_TYPE)
      .send(payload)
  }
}

/** Refusals fastify raises itself (body limit, media type, unreadable body), as agent errors. */
function fromFastify(err: Error & { code?: string; statusCode?: number }, limit: number): KeymeshError | undefined {
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return agentError('AGENT_ERR_BODY_TOO_LARGE', `limit is ${limit} bytes`)
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return agentError('AGENT_ERR_BAD_REQUEST', BAD_MEDIA)
  // Cut off, a Content-Length that does not match, a bad URL …: fastify's message may quote the input.
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) return agentError('AGENT_ERR_BAD_REQUEST', 'request was cut off or malformed', { cause: err })
  return undefined
}

function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

/** A Host header naming an IP literal or localhost (with or without a port); absent is allowed (HTTP/1.0). */
function isLocalHostHeader(header: string | undefined): boolean {
  if (header === undefined) return true
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header)
  if (m === null) return false
  const host = (m[1] ?? m[2] ?? '').toLowerCase()
  return m[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || host === 'localhost'
}
