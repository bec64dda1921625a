// What the control plane's admin API and the agent's local API both ask of fastify
// beyond its defaults: one JSON body parser with their stricter rules, and the
// methods a path answers to, for a 405 with an Allow header (fastify answers 404
// to a known path under another method). Errors are the caller's typed errors:
// each package has its own table.
import type { FastifyInstance, FastifyRequest } from 'fastify'

export interface JsonBodyErrors {
  /** A non-empty body not declared `application/json` (charset utf-8 if any). */
  readonly mediaType: () => Error
  /** Bytes that are not UTF-8. */
  readonly notUtf8: () => Error
  /** Text that is not JSON. The parser's message is never passed on: it quotes the input. */
  readonly badJson: () => Error
}

/**
 * Replaces fastify's body parsers with one for every content type: an empty body
 * is `undefined` whatever its type; any other must be JSON in UTF-8, declared so
 * (which also makes a browser preflight a cross-origin POST). fastify reads the
 * body within the route's `bodyLimit` (refusing an announced Content-Length over
 * it before reading a byte) and closes the connection after a refusal.
 */
export function useJsonBodies(app: FastifyInstance, errors: JsonBodyErrors, options: JsonBodyOptions = {}): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req: FastifyRequest, body: Buffer | string, done: (err: Error | null, body?: unknown) => void) => {
    try {
      const raw = body as Buffer
      if (raw.length > 0 && options.octetStream?.(req) === true && isOctetStream(req.headers['content-type'])) return done(null, raw)
      done(null, parseJsonBody(req.headers['content-type'], raw, errors))
    } catch (err) {
      done(err as Error)
    }
  })
}

export interface JsonBodyOptions {
  /**
   * Requests whose route also takes `application/octet-stream` bodies: those reach
   * the handler as the Buffer itself (JSON never parses to one, so handlers tell
   * them apart). Like JSON, the type is not one a browser may send cross-origin
   * without a preflight.
   */
  readonly octetStream?: (req: FastifyRequest) => boolean
}

/** `application/octet-stream`, with no parameters. */
export function isOctetStream(contentType: string | undefined): boolean {
  return (contentType ?? '').trim().toLowerCase() === 'application/octet-stream'
}

/** The parser's rules on their own (tested directly): see useJsonBodies. */
export function parseJsonBody(contentType: string | undefined, raw: Buffer, errors: JsonBodyErrors): unknown {
  if (raw.length === 0) return undefined
  const [type = '', ...params] = (contentType ?? '').split(';').map((s) => s.trim().toLowerCase())
  const charset = params.find((p) => p.startsWith('charset='))?.slice(8).replace(/"/g, '')
  if (type !== 'application/json' || (charset !== undefined && charset !== 'utf-8')) throw errors.mediaType()
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw)
  } catch {
    throw errors.notUtf8()
  }
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw errors.badJson()
  }
}

/**
 * The methods routes declare for a concrete path, in declaration order; empty when
 * no route's pattern (`/v1/keys/:name`) matches it. Called only after fastify
 * found no route for the request's method, so any method listed is another one.
 */
export function allowedMethods(routes: ReadonlyArray<{ readonly method: string; readonly path: string }>): (path: string) => string[] {
  const compiled = routes.map((r) => ({
    method: r.method,
    re: new RegExp(`^${r.path.split('/').map((s) => (s.startsWith(':') ? '[^/]+' : escapeRe(s))).join('/')}$`),
  }))
  return (path) => {
    const out: string[] = []
    for (const c of compiled) if (c.re.test(path) && !out.includes(c.method)) out.push(c.method)
    return out
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
