// The admin API's caller: an operator token, as authenticated by app.ts.
import { routeFactory } from '../http/router.js'
import type { Actor } from '../context.js'
import type { OperatorRole } from '../store/records.js'

export interface OperatorPrincipal {
  /** The token id (`tok_…`), never the token. */
  readonly id: string
  readonly name: string
  readonly role: OperatorRole
}

/** `route()` for admin routes: handlers see an OperatorPrincipal. */
export const operatorRoute = routeFactory<OperatorPrincipal>()

export function operatorActor(p: OperatorPrincipal): Actor {
  return { kind: 'operator', id: p.id, name: p.name, role: p.role }
}
