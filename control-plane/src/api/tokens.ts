// PLACEHOLDER: routes for this slice are being written; see app.ts for the contract.
import type { CpContext } from '../context.js'
import type { Route } from '../http/router.js'
import type { OperatorPrincipal } from './principal.js'

export function tokensRoutes(_ctx: CpContext): Route<OperatorPrincipal>[] {
  return []
}
