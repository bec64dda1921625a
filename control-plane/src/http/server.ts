// The control plane's HTTP shell: one node:http server on one port for the admin API,
// `GET /healthz`, and (through `onUpgrade`) the agents' WebSocket endpoint.
//
// Every request takes the same path: match → authenticate → query and body →
// authorize → handler. What must hold:
// - every error is `{"error":{"code","message"}}` with its KeymeshError's status; an
//   error that is not a KeymeshError is logged and answered 500 CP_ERR_INTERNAL with
//   nothing of its message;
// - every 401 and 403, wherever raised, reaches `onDenied` once (the caller audits);
// - `/healthz` and probe routes (`Route.probe`) take no token and never reach
//   `onDenied` or `onRejected`: a probe or a scraper must not grow the audit log;
// - every answer reaches `onAnswered` once (metrics);
// - after `close()` starts, no new connection is accepted, in-flight requests run to
//   completion (or are aborted at `shutdownTimeoutMs`), idle keep-alive sockets are
//   closed, and `close()` resolves when no HTTP socket is left. Upgraded sockets
//   belong to the upgrade hook's owner, who closes them.
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'

import { KeymeshError, isKeymeshError } from '../../../protocol/src/index.js'
import { REDACT_PATHS, redactFields } from '../../../platform/src/index.js'
import { cpError } from '../errors.js'
import { DEFAULT_BODY_LIMIT, readJsonBody, validateBody, validateQuery } from './body.js'
import { Router, parseQuery, splitTarget, type HttpMethod, type Principal, type RequestContext, type Route, type RouteResult } from './router.js'

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
}

export interface Decision { readonly allow: boolean; readonly reason: string }

export interface DeniedEvent<P extends Principal> {
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

export interface HttpServerOptions<P extends Principal> {
  readonly routes: readonly Route<P>[]
  /** Resolves a bearer token (undefined when none was sent) to a principal, or null. */
  authenticate(bearer: string | undefined): Promise<P | null>
  /** Decides a token route's operation; the context carries params, query and validated body. */
  authorize(principal: P, operation: string, ctx: RequestContext<P>): Promise<Decision>
  /** Called once for every 401 and 403 before it is answered. A throw is logged; the denial stands. */
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
  readonly logger: Logger
  readonly limits?: HttpLimits
  /** Request id generator (default randomUUID); a well-formed `x-request-id` header wins. */
  readonly requestId?: () => string
}

export interface HttpServer {
  /** Starts listening; resolves the bound address (port 0 picks a free port). */
  listen(host: string, port: number): Promise<AddressInfo>
  /** Graceful shutdown (see the file comment). Idempotent: later calls share the first. */
  close(): Promise<void>
  /** The node server, for tests and for attaching to its events. */
  readonly server: Server
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/

export function createHttpServer<P extends Principal>(opts: HttpServerOptions<P>): HttpServer {
  const router = new Router<P>(opts.routes)
  if (router.match('GET', '/healthz').kind !== 'not-found') throw new Error('GET /healthz is built in; a route may not claim it')
  const limits = {
    bodyBytes: opts.limits?.bodyBytes ?? DEFAULT_BODY_LIMIT,
    shutdownTimeoutMs: opts.limits?.shutdownTimeoutMs ?? 10_000,
  }
  const log = opts.logger.child({ component: 'http' }, { redact: { paths: [...REDACT_PATHS], censor: '[Redacted]' } })
  const nextId = opts.requestId ?? randomUUID
  // Every HTTP socket with its count of unfinished requests; upgraded sockets leave.
  const sockets = new Map<Socket, number>()
  const inflight = new Set<AbortController>()
  let closing = false
  let closed: Promise<void> | undefined
  let onDrained: (() => void) | undefined

  const server = createServer({
    headersTimeout: opts.limits?.headersTimeoutMs ?? 20_000,
    requestTimeout: opts.limits?.requestTimeoutMs ?? 30_000,
    keepAliveTimeout: opts.limits?.keepAliveTimeoutMs ?? 5_000,
    connectionsCheckingInterval: opts.limits?.timeoutCheckIntervalMs ?? 1_000,
  }, (req, res) => {
    // handle() answers every error itself; this only guards against a bug in that path.
    handle(req, res).catch((err: unknown) => { log.error({ err }, 'request handling failed'); res.destroy() })
  })

  server.on('connection', (socket: Socket) => {
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

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint()
    const header = req.headers['x-request-id']
    const requestId = typeof header === 'string' && REQUEST_ID.test(header) ? header : nextId()
    const socket = req.socket
    const ac = new AbortController()
    inflight.add(ac)
    sockets.set(socket, (sockets.get(socket) ?? 0) + 1)
    res.on('close', () => {
      inflight.delete(ac)
      if (!res.writableFinished) ac.abort()
      const left = (sockets.get(socket) ?? 1) - 1
      if (sockets.has(socket)) sockets.set(socket, left)
      if (closing && left === 0) socket.end()
    })
    res.setHeader('x-request-id', requestId)

    const method = req.method ?? 'GET'
    const { path, search } = splitTarget(req.url ?? '/')
    let route: Route<P> | undefined
    let principal: P | null = null
    let status = 500
    let handled = false
    try {
      if (closing) throw cpError('CP_ERR_SHUTTING_DOWN')
      if (method === 'GET' && path === '/healthz') {
        status = send(res, { status: 200, body: { status: 'ok' } })
        return
      }
      const m = router.match(method, path)
      if (m.kind === 'not-found') throw cpError('CP_ERR_NOT_FOUND', 'no such endpoint')
      if (m.kind === 'method-not-allowed') {
        res.setHeader('allow', m.allowed.join(', '))
        throw cpError('CP_ERR_METHOD_NOT_ALLOWED', `use ${m.allowed.join(', ')}`)
      }
      route = m.route
      if (route.auth === 'token') {
        const bearer = parseBearer(req.headers.authorization)
        principal = await opts.authenticate(bearer)
        if (principal === null) throw cpError('CP_ERR_UNAUTHENTICATED', bearer === undefined ? 'no bearer token' : 'bearer token not recognised')
      }
      const rawQuery = parseQuery(search)
      const query = route.query ? validateQuery(route.query, rawQuery) : noQuery(rawQuery)
      const raw = await readJsonBody(req, limits.bodyBytes)
      if (raw !== undefined) log.debug({ requestId, body: redactFields(raw) }, 'request body')
      if (!route.body && raw !== undefined) throw cpError('CP_ERR_BAD_REQUEST', 'this endpoint takes no body')
      const body = route.body ? validateBody(route.body, raw) : undefined
      const ctx: RequestContext<P | null> = {
        method: method as HttpMethod, path, pattern: route.path, operation: route.operation, params: m.params,
        query, body, principal, requestId, remoteAddress: socket.remoteAddress, signal: ac.signal,
      }
      if (principal !== null) {
        const decision = await opts.authorize(principal, route.operation, ctx as RequestContext<P>)
        if (!decision.allow) throw cpError('CP_ERR_FORBIDDEN', decision.reason)
      }
      handled = true
      const result = await route.handler(ctx)
      status = result.stream ? await sendStream(res, result, result.stream, requestId) : send(res, result)
    } catch (err) {
      const e = isKeymeshError(err) ? err : undefined
      if (e === undefined || e.status >= 500) {
        log.error({ requestId, err }, 'request failed')
      }
      if (e && (e.status === 401 || e.status === 403)) {
        await denied(e, { requestId, method, path, operation: route?.operation ?? '', principal, remoteAddress: socket.remoteAddress })
        if (e.status === 401) res.setHeader('www-authenticate', 'Bearer')
      } else if (e && e.status < 500 && route !== undefined && route.probe !== true && !handled && opts.onRejected) {
        try {
          await opts.onRejected({ requestId, method, path, operation: route.operation, principal, error: e, remoteAddress: socket.remoteAddress })
        } catch (hookErr) {
          log.error({ requestId, err: hookErr }, 'onRejected failed')
        }
      }
      const answer = e ?? cpError('CP_ERR_INTERNAL')
      // A body that stopped being read (413) cannot leave the connection reusable.
      if (answer.code === 'CP_ERR_BODY_TOO_LARGE') res.setHeader('connection', 'close')
      status = send(res, { status: answer.status, body: { error: answer.toJSON() } })
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      const probe = route?.probe === true || (route === undefined && method === 'GET' && path === '/healthz')
      const line = { requestId, method, path, status, ms: seconds * 1e3, operation: route?.operation, principal: principal?.id }
      if (probe && status < 400) log.debug(line, 'request')
      else log.info(line, 'request')
      try {
        opts.onAnswered?.({ operation: route?.operation ?? (probe ? 'healthz' : '(unmatched)'), status, seconds })
      } catch (err) {
        log.error({ requestId, err }, 'onAnswered failed')
      }
    }
  }

  async function denied(e: KeymeshError, at: Omit<DeniedEvent<P>, 'kind' | 'reason' | 'error'>): Promise<void> {
    if (!opts.onDenied) return
    const kind = e.status === 401 ? 'unauthenticated' : 'forbidden'
    try {
      await opts.onDenied({ ...at, kind, reason: e.detail ?? e.message, error: e })
    } catch (err) {
      // The request is refused either way; a failed audit of the refusal must not
      // turn it into a different answer, but it must be seen.
      log.error({ requestId: at.requestId, err }, 'onDenied failed')
    }
  }

  /** Writes a result; returns the status sent. A body that cannot be serialised throws before anything is written. */
  function send(res: ServerResponse, result: RouteResult): number {
    const payload = result.raw?.body ?? (result.body === undefined || result.status === 204 ? undefined : JSON.stringify(result.body))
    if (res.headersSent || res.destroyed) return result.status
    for (const [k, v] of Object.entries(result.headers ?? {})) res.setHeader(k, v)
    if (closing) res.setHeader('connection', 'close')
    // Answers may carry wrapped keys or tokens: never cached, never sniffed.
    res.setHeader('cache-control', 'no-store')
    res.setHeader('x-content-type-options', 'nosniff')
    if (payload === undefined) {
      res.writeHead(result.status).end()
    } else {
      res.setHeader('content-type', result.raw?.contentType ?? 'application/json; charset=utf-8')
      res.setHeader('content-length', Buffer.byteLength(payload))
      res.writeHead(result.status).end(payload)
    }
    return result.status
  }

  /** Writes a streamed result (see RouteResult.stream); returns the status sent. */
  async function sendStream(res: ServerResponse, result: RouteResult, stream: AsyncIterable<string>, requestId: string): Promise<number> {
    for (const [k, v] of Object.entries(result.headers ?? {})) res.setHeader(k, v)
    if (closing) res.setHeader('connection', 'close')
    res.setHeader('cache-control', 'no-store')
    res.setHeader('x-content-type-options', 'nosniff')
    res.writeHead(result.status)
    try {
      for await (const chunk of stream) {
        // The client went away (or shutdown gave up): stop reading the source.
        if (res.destroyed) return result.status
        if (!res.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = (): void => { res.off('drain', done); res.off('close', done); resolve() }
            res.on('drain', done)
            res.on('close', done)
          })
        }
      }
      res.end()
    } catch (err) {
      log.error({ requestId, err }, 'streamed answer failed part-way; connection dropped')
      res.destroy()
    }
    return result.status
  }

  return {
    server,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          resolve(server.address() as AddressInfo)
        })
      })
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        closing = true
        const timer = setTimeout(() => {
          log.warn({ inflight: inflight.size }, 'shutdown timeout: aborting in-flight requests')
          for (const ac of inflight) ac.abort()
          for (const s of sockets.keys()) s.destroy()
        }, limits.shutdownTimeoutMs)
        timer.unref()
        onDrained = () => { clearTimeout(timer); resolve() }
        if (server.listening) server.close()
        for (const [s, n] of sockets) if (n === 0) s.destroy()
        drained()
      })
      return closed
    },
  }
}

function parseBearer(header: string | undefined): string | undefined {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '')
  return m?.[1]
}

function noQuery(query: Record<string, string>): Readonly<Record<string, never>> {
  const first = Object.keys(query)[0]
  if (first !== undefined) throw cpError('CP_ERR_UNKNOWN_FIELD', 'this endpoint takes no query parameters')
  return {}
}
