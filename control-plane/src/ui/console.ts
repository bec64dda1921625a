// The operator console, served by every control-plane replica at /ui/:
//   GET    /ui/, /ui/assets/:file                the page and its files (no token; no secrets in them)
//   POST   /ui/api/session {token}|{linkToken}   sign in: a session cookie (ui/session.ts)
//   GET    /ui/api/session                       who is signed in, the CSRF token, the operations the role allows
//   DELETE /ui/api/session                       sign out
//   POST   /ui/api/links {ttlMs?}                a one-time sign-in link for the caller's token (bearer only)
//   GET    /ui/api/overview | graph | agents | keys | audit   the pages' data (ui/views.ts)
//   GET    /ui/api/events                        live: new audit entries as server-sent events (ui/events.ts)
// Everything a page changes goes through the admin API's own routes (/v1/…), which
// take the session cookie as they take a bearer token (app.ts: authenticate), with
// the same policy, dry runs and audit; a change made with a session must carry its
// CSRF token (ui/session.ts).
import type { OperatorPrincipal } from '../api/principal.js'
import { operatorRoute } from '../api/principal.js'
import { parseAuditTime } from '../api/audit.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import { route, type Route } from '../http/router.js'
import type { CredentialRequest, StrangerGate } from '../http/server.js'
import { authorizeOperator, OPERATIONS } from '../policy.js'
import { AUDIT_OUTCOMES, KEY_TYPES } from '../store/records.js'
import { PAGE_HEADERS, ConsoleAssets } from './assets.js'
import { EventStreams } from './events.js'
import { ConsoleFeed, type FeedOptions } from './feed.js'
import { ReplicaBoard, type ReplicaSelf } from './replicas.js'
import { ConsoleSessions, MAX_LINK_TTL_MS } from './session.js'
import { agentsPage, auditPage, graph, keysPage, MAX_PAGE, overview, type Connected } from './views.js'

export interface ConsoleOptions {
  /** Session lifetime (default 30 min). */
  readonly sessionTtlMs?: number
  readonly feed?: FeedOptions
  /** How often a replica on a shared store rewrites its row (default 5 s). */
  readonly replicaBeatMs?: number
  /** Where the compiled front end is (tests); dist/control-plane/web by default. */
  readonly assets?: ConsoleAssets
}

export interface ConsoleDeps {
  readonly ctx: CpContext
  /** Serving TLS: the session cookie is Secure. */
  readonly tls: boolean
  readonly self: ReplicaSelf
  /** The admin API's budget for callers without a principal: a failed sign-in spends it. */
  readonly strangers: StrangerGate
  /** The admin API's bearer-token check (app.ts). */
  authenticateToken(token: string): Promise<OperatorPrincipal | null>
  /** Custody state for the overview (custody/keyring.ts status()). */
  custody(): Record<string, unknown>
  /**
   * The scheduled audit verification's last reading on this replica (health/audit-watch.ts
   * report(): pending, ok with verifiedSeq and verifiedAt, or broken); none without a watch.
   */
  auditChain?(): Record<string, unknown>
}

export interface OperatorConsole {
  readonly routes: Route<OperatorPrincipal>[]
  /** A session cookie's principal (no bearer token was sent), or null without one. */
  authenticate(req: CredentialRequest): Promise<OperatorPrincipal | null>
  /** Refuses a session's change without its CSRF token (CP_ERR_CONSOLE_CSRF). */
  checkChange(principal: OperatorPrincipal): void
  /** Something may have changed: the live pages look now. */
  nudge(): void
  /** Starts what runs in the background (this replica's row on a shared store). */
  start(): void
  /** Ends the event streams and background work (before the HTTP server closes: it waits for open answers). */
  close(): void
}

const PAGE_QUERY = {
  offset: { type: 'integer', min: 0, max: 1_000_000, optional: true },
  limit: { type: 'integer', min: 1, max: MAX_PAGE, optional: true },
  q: { type: 'string', minLength: 1, maxLength: 100, optional: true },
} as const
const TEXT = { type: 'string', minLength: 1, maxLength: 200, optional: true } as const

export function createConsole(deps: ConsoleDeps, o: ConsoleOptions = {}): OperatorConsole {
  const { ctx } = deps
  const assets = o.assets ?? new ConsoleAssets()
  const sessions = new ConsoleSessions(ctx, { secure: deps.tls, ...(o.sessionTtlMs !== undefined ? { ttlMs: o.sessionTtlMs } : {}) })
  const feed = new ConsoleFeed(ctx, o.feed)
  const board = new ReplicaBoard(ctx, deps.self, o.replicaBeatMs)
  const streams = new EventStreams({ ctx, feed, stillActive: (p) => sessions.stillActive(p) })
  const replicas = async () => board.list(await ctx.store.read((r) => r.listConsoleReplicas()))
  const connected = async (): Promise<Connected> => (await replicas()).connected
  const file = (asset: { contentType: string; body: string }) => ({ status: 200, headers: PAGE_HEADERS, raw: asset })

  const routes: Route<OperatorPrincipal>[] = [
    route({ method: 'GET', path: '/ui', operation: 'console.page', auth: 'none', probe: true, handler: async () => ({ status: 308, headers: { location: '/ui/' } }) }) as Route<OperatorPrincipal>,
    route({ method: 'GET', path: '/ui/', operation: 'console.page', auth: 'none', probe: true, handler: async () => file(assets.page) }) as Route<OperatorPrincipal>,
    route({
      method: 'GET', path: '/ui/assets/:file', operation: 'console.page', auth: 'none', probe: true,
      handler: async (req) => file(assets.get(req.params['file'] ?? '')),
    }) as Route<OperatorPrincipal>,
    route({
      method: 'POST', path: '/ui/api/session', operation: 'console.sign-in', auth: 'none',
      body: { fields: { token: { type: 'string', minLength: 1, maxLength: 200, optional: true }, linkToken: { type: 'string', minLength: 1, maxLength: 100, optional: true } } },
      handler: async (req) => {
        // `linkToken`, not `link`: a field named for a token is redacted wherever a body is logged.
        const { token, linkToken } = req.body
        if ((token === undefined) === (linkToken === undefined)) throw cpError('CP_ERR_INVALID_FIELD', 'give token or linkToken')
        // A guess costs a source what a guessed bearer token does (http/stranger-limits.ts).
        const ticket = deps.strangers.admit(req.remoteAddress)
        if (ticket === null) throw cpError('CP_ERR_RATE_LIMITED')
        let signedIn
        if (token !== undefined) {
          const principal = await deps.authenticateToken(token)
          if (principal === null) throw cpError('CP_ERR_UNAUTHENTICATED', 'operator token not recognised')
          signedIn = await sessions.signIn(principal, 'token', req.remoteAddress)
        } else {
          signedIn = await sessions.useLink(linkToken as string, req.remoteAddress)
        }
        ticket.refund()
        return { status: 201, body: { ...signedIn.view, allowed: allowedFor(signedIn.view.role) }, cookies: signedIn.cookies }
      },
    }) as Route<OperatorPrincipal>,
    operatorRoute({
      method: 'GET', path: '/ui/api/session', operation: 'console.session', auth: 'token',
      handler: async (req) => {
        const token = await ctx.store.read((r) => r.getOperatorToken(req.principal.id))
        const view = sessions.view(req.principal, token?.expiresAt ?? null)
        return { status: 200, body: { ...view, allowed: allowedFor(view.role) } }
      },
    }),
    operatorRoute({
      method: 'DELETE', path: '/ui/api/session', operation: 'console.session', auth: 'token', dryRun: false,
      handler: async (req) => ({ status: 200, body: { signedOut: req.principal.session !== undefined }, cookies: await sessions.signOut(req.principal) }),
    }),
    operatorRoute({
      method: 'POST', path: '/ui/api/links', operation: 'console.link', auth: 'token', dryRun: false,
      body: { fields: { ttlMs: { type: 'integer', min: 60_000, max: MAX_LINK_TTL_MS, optional: true } } },
      handler: async (req) => ({ status: 201, body: await sessions.createLink(req.principal, req.body.ttlMs) }),
    }),
    operatorRoute({
      method: 'GET', path: '/ui/api/overview', operation: 'console.read', auth: 'token',
      handler: async () => {
        const { replicas: list, connected: live } = await replicas()
        return { status: 200, body: { now: ctx.clock.now(), store: ctx.store.backend, custody: deps.custody(), auditChain: deps.auditChain?.() ?? null, replicas: list, ...(await overview(ctx, live)) } }
      },
    }),
    operatorRoute({
      method: 'GET', path: '/ui/api/graph', operation: 'console.read', auth: 'token',
      handler: async () => ({ status: 200, body: await graph(ctx, await connected()) }),
    }),
    operatorRoute({
      method: 'GET', path: '/ui/api/agents', operation: 'console.read', auth: 'token',
      query: { ...PAGE_QUERY, service: { type: 'string', minLength: 1, maxLength: 63, optional: true }, includeRevoked: { type: 'boolean', optional: true } },
      handler: async (req) => ({ status: 200, body: await agentsPage(ctx, await connected(), req.query) }),
    }),
    operatorRoute({
      method: 'GET', path: '/ui/api/keys', operation: 'console.read', auth: 'token',
      query: { ...PAGE_QUERY, type: { type: 'string', enum: KEY_TYPES, optional: true } },
      handler: async (req) => ({ status: 200, body: await keysPage(ctx, req.query) }),
    }),
    operatorRoute({
      method: 'GET', path: '/ui/api/audit', operation: 'audit.read', auth: 'token',
      query: {
        beforeSeq: { type: 'integer', min: 1, max: Number.MAX_SAFE_INTEGER, optional: true },
        limit: { type: 'integer', min: 1, max: MAX_PAGE, optional: true },
        from: { type: 'string', maxLength: 40, optional: true },
        to: { type: 'string', maxLength: 40, optional: true },
        actor: TEXT, action: TEXT, target: TEXT,
        outcome: { type: 'string', enum: AUDIT_OUTCOMES, optional: true },
      },
      handler: async (req) => {
        const { from, to, ...rest } = req.query
        return {
          status: 200,
          body: await auditPage(ctx, {
            ...rest,
            ...(from !== undefined ? { from: parseAuditTime(from, 'from') } : {}),
            ...(to !== undefined ? { to: parseAuditTime(to, 'to') } : {}),
          }),
        }
      },
    }),
    operatorRoute({
      method: 'GET', path: '/ui/api/events', operation: 'console.read', auth: 'token',
      handler: async (req) => streams.open(req.principal, req.signal),
    }),
  ]

  return {
    routes,
    authenticate: (req) => sessions.authenticate(req),
    checkChange: (principal) => sessions.checkChange(principal),
    nudge: () => feed.nudge(),
    start: () => board.start(),
    close: () => {
      streams.close()
      feed.close()
      board.close()
    },
  }
}

/** The operations a role may perform: the console greys out the controls of the others. */
function allowedFor(role: string): string[] {
  return OPERATIONS.filter((op) => authorizeOperator(role as never, op).allow)
}
