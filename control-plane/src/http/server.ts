// The control plane's HTTP shell: one fastify instance on one port for the admin API,
// `GET /healthz`, and (through `onUpgrade`) the agents' WebSocket endpoint.
//
// fastify routes, reads bodies within the limit and runs the hooks; this file is the
// pipeline every route goes through, one fastify hook per step:
//   onRequest     refuse while closing; admit a token route's caller (`strangers`: 429
//                 once its source has spent its budget of failed authentications, before
//                 the token is looked at); authenticate it (401); check the query
//   (body)        fastify reads it within `bodyBytes` (413), http-json parses it (415, 400)
//   preValidation validate the body against the route's schema
//   preHandler    authorize the principal for the route's operation (403)
//   error handler map any error to `{"error":{"code","message"}}`; audit it (onDenied, onRejected)
//   onResponse    log the request and count it (onAnswered: metrics)
// What must hold:
// - every error is `{"error":{"code","message"}}` with its KeymeshError's status; an
//   error that is not a KeymeshError is logged and answered 500 CP_ERR_INTERNAL with
//   nothing of its message;
// - every 401 and 403, wherever raised, and every 429 CP_ERR_RATE_LIMITED reaches
//   `onDenied` once (the caller audits);
// - a request that authenticates gives back the token `strangers` took for it: only
//   failed authentications spend a source's budget;
// - `/healthz` and probe routes (`Route.probe`) take no token and never reach
//   `onDenied` or `onRejected`: a probe or a scraper must not grow the audit log;
// - every answer reaches `onAnswered` once (metrics);
// - after `close()` starts, no new connection is accepted, in-flight requests run to
//   completion (or are aborted at `shutdownTimeoutMs`), idle keep-alive sockets are
//   closed, and `close()` resolves when no HTTP socket is left. Upgraded sockets
//   belong to the upgrade hook's owner, who closes them (so fastify's own close,
//   which waits for every socket of the server, is not waited for here).
import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { Readable, type Duplex } from 'node:stream'
import { fastifyCookie } from '@fastify/cookie'
import { fastify, LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'

import { KeymeshError, isKeymeshError } from '../../../protocol/src/index.js'
import { allowedMethods, REDACT_PATHS, redactFields, useJsonBodies } from '../../../platform/src/index.js'
import { cpError } from '../errors.js'
import { bindPort, type BoundPort } from './bound-port.js'
import { dryRunScope, type DryRunState } from '../dry-run.js'
import { DEFAULT_BODY_LIMIT, validateBody, validateQuery } from './body.js'
import type { HttpMethod, Principal, RequestContext, Route, RouteResult } from './router.js'

export interface HttpLimits {
  /** Largest request body in bytes (default 1 MiB); larger is 413 CP_ERR_BODY_TOO_LARGE. */
  readonly bodyBytes?: number
  /** Time to receive the request headers (default 20 s); node answers 408. */
  readonly headersTimeoutMs?: number
  /** Time to receive the whole request (default 30 s); node answers 408. */
  readonly requestTimeoutMs?: number
  /** Idle time before a keep-alive socket is closed (default 5 s). */
  readonly keepAliveTimeoutMs?: number
  /** How long `close()` waits for in-flight requests before aborting them (default 10 s). */
  readonly shutdownTimeoutMs?: number
  /** How often node checks the two request timeouts (default 1 s). */
  readonly timeoutCheckIntervalMs?: number
  /** Time for a client to finish the TLS handshake (default 10 s); the connection is dropped then. */
  readonly tlsHandshakeTimeoutMs?: number
  /**
   * Failed authentications a source (an IPv4 address, an IPv6 /64) may make per second
   * (default 20) and in a burst (default 40) before it is answered 429 CP_ERR_RATE_LIMITED
   * (http/stranger-limits.ts, wired by app.ts).
   */
  readonly strangerFailuresPerSecond?: number
  readonly strangerFailureBurst?: number
  /** Sources whose budget is tracked at most, least recently seen forgotten first (default 4,096). */
  readonly strangerSources?: number
  /** Window over which refusals of unauthenticated callers are summarised in the audit log, per source and code (default 1 minute). */
  readonly strangerAuditWindowMs?: number
}

/** Admission of a token route's caller before its token is looked at (http/stranger-limits.ts). */
export interface StrangerGate {
  /** A ticket, or null when the caller's source must be answered 429 CP_ERR_RATE_LIMITED. */
  admit(remoteAddress: string | undefined): { refund(): void } | null
  /** The `retry-after` of a 429. */
  readonly retryAfterSeconds: number
}

export interface Decision { readonly allow: boolean; readonly reason: string }

export interface DeniedEvent<P extends Principal> {
  /** `unauthenticated` for a 401 and a 429 CP_ERR_RATE_LIMITED (no principal), `forbidden` for a 403. */
  readonly kind: 'unauthenticated' | 'forbidden'
  readonly requestId: string
  readonly method: string
  readonly path: string
  readonly operation: string
  readonly principal: P | null
  readonly reason: string
  /** The error the client was answered with (its code is what the audit records). */
  readonly error: KeymeshError
  readonly remoteAddress: string | undefined
}

/** A request that matched a route and was refused before its handler ran (bad query or body, 413, 415 …). */
export interface RejectedEvent<P extends Principal> {
  readonly requestId: string
  readonly method: string
  readonly path: string
  readonly operation: string
  readonly principal: P | null
  readonly error: KeymeshError
  readonly remoteAddress: string | undefined
}

export interface AnsweredEvent {
  /** The route's operation; `healthz` for the built-in probe, `(unmatched)` when no route matched. */
  readonly operation: string
  readonly status: number
  readonly seconds: number
}

/** What besides the bearer token a request offers to authenticate with (the console's session cookie, ui/session.ts). */
export interface CredentialRequest {
  readonly method: string
  readonly headers: IncomingHttpHeaders
  /** The request's cookies, parsed (@fastify/cookie). */
  readonly cookies: Readonly<Record<string, string | undefined>>
}

export interface HttpServerOptions<P extends Principal> {
  readonly routes: readonly Route<P>[]
  /** Resolves a bearer token (undefined when none was sent), or else the request's other credentials, to a principal, or null. */
  authenticate(bearer: string | undefined, request: CredentialRequest): Promise<P | null>
  /** Decides a token route's operation; the context carries params, query and validated body. */
  authorize(principal: P, operation: string, ctx: RequestContext<P>): Promise<Decision>
  /** Called once for every 401, 403 and 429 CP_ERR_RATE_LIMITED before it is answered. A throw is logged; the denial stands. */
  onDenied?(event: DeniedEvent<P>): void | Promise<void>
  /**
   * Called once for every other 4xx raised before the route's handler ran, so bad input
   * is audited like a denial (the handler audits its own refusals). A throw is logged.
   */
  onRejected?(event: RejectedEvent<P>): void | Promise<void>
  /** Called once per answered request, after it is written (metrics). A throw is logged. */
  onAnswered?(event: AnsweredEvent): void
  /** Receives every HTTP upgrade (the agent WebSocket endpoint). Without it, upgrades get 404. */
  onUpgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Limits on callers who have not authenticated; none when absent. */
  readonly strangers?: StrangerGate
  /** Throws to refuse a matched route before its caller is authenticated (a sealed control plane: app.ts). */
  gate?(route: Route<P>): void
  readonly logger: Logger
  readonly limits?: HttpLimits
  /** Request id generator (default randomUUID); a well-formed `x-request-id` header wins. */
  readonly requestId?: () => string
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP when absent. */
  readonly tls?: { readonly cert: string; readonly key: string }
}

export interface HttpServer {
  /** Binds and serves; resolves the bound address (port 0 picks a free port); CP_ERR_LISTEN when it cannot. */
  listen(host: string, port: number): Promise<AddressInfo>
  /** Starts serving on a port bound beforehand (bound-port.ts); resolves its address. */
  serve(port: BoundPort): Promise<AddressInfo>
  /** Graceful shutdown (see the file comment). Idempotent: later calls share the first. */
  close(): Promise<void>
  /** The node server, for tests and for attaching to its events. */
  readonly server: Server
}

/** What the hooks learn about one request, in order. */
interface Exchange<P extends Principal> {
  readonly started: bigint
  readonly path: string
  readonly route: Route<P> | undefined
  readonly ac: AbortController
  principal: P | null
  query: Readonly<Record<string, unknown>>
  body: unknown
  /** The route's handler was entered: refusals from here on are the handler's to audit. */
  handled: boolean
  /** `?dryRun=true` on a changing token route (../dry-run.ts). */
  dryRun: boolean
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/
const JSON_TYPE = 'application/json; charset=utf-8'

export function createHttpServer<P extends Principal>(opts: HttpServerOptions<P>): HttpServer {
  if (opts.routes.some((r) => r.path === '/healthz' && r.method === 'GET')) throw new Error('GET /healthz is built in; a route may not claim it')
  const bodyLimit = opts.limits?.bodyBytes ?? DEFAULT_BODY_LIMIT
  const shutdownTimeoutMs = opts.limits?.shutdownTimeoutMs ?? 10_000
  const log = opts.logger.child({ component: 'http' }, { redact: { paths: [...REDACT_PATHS], censor: '[Redacted]' } })
  // A level changed at run time (api/logging.ts) reaches this layer too.
  opts.logger.on('level-change', (level: string, _value: number, _prev: string, _prevValue: number, changed: unknown) => {
    if (changed === opts.logger) log.level = level
  })
  const nextId = opts.requestId ?? randomUUID
  const allowed = allowedMethods(opts.routes)
  const exchanges = new WeakMap<FastifyRequest, Exchange<P>>()
  // Every HTTP socket with its count of unfinished requests; upgraded sockets leave.
  const sockets = new Map<Socket, number>()
  const inflight = new Set<AbortController>()
  let closing = false
  let closed: Promise<void> | undefined
  let onDrained: (() => void) | undefined
  const serverTimeouts = {
    headersTimeout: opts.limits?.headersTimeoutMs ?? 20_000,
    connectionsCheckingInterval: opts.limits?.timeoutCheckIntervalMs ?? 1_000,
  }

  const app = fastify({
    loggerInstance: log as FastifyBaseLogger,
    // The request line below is ours (with operation and principal); fastify's would repeat it.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => {
      const header = req.headers['x-request-id']
      return typeof header === 'string' && REQUEST_ID.test(header) ? header : nextId()
    },
    requestIdHeader: false,
    bodyLimit,
    exposeHeadRoutes: false,
    return503OnClosing: false,
    routerOptions: { maxParamLength: 1024 },
    keepAliveTimeout: opts.limits?.keepAliveTimeoutMs ?? 5_000,
    requestTimeout: opts.limits?.requestTimeoutMs ?? 30_000,
    http: serverTimeouts,
    // node's https server takes the http server's options beside the TLS ones.
    ...(opts.tls ? { https: { ...serverTimeouts, cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: opts.limits?.tlsHandshakeTimeoutMs ?? 10_000 } } : {}),
    // A path fastify cannot decode (a malformed percent-encoding) never reaches a route.
    frameworkErrors: (err, req, reply) => {
      const e = cpError('CP_ERR_BAD_REQUEST', err.code === 'FST_ERR_BAD_URL' ? 'path has a malformed percent-encoding' : 'path is not acceptable')
      const started = process.hrtime.bigint()
      reply.raw.on('finish', () => answered(req, undefined, null, reply.raw.statusCode, started))
      secure(reply).code(e.status).type(JSON_TYPE).send(JSON.stringify({ error: e.toJSON() }))
    },
  })
  const server = app.server
  // Cookies are parsed only where credentials are looked at (below), and set from a RouteResult.
  void app.register(fastifyCookie, { hook: false })
  useJsonBodies(app, {
    mediaType: () => cpError('CP_ERR_UNSUPPORTED_MEDIA_TYPE'),
    notUtf8: () => cpError('CP_ERR_BAD_JSON', 'body is not UTF-8'),
    badJson: () => cpError('CP_ERR_BAD_JSON'),
  })

  const healthz: Route<P> = { method: 'GET', path: '/healthz', operation: 'healthz', auth: 'none', probe: true, handler: async () => ({ status: 200, body: { status: 'ok' } }) }
  for (const route of [healthz, ...opts.routes]) {
    app.route({ method: route.method, url: route.path, config: { route }, handler: (req, reply) => handle(req, reply, route) })
  }

  app.addHook('onRequest', async (req, reply) => {
    // find-my-way lets a parameter be empty (`/v1/keys/`); no keymesh route takes one.
    const empty = Object.values(req.params as Record<string, string>).includes('')
    const route = empty ? undefined : (req.routeOptions.config as { route?: Route<P> }).route
    const x: Exchange<P> = { started: process.hrtime.bigint(), path: pathOf(req.url), route, ac: new AbortController(), principal: null, query: {}, body: undefined, handled: false, dryRun: false }
    exchanges.set(req, x)
    const socket = req.raw.socket
    inflight.add(x.ac)
    sockets.set(socket, (sockets.get(socket) ?? 0) + 1)
    reply.raw.on('close', () => {
      inflight.delete(x.ac)
      if (!reply.raw.writableFinished) x.ac.abort()
      const left = (sockets.get(socket) ?? 1) - 1
      if (sockets.has(socket)) sockets.set(socket, left)
      if (closing && left === 0) socket.end()
    })
    if (closing) throw cpError('CP_ERR_SHUTTING_DOWN')
    if (empty) throw cpError('CP_ERR_NOT_FOUND', 'no such endpoint')
    if (route === undefined) return
    opts.gate?.(route)
    if (route.auth === 'token') {
      const ticket = opts.strangers?.admit(req.raw.socket.remoteAddress)
      if (ticket === null) throw cpError('CP_ERR_RATE_LIMITED')
      const bearer = parseBearer(req.headers.authorization)
      let principal: P | null
      try {
        const cookies = req.headers.cookie === undefined ? {} : app.parseCookie(req.headers.cookie)
        principal = await opts.authenticate(bearer, { method: req.method, headers: req.headers, cookies })
      } catch (e) {
        // A malformed token spends the budget; a store that failed is not the caller's doing.
        if (!isKeymeshError(e) || e.status !== 401) ticket?.refund()
        throw e
      }
      if (principal === null) throw cpError('CP_ERR_UNAUTHENTICATED', bearer === undefined ? 'no bearer token' : 'bearer token not recognised')
      ticket?.refund()
      x.principal = principal
    }
    const { dryRun, rest } = takeDryRun(route, req.query as Record<string, string | string[]>)
    x.dryRun = dryRun
    x.query = checkQuery(route, rest)
  })

  app.addHook('preValidation', async (req) => {
    const x = exchanges.get(req) as Exchange<P>
    const route = x.route
    if (route === undefined) return
    const raw = req.body
    if (raw !== undefined) log.debug({ requestId: req.id, body: redactFields(raw) }, 'request body')
    if (!route.body && raw !== undefined) throw cpError('CP_ERR_BAD_REQUEST', 'this endpoint takes no body')
    x.body = route.body ? validateBody(route.body, raw) : undefined
  })

  app.addHook('preHandler', async (req) => {
    const x = exchanges.get(req) as Exchange<P>
    const route = x.route
    if (x.principal === null || route === undefined) return
    const decision = await opts.authorize(x.principal, route.operation, context(req, x, route) as RequestContext<P>)
    if (!decision.allow) throw cpError('CP_ERR_FORBIDDEN', decision.reason)
  })

  app.addHook('onSend', async (_req, reply) => {
    secure(reply)
    if (closing) reply.header('connection', 'close')
  })

  app.addHook('onResponse', async (req, reply) => {
    const x = exchanges.get(req)
    answered(req, x?.route, x?.principal ?? null, reply.statusCode, x?.started ?? process.hrtime.bigint())
  })

  app.setNotFoundHandler(async (req, reply) => {
    const methods = allowed(pathOf(req.url))
    if (methods.length === 0) throw cpError('CP_ERR_NOT_FOUND', 'no such endpoint')
    reply.header('allow', methods.join(', '))
    throw cpError('CP_ERR_METHOD_NOT_ALLOWED', `use ${methods.join(', ')}`)
  })

  app.setErrorHandler(async (err, req, reply) => {
    const x = exchanges.get(req)
    const e = isKeymeshError(err) ? err : fromFastify(err as Error & { code?: string; statusCode?: number }, bodyLimit)
    if (e === undefined || (e.status >= 500 && e.code !== 'CP_ERR_SEALED')) log.error({ requestId: req.id, err }, 'request failed')
    const route = x?.route
    const at = { requestId: req.id, method: req.method, path: x?.path ?? pathOf(req.url), operation: route?.operation ?? '', principal: x?.principal ?? null, remoteAddress: req.raw.socket.remoteAddress }
    if (e && (e.status === 401 || e.status === 403 || e.code === 'CP_ERR_RATE_LIMITED')) {
      await denied(e, at)
      if (e.status === 401) reply.header('www-authenticate', 'Bearer')
      if (e.code === 'CP_ERR_RATE_LIMITED') reply.header('retry-after', String(opts.strangers?.retryAfterSeconds ?? 1))
    } else if (e && e.status < 500 && route !== undefined && route.probe !== true && x?.handled !== true && opts.onRejected) {
      try {
        await opts.onRejected({ ...at, error: e })
      } catch (hookErr) {
        log.error({ requestId: req.id, err: hookErr }, 'onRejected failed')
      }
    }
    const answer = e ?? cpError('CP_ERR_INTERNAL')
    // A body that stopped being read (413) cannot leave the connection reusable.
    if (answer.code === 'CP_ERR_BODY_TOO_LARGE') reply.header('connection', 'close')
    return reply.code(answer.status).type(JSON_TYPE).send(JSON.stringify({ error: answer.toJSON() }))
  })

  async function handle(req: FastifyRequest, reply: FastifyReply, route: Route<P>): Promise<FastifyReply> {
    const x = exchanges.get(req) as Exchange<P>
    x.handled = true
    if (!x.dryRun) return send(reply, await route.handler(context(req, x, route)), req.id)
    const state: DryRunState = { changes: [] }
    const result = await dryRunScope.run(state, () => route.handler(context(req, x, route)))
    return send(reply, { status: 200, body: { dryRun: true, result: result.body ?? null, changes: state.changes } }, req.id)
  }

  function context(req: FastifyRequest, x: Exchange<P>, route: Route<P>): RequestContext<P | null> {
    return {
      method: req.method as HttpMethod, path: x.path, pattern: route.path, operation: route.operation,
      params: req.params as Record<string, string>, query: x.query, body: x.body, principal: x.principal,
      requestId: req.id, remoteAddress: req.raw.socket.remoteAddress, signal: x.ac.signal,
    }
  }

  /** Writes a result. A body that cannot be serialised throws before anything is written. */
  function send(reply: FastifyReply, result: RouteResult, requestId: string): FastifyReply {
    reply.code(result.status)
    for (const [k, v] of Object.entries(result.headers ?? {})) reply.header(k, v)
    for (const c of result.cookies ?? []) reply.setCookie(c.name, c.value, { ...c.options })
    if (result.stream) return reply.send(Readable.from(cutOffOnError(result.stream, reply, requestId)))
    if (result.raw) return reply.type(result.raw.contentType).send(result.raw.body)
    if (result.body === undefined || result.status === 204) return reply.send()
    const payload = JSON.stringify(result.body)
    return reply.type(JSON_TYPE).send(payload)
  }

  /**
   * A streamed answer (RouteResult.stream) that fails part-way drops the connection,
   * so the client sees a cut-off answer, never a short one that looks complete.
   */
  async function* cutOffOnError(stream: AsyncIterable<string>, reply: FastifyReply, requestId: string): AsyncIterable<string> {
    try {
      yield* stream
    } catch (err) {
      log.error({ requestId, err }, 'streamed answer failed part-way; connection dropped')
      reply.raw.destroy()
    }
  }

  function answered(req: FastifyRequest, route: Route<P> | undefined, principal: P | null, status: number, started: bigint): void {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const line = { requestId: req.id, method: req.method, path: pathOf(req.url), status, ms: seconds * 1e3, operation: route?.operation, principal: principal?.id }
    if (route?.probe === true && status < 400) log.debug(line, 'request')
    else log.info(line, 'request')
    try {
      opts.onAnswered?.({ operation: route?.operation ?? '(unmatched)', status, seconds })
    } catch (err) {
      log.error({ requestId: req.id, err }, 'onAnswered failed')
    }
  }

  async function denied(e: KeymeshError, at: Omit<DeniedEvent<P>, 'kind' | 'reason' | 'error'>): Promise<void> {
    if (!opts.onDenied) return
    const kind = e.status === 403 ? 'forbidden' : 'unauthenticated'
    try {
      await opts.onDenied({ ...at, kind, reason: e.detail ?? e.message, error: e })
    } catch (err) {
      // The request is refused either way; a failed audit of the refusal must not
      // turn it into a different answer, but it must be seen.
      log.error({ requestId: at.requestId, err }, 'onDenied failed')
    }
  }

  // Behind TLS the requests' sockets are the TLS sockets, which exist once the handshake is done.
  server.on(opts.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.set(socket, 0)
    socket.on('close', () => { sockets.delete(socket); drained() })
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node drops its own socket error handler when it hands a socket to 'upgrade':
    // without this one, a client resetting the connection while we refuse it
    // would be an unhandled 'error' event and take the whole process down.
    socket.on('error', () => socket.destroy())
    sockets.delete(socket as Socket)
    drained()
    if (closing || !opts.onUpgrade) {
      const status = closing ? '503 Service Unavailable' : '404 Not Found'
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      return
    }
    opts.onUpgrade(req, socket, head)
  })

  function drained(): void {
    if (closing && sockets.size === 0) onDrained?.()
  }

  return {
    server,
    async serve(port) {
      await app.ready()
      return port.handOver(server)
    },
    async listen(host, port) {
      const bound = await bindPort(host, port)
      return this.serve(bound).catch((e: unknown) => {
        bound.close()
        throw e
      })
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        closing = true
        const timer = setTimeout(() => {
          log.warn({ inflight: inflight.size }, 'shutdown timeout: aborting in-flight requests')
          for (const ac of inflight) ac.abort()
          for (const s of sockets.keys()) s.destroy()
        }, shutdownTimeoutMs)
        timer.unref()
        onDrained = () => { clearTimeout(timer); resolve() }
        // fastify stops the listener and closes idle keep-alive sockets; its promise
        // also waits for upgraded sockets, which are not ours to wait for.
        app.close().catch((err: unknown) => log.error({ err }, 'closing the HTTP server failed'))
        for (const [s, n] of sockets) if (n === 0) s.destroy()
        drained()
      })
      return closed
    },
  }
}

/** Refusals fastify raises itself (body limit, media type, unreadable body), as CP errors. */
function fromFastify(err: Error & { code?: string; statusCode?: number }, bodyLimit: number): KeymeshError | undefined {
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return cpError('CP_ERR_BODY_TOO_LARGE', `limit is ${bodyLimit} bytes`)
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return cpError('CP_ERR_UNSUPPORTED_MEDIA_TYPE')
  // Cut off, a Content-Length that does not match, …: fastify's message may quote the input.
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) return cpError('CP_ERR_BAD_REQUEST', 'request body was cut off or malformed', { cause: err })
  return undefined
}

/** Answers may carry wrapped keys or tokens: never cached, never sniffed. */
function secure(reply: FastifyReply): FastifyReply {
  return reply.header('x-request-id', reply.request.id).header('cache-control', 'no-store').header('x-content-type-options', 'nosniff')
}

/**
 * `dryRun=true|false` on a route that changes state (a token route other than GET) is
 * the server's, not the route's: it is taken out before the route's own query check.
 */
function takeDryRun<P extends Principal>(route: Route<P>, raw: Readonly<Record<string, string | string[]>>): { dryRun: boolean; rest: Readonly<Record<string, string | string[]>> } {
  if (route.auth !== 'token' || route.method === 'GET' || !('dryRun' in raw)) return { dryRun: false, rest: raw }
  const { dryRun: value, ...rest } = raw
  if (value !== 'true' && value !== 'false') throw cpError('CP_ERR_BAD_REQUEST', 'dryRun is true or false')
  if (value === 'true' && route.dryRun === false) throw cpError('CP_ERR_BAD_REQUEST', `${route.operation} cannot be previewed with dryRun; nothing was changed`)
  return { dryRun: value === 'true', rest }
}

/** A query parameter given twice is refused rather than guessed at; unknown ones too. */
function checkQuery<P extends Principal>(route: Route<P>, raw: Readonly<Record<string, string | string[]>>): Readonly<Record<string, unknown>> {
  const query: Record<string, string> = {}
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== 'string') throw cpError('CP_ERR_BAD_REQUEST', 'a query parameter is given more than once')
    query[name] = value
  }
  if (route.query) return validateQuery(route.query, query)
  if (Object.keys(query).length > 0) throw cpError('CP_ERR_UNKNOWN_FIELD', 'this endpoint takes no query parameters')
  return {}
}

function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

function parseBearer(header: string | undefined): string | undefined {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '')
  return m?.[1]
}
