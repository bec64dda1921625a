// The admin API's caller: an operator token, as authenticated by app.ts.
import { routeFactory } from '../http/router.js'
import type { Actor } from '../context.js'
import type { OperatorRole } from '../store/records.js'

export interface OperatorPrincipal {
  /** The token id (`tok_…`), never the token. */
  readonly id: string
  readonly name: string
  readonly role: OperatorRole
  /** Set when the caller came with a console session cookie rather than a bearer token (ui/session.ts). */
  readonly session?: ConsoleSessionFacts
}

/** What a request learnt of its console session (ui/session.ts). */
export interface ConsoleSessionFacts {
  readonly id: string
  /** How the store finds the session: the SHA-256 of its cookie (not a credential). */
  readonly secretHash: Uint8Array
  readonly expiresAt: number
  /** The session's CSRF token, for the console to send back; never logged or audited. */
  readonly csrf: string
  /** The request carried that token and came from the console's own origin: it may change state. */
  readonly changeAllowed: boolean
}

/** `route()` for admin routes: handlers see an OperatorPrincipal. */
export const operatorRoute = routeFactory<OperatorPrincipal>()

export function operatorActor(p: OperatorPrincipal): Actor {
  return { kind: 'operator', id: p.id, name: p.name, role: p.role }
}
