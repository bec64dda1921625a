// Admin API for key custody (custody/keyring.ts):
//   GET  /v1/sys/seal-status           → {sealed, kind, installation, shares?, threshold?, progress?}   (no token)
//   POST /v1/sys/unseal {share}|{reset:true} → the same status                                    (no token)
//   POST /v1/sys/seal                  → the status (admin)
//   POST /v1/sys/rekey {shares, threshold} → {shares: [...], status} (admin; the only time the new shares are shown)
// Unseal takes no token: the shares are the credential. Each call spends one unit of
// its source's stranger budget (http/stranger-limits.ts) whatever it carries, so
// guessing shares costs a source as much as guessing tokens.
import type { CpContext } from '../context.js'
import type { Keyring } from '../custody/keyring.js'
import { MAX_SHARES } from '../custody/shares.js'
import { cpError } from '../errors.js'
import type { StrangerGate } from '../http/server.js'
import { route } from '../http/router.js'
import { actorName } from '../context.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'
import type { Route } from '../http/router.js'

/** Operations a sealed control plane still answers (besides probes). */
export const SEALED_OPERATIONS: ReadonlySet<string> = new Set(['custody.status', 'custody.unseal'])

export function custodyRoutes(_ctx: CpContext, keyring: Keyring, strangers: StrangerGate): Route<OperatorPrincipal>[] {
  return [
    route({
      method: 'GET',
      path: '/v1/sys/seal-status',
      operation: 'custody.status',
      auth: 'none',
      probe: true,
      handler: async () => ({ status: 200, body: keyring.status() }),
    }) as Route<OperatorPrincipal>,
    route({
      method: 'POST',
      path: '/v1/sys/unseal',
      operation: 'custody.unseal',
      auth: 'none',
      body: { fields: { share: { type: 'string', minLength: 1, maxLength: 200, optional: true }, reset: { type: 'boolean', optional: true } } },
      handler: async (req) => {
        const source = req.remoteAddress ?? 'unknown'
        if (strangers.admit(req.remoteAddress) === null) throw cpError('CP_ERR_RATE_LIMITED')
        if (req.body.reset === true) return { status: 200, body: keyring.reset() }
        if (req.body.share === undefined) throw cpError('CP_ERR_INVALID_FIELD', 'share: give a share, or reset: true')
        return { status: 200, body: await keyring.unseal(req.body.share, source) }
      },
    }) as Route<OperatorPrincipal>,
    operatorRoute({
      method: 'POST',
      path: '/v1/sys/seal',
      operation: 'custody.seal',
      auth: 'token',
      dryRun: false,
      handler: async (req) => ({ status: 200, body: await keyring.seal(actorName(operatorActor(req.principal))) }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/sys/rekey',
      operation: 'custody.rekey',
      auth: 'token',
      dryRun: false,
      body: { fields: { shares: { type: 'integer', min: 2, max: MAX_SHARES }, threshold: { type: 'integer', min: 2, max: MAX_SHARES } } },
      handler: async (req) => ({ status: 200, body: await keyring.rekey(actorName(operatorActor(req.principal)), req.body.shares, req.body.threshold) }),
    }),
  ]
}
