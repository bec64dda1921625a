// The agent's local API: JSON over HTTP on a loopback port or a unix socket.
// `GET /v1/status` is built in; other routes (the data API's encrypt, decrypt …,
// the probes /healthz, /readyz and /metrics) are passed in as ApiRoute entries.
//
// Contract:
//   - Every answer is JSON, except a route's `raw` answer (/metrics). Errors are `{ error: { code, message } }` with the
//     KeymeshError's status: unknown path 404 AGENT_ERR_NOT_FOUND, known path with
//     another method 405 AGENT_ERR_METHOD_NOT_ALLOWED (with Allow), a body over the
//     limit 413 AGENT_ERR_BODY_TOO_LARGE (and the connection is closed). A throw that
//     is not a KeymeshError is logged and answered 500 AGENT_ERR_INTERNAL with no
//     detail; a KeymeshError's message is fixed text plus a detail that by contract
//     holds no secret (protocol/src/errors.ts), so it is passed on.
//   - On a loopback TCP address, a request whose Host header names something other
//     than an IP literal or localhost is refused: a web page on a domain that
//     re-binds to 127.0.0.1 must not reach encrypt/decrypt.
//   - close() stops accepting, closes idle keep-alive connections, lets requests in
//     progress finish (their answers close the connection), answers any request
//     that still arrives with 503 AGENT_ERR_CLOSED, and resolves when no connection
//     is left; a unix socket file it created is removed.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import type { Logger } from 'pino'

import { isKeymeshError } from '../../../protocol/src/index.js'
import { formatHostPort, isLoopbackHost, type ApiListen } from '../config.js'
import { agentError } from '../errors.js'
import { DEFAULT_BODY_LIMIT, readJsonBody } from './body.js'
import { listenTcp, listenUnix, unlinkOwnSocket, type UnixBinding } from './listen.js'
import { RouteTable, statusRoute, type ApiResponse, type ApiRoute } from './routes.js'
import type { AgentStatus } from './status.js'

export type { AgentStatus, ControlPlaneState, PairStatus } from './status.js'
export type { ApiRequest, ApiResponse, ApiRoute } from './routes.js'
export { DEFAULT_BODY_LIMIT } from './body.js'

export interface ApiServerOptions {
  readonly listen: ApiListen
  /** Builds the answer to GET /v1/status; called once per request. */
  readonly status: () => AgentStatus
  readonly logger: Logger
  /** Further routes; none may claim GET /v1/status. */
  readonly routes?: readonly ApiRoute[]
  /** Largest request body in bytes for routes that do not set their own (default 1 MiB). */
  readonly bodyLimitBytes?: number
  /** Called once per answered request with its route (`(unmatched)` when none matched) and status (metrics). */
  readonly onAnswered?: (route: string, method: string, status: number) => void
}

export class AgentApiServer {
  readonly #server: Server
  readonly #table: RouteTable
  readonly #log: Logger
  readonly #bodyLimit: number
  readonly #onAnswered: ApiServerOptions['onAnswered']
  #url = ''
  #checkHost = false
  #unix: UnixBinding | undefined
  #closing = false
  #closed: Promise<void> | undefined

  private constructor(o: ApiServerOptions) {
    this.#table = new RouteTable([statusRoute(o.status), ...(o.routes ?? [])])
    this.#log = o.logger
    this.#bodyLimit = o.bodyLimitBytes ?? DEFAULT_BODY_LIMIT
    this.#onAnswered = o.onAnswered
    this.#server = createServer({ headersTimeout: 20_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 }, (req, res) => {
      // #handle answers every error itself; this only guards against a bug in that path.
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err }, 'API request handling failed')
        res.destroy()
      })
    })
    // A client that resets mid-request must not become an unhandled error.
    this.#server.on('clientError', (_err, socket) => socket.destroy())
  }

  /** Binds the listener; AGENT_ERR_LISTEN when the address or socket path cannot be used. */
  static async start(o: ApiServerOptions): Promise<AgentApiServer> {
    const api = new AgentApiServer(o)
    if ('socketPath' in o.listen) {
      api.#unix = await listenUnix(api.#server, o.listen.socketPath)
      api.#url = `unix:${o.listen.socketPath}`
    } else {
      const bound = await listenTcp(api.#server, o.listen)
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
    this.#closed ??= new Promise<void>((resolve) => {
      this.#closing = true
      this.#server.close(() => {
        if (this.#unix !== undefined) unlinkOwnSocket(this.#unix)
        resolve()
      })
      this.#server.closeIdleConnections()
    })
    return this.#closed
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    const target = req.url ?? '/'
    const q = target.indexOf('?')
    const path = q === -1 ? target : target.slice(0, q)
    const ac = new AbortController()
    res.on('close', () => { if (!res.writableFinished) ac.abort() })
    let status = 500
    let route = '(unmatched)'
    try {
      if (this.#closing) throw agentError('AGENT_ERR_CLOSED')
      if (this.#checkHost && !isLocalHostHeader(req.headers.host)) {
        throw agentError('AGENT_ERR_BAD_REQUEST', 'the Host header must be an IP address or localhost')
      }
      const m = this.#table.match(method, path)
      if (m.kind === 'not-found') throw agentError('AGENT_ERR_NOT_FOUND', 'see GET /v1/status')
      if (m.kind === 'method-not-allowed') {
        res.setHeader('allow', m.allowed.join(', '))
        throw agentError('AGENT_ERR_METHOD_NOT_ALLOWED', `use ${m.allowed.join(', ')}`)
      }
      route = m.route.path
      const body = method === 'GET' ? undefined : await readJsonBody(req, m.route.maxBodyBytes ?? this.#bodyLimit)
      const result = await m.route.handler({ body, signal: ac.signal })
      status = this.#send(res, result.status ?? 200, result.body, result.raw)
    } catch (err) {
      const e = isKeymeshError(err) ? err : undefined
      if (e === undefined || e.status >= 500) this.#log.error({ err, method, path }, 'API request failed')
      const answer = e ?? agentError('AGENT_ERR_INTERNAL')
      // A body left unread (413) cannot leave the connection reusable.
      if (answer.code === 'AGENT_ERR_BODY_TOO_LARGE') res.setHeader('connection', 'close')
      status = this.#send(res, answer.status, { error: answer.toJSON() })
    } finally {
      this.#log.debug({ method, path, status }, 'API request')
      try {
        this.#onAnswered?.(route, method, status)
      } catch (err) {
        this.#log.error({ err }, 'onAnswered failed')
      }
    }
  }

  /** Writes a JSON answer (or a raw one); returns the status sent. */
  #send(res: ServerResponse, status: number, body: unknown, raw?: ApiResponse['raw']): number {
    if (res.headersSent || res.destroyed) return status
    const payload = raw?.body ?? JSON.stringify(body ?? null)
    if (this.#closing) res.setHeader('connection', 'close')
    // Answers may carry plaintext or data keys: never cached, never sniffed.
    res.setHeader('cache-control', 'no-store')
    res.setHeader('x-content-type-options', 'nosniff')
    res.setHeader('content-type', raw?.contentType ?? 'application/json; charset=utf-8')
    res.setHeader('content-length', Buffer.byteLength(payload))
    res.writeHead(status).end(payload)
    return status
  }
}

/** A Host header naming an IP literal or localhost (with or without a port); absent is allowed (HTTP/1.0). */
function isLocalHostHeader(header: string | undefined): boolean {
  if (header === undefined) return true
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header)
  if (m === null) return false
  const host = (m[1] ?? m[2] ?? '').toLowerCase()
  return m[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || host === 'localhost'
}
