// Console sessions: an operator token is exchanged once, at sign-in, for a session
// cookie; the token itself never reaches the browser's storage (the sign-in form
// sends it once, the page forgets it). A one-time sign-in link (`keymesh console
// link`) does the same for the token that made it, without the token in the URL.
//
// What must hold:
//   - the cookie is HttpOnly, SameSite=Strict, Path=/, Secure (and `__Host-` named)
//     when the control plane serves TLS, and lives `ttlMs` (30 min) at most, never
//     past its token's expiry;
//   - the store keeps only the SHA-256 of the cookie's and the link's secret, so a
//     read of the database signs nobody in, and every replica of a shared store
//     agrees on every session;
//   - every request looks its session and its token up again: signing out, the
//     session's expiry, and revoking or expiring the token end it at once, on
//     every replica (CP_ERR_CONSOLE_SESSION, 401);
//   - a change (any method but GET and HEAD) made with a session must carry the
//     session's CSRF token in `x-keymesh-csrf`, and come from the same origin when
//     the browser says where it comes from (Origin, Sec-Fetch-Site); otherwise it is
//     refused with CP_ERR_CONSOLE_CSRF (403) and audited with the session's
//     operator as the actor (app.ts). The CSRF token is an HMAC of the cookie's
//     secret, so nothing more is stored;
//   - sign-in, sign-out and link creation are audited (`console.sign-in`,
//     `console.sign-out`, `console.link`) in the transaction that makes the change;
//     a refused sign-in is the HTTP layer's 401, audited like any other stranger's.
import { timingSafeEqual } from 'node:crypto'

import { newId } from '../../../protocol/src/index.js'
import { operatorActor, type OperatorPrincipal } from '../api/principal.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { CredentialRequest } from '../http/server.js'
import type { SetCookie } from '../http/router.js'
import { perform } from '../operation.js'
import { tokenStatus } from '../services/tokens.js'
import type { ConsoleSessionRecord, OperatorTokenRecord } from '../store/records.js'
import type { StoreReader, StoreTx } from '../store/store.js'
import { HOUR, MINUTE } from '../../../platform/src/index.js'

export const DEFAULT_SESSION_TTL_MS = 30 * MINUTE
export const DEFAULT_LINK_TTL_MS = 15 * MINUTE
export const MAX_LINK_TTL_MS = HOUR
export const CSRF_HEADER = 'x-keymesh-csrf'
const SESSION_ID_PREFIX = 'ses'
const LINK_ID_PREFIX = 'lnk'
const SECRET_BYTES = 32
const SECRET_FORM = /^[A-Za-z0-9_-]{43}$/
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD'])
const CSRF_LABEL = new TextEncoder().encode('keymesh console csrf v1')

export interface ConsoleSessionOptions {
  /** Serving TLS: the cookie is Secure and named `__Host-…`. */
  readonly secure: boolean
  /** Lifetime of a session (default 30 min). */
  readonly ttlMs?: number
}

/** What the console is told about its session (GET /ui/api/session). */
export interface SessionView {
  readonly tokenId: string
  readonly name: string
  readonly role: string
  /** `session` (a cookie) or `token` (a bearer token: scripts and tests). */
  readonly via: 'session' | 'token'
  readonly expiresAt: number | null
  /** The session's CSRF token; absent for a bearer token. */
  readonly csrf?: string
}

export interface SignedIn {
  readonly view: SessionView
  /** The session cookie, and its hint (ConsoleSessions.hintName). */
  readonly cookies: readonly SetCookie[]
}

export class ConsoleSessions {
  readonly #ctx: CpContext
  readonly #ttlMs: number
  readonly #secure: boolean
  /** The cookie's name: `__Host-` (Secure, Path=/, no Domain: the browser enforces it) when serving TLS. */
  readonly cookieName: string
  /**
   * A second cookie, readable by the page and holding nothing but `1`, set and cleared
   * with the session: the page asks for its session only when it may have one, so a
   * visit before signing in is not a refused request in the audit log.
   */
  readonly hintName: string

  constructor(ctx: CpContext, o: ConsoleSessionOptions) {
    this.#ctx = ctx
    this.#ttlMs = o.ttlMs ?? DEFAULT_SESSION_TTL_MS
    this.#secure = o.secure
    this.cookieName = o.secure ? '__Host-keymesh-console' : 'keymesh-console'
    this.hintName = `${this.cookieName}-hint`
  }

  /** Starts a session for an operator token already authenticated by the caller. */
  signIn(principal: OperatorPrincipal, via: 'token' | 'link', remote: string | undefined): Promise<SignedIn> {
    return this.#start(principal, via, remote, async () => {})
  }

  /**
   * Uses a one-time link: it is removed in the transaction that starts the session,
   * so two uses race for one row and one loses. Unknown, expired, used, or made by a
   * token no longer active: CP_ERR_CONSOLE_LINK (401).
   */
  async useLink(code: string, remote: string | undefined): Promise<SignedIn> {
    if (!SECRET_FORM.test(code)) throw cpError('CP_ERR_CONSOLE_LINK', 'not a sign-in link code')
    const now = this.#ctx.clock.now()
    const found = await this.#ctx.store.read(async (r) => {
      const link = await r.getConsoleSession(this.#hash(code))
      if (link === null || link.kind !== 'link' || link.expiresAt <= now) return null
      const token = await r.getOperatorToken(link.tokenId)
      return token !== null && tokenStatus(token, now) === 'active' ? { link, token } : null
    })
    if (found === null) throw cpError('CP_ERR_CONSOLE_LINK')
    const principal: OperatorPrincipal = { id: found.token.id, name: found.token.name, role: found.token.role }
    return this.#start(principal, 'link', remote, async (tx) => {
      if (!(await tx.deleteConsoleSession(found.link.id))) throw cpError('CP_ERR_CONSOLE_LINK', 'already used')
    })
  }

  /** A one-time link for the caller's own token; the code is shown once (the store keeps its hash). */
  async createLink(principal: OperatorPrincipal, ttlMs = DEFAULT_LINK_TTL_MS): Promise<{ code: string; path: string; expiresAt: number }> {
    if (principal.session !== undefined) throw cpError('CP_ERR_CONSOLE_BEARER')
    const code = this.#secret()
    const id = newId(LINK_ID_PREFIX, this.#ctx.suite.randomBytes)
    return perform(this.#ctx, {
      actor: operatorActor(principal),
      action: 'console.link',
      target: `token:${principal.id}`,
      run: async (tx) => {
        const now = this.#ctx.clock.now()
        const token = await tx.getOperatorToken(principal.id)
        const expiresAt = capAt(now + Math.min(ttlMs, MAX_LINK_TTL_MS), token)
        await tx.insertConsoleSession({ id, secretHash: this.#hash(code), kind: 'link', tokenId: principal.id, createdAt: now, expiresAt })
        return {
          result: { code, path: `/ui/#link=${code}`, expiresAt },
          reason: `one-time console sign-in link ${id} for ${principal.name}, until ${new Date(expiresAt).toISOString()}`,
          details: { linkId: id, expiresAt },
        }
      },
    })
  }

  /**
   * The principal of a request that carries a session cookie and no bearer token;
   * null without the cookie. A cookie of a session that is gone, expired, or whose
   * token is no longer active is CP_ERR_CONSOLE_SESSION (401).
   */
  async authenticate(req: CredentialRequest): Promise<OperatorPrincipal | null> {
    const secret = req.cookies[this.cookieName]
    if (secret === undefined) return null
    if (!SECRET_FORM.test(secret)) throw cpError('CP_ERR_CONSOLE_SESSION', 'the session cookie is malformed')
    const now = this.#ctx.clock.now()
    const found = await this.#ctx.store.read((r) => activeSession(r, this.#hash(secret), now))
    if (found === null) throw cpError('CP_ERR_CONSOLE_SESSION')
    const csrf = this.#csrf(secret)
    return {
      id: found.token.id,
      name: found.token.name,
      role: found.token.role,
      session: { id: found.session.id, secretHash: found.session.secretHash, expiresAt: found.session.expiresAt, csrf, changeAllowed: SAFE_METHODS.has(req.method) || sameOriginChange(req, csrf) },
    }
  }

  /** Whether the principal may still act: its session (or bearer token) is still active. For long-lived answers (the event stream). */
  async stillActive(principal: OperatorPrincipal): Promise<boolean> {
    const now = this.#ctx.clock.now()
    return this.#ctx.store.read(async (r) => {
      const token = await r.getOperatorToken(principal.id)
      if (token === null || tokenStatus(token, now) !== 'active') return false
      if (principal.session === undefined) return true
      return principal.session.expiresAt > now && (await r.getConsoleSession(principal.session.secretHash)) !== null
    })
  }

  /** Ends the caller's session (audited) and clears its cookies. */
  async signOut(principal: OperatorPrincipal): Promise<SetCookie[]> {
    const session = principal.session
    if (session !== undefined) {
      await perform(this.#ctx, {
        actor: operatorActor(principal),
        action: 'console.sign-out',
        target: `token:${principal.id}`,
        run: async (tx) => ({ result: await tx.deleteConsoleSession(session.id), reason: `console session ${session.id} ended`, details: { sessionId: session.id } }),
      })
    }
    return this.#cookies('', 0)
  }

  /** The session view of a principal (a session's, or a bearer token's). */
  view(principal: OperatorPrincipal, tokenExpiresAt: number | null = null): SessionView {
    const base = { tokenId: principal.id, name: principal.name, role: principal.role }
    return principal.session === undefined
      ? { ...base, via: 'token', expiresAt: tokenExpiresAt }
      : { ...base, via: 'session', expiresAt: principal.session.expiresAt, csrf: principal.session.csrf }
  }

  /** A refused change of a session principal (app.ts calls it before authorising any route). */
  checkChange(principal: OperatorPrincipal): void {
    if (principal.session !== undefined && !principal.session.changeAllowed) throw cpError('CP_ERR_CONSOLE_CSRF')
  }

  async #start(principal: OperatorPrincipal, via: 'token' | 'link', remote: string | undefined, consume: (tx: StoreTx) => Promise<void>): Promise<SignedIn> {
    const secret = this.#secret()
    const id = newId(SESSION_ID_PREFIX, this.#ctx.suite.randomBytes)
    const expiresAt = await perform(this.#ctx, {
      actor: operatorActor(principal),
      action: 'console.sign-in',
      target: `token:${principal.id}`,
      run: async (tx) => {
        await consume(tx)
        const now = this.#ctx.clock.now()
        const token = await tx.getOperatorToken(principal.id)
        const until = capAt(now + this.#ttlMs, token)
        // Housekeeping in passing: sessions and links past their time go.
        await tx.deleteConsoleSessionsExpiredBefore(now)
        await tx.insertConsoleSession({ id, secretHash: this.#hash(secret), kind: 'session', tokenId: principal.id, createdAt: now, expiresAt: until })
        return {
          result: until,
          reason: `console session ${id} for ${principal.name} (${principal.role}) by ${via === 'link' ? 'a one-time link' : 'its token'}, until ${new Date(until).toISOString()}`,
          details: { sessionId: id, via, expiresAt: until, ...(remote !== undefined ? { remote } : {}) },
        }
      },
    })
    const principalWithSession: OperatorPrincipal = { ...principal, session: { id, secretHash: this.#hash(secret), expiresAt, csrf: this.#csrf(secret), changeAllowed: true } }
    return { view: this.view(principalWithSession), cookies: this.#cookies(secret, Math.max(1, Math.floor((expiresAt - this.#ctx.clock.now()) / 1000))) }
  }

  #cookies(value: string, maxAge: number): SetCookie[] {
    const options = { path: '/', secure: this.#secure, sameSite: 'strict' as const, maxAge }
    return [
      { name: this.cookieName, value, options: { ...options, httpOnly: true } },
      { name: this.hintName, value: value === '' ? '' : '1', options: { ...options, httpOnly: false } },
    ]
  }

  #secret(): string {
    return Buffer.from(this.#ctx.suite.randomBytes(SECRET_BYTES)).toString('base64url')
  }

  #hash(secret: string): Uint8Array {
    return this.#ctx.suite.sha256(Buffer.from(secret, 'utf8'))
  }

  #csrf(secret: string): string {
    const mac = this.#ctx.suite.hmacSha256(Buffer.from(secret, 'utf8'), CSRF_LABEL)
    return Buffer.from(mac).toString('base64url')
  }
}

/** The session and its token when both are still good at `now`. */
async function activeSession(r: StoreReader, secretHash: Uint8Array, now: number): Promise<{ session: ConsoleSessionRecord; token: OperatorTokenRecord } | null> {
  const session = await r.getConsoleSession(secretHash)
  if (session === null || session.kind !== 'session' || session.expiresAt <= now) return null
  const token = await r.getOperatorToken(session.tokenId)
  return token !== null && tokenStatus(token, now) === 'active' ? { session, token } : null
}

/** A session or link never outlives its token. */
function capAt(until: number, token: OperatorTokenRecord | null): number {
  return token?.expiresAt !== null && token?.expiresAt !== undefined ? Math.min(until, token.expiresAt) : until
}

/**
 * A change from the console itself: the CSRF header matches, and what the browser
 * says of the request's origin (Origin, Sec-Fetch-Site), when it says it, is this host.
 */
function sameOriginChange(req: CredentialRequest, csrf: string): boolean {
  const given = req.headers[CSRF_HEADER]
  if (typeof given !== 'string' || given.length !== csrf.length || !timingSafeEqual(Buffer.from(given), Buffer.from(csrf))) return false
  const site = req.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin') return false
  const origin = req.headers.origin
  if (origin === undefined) return true
  try {
    return new URL(origin).host === req.headers.host
  } catch {
    return false
  }
}
