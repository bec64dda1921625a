// Admin API for operator tokens (admin role only; policy.ts decides):
//   POST /v1/tokens {name, role, ttlMs?}   → 201 {id, name, role, token, expiresAt}
//   GET  /v1/tokens[?includeRevoked=true]  → {tokens: [...]}   (never a token or hash)
//   POST /v1/tokens/:id/revoke             → the revoked token's view
// The create answer is the only place a bearer token ever leaves the control plane.
import type { CpContext } from '../context.js'
import type { Route } from '../http/router.js'
import { OPERATOR_ROLES } from '../store/records.js'
import { createOperatorToken, listOperatorTokens, MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS, revokeOperatorToken } from '../services/tokens.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

export function tokensRoutes(ctx: CpContext): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'POST',
      path: '/v1/tokens',
      operation: 'token.create',
      auth: 'token',
      body: {
        fields: {
          name: { type: 'string', minLength: 1, maxLength: 64 },
          role: { type: 'string', enum: OPERATOR_ROLES },
          ttlMs: { type: 'integer', min: MIN_TOKEN_TTL_MS, max: MAX_TOKEN_TTL_MS, optional: true },
        },
      },
      handler: async (req) => {
        const created = await createOperatorToken(ctx, operatorActor(req.principal), req.body)
        return { status: 201, body: created, headers: { location: `/v1/tokens/${created.id}` } }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/tokens',
      operation: 'token.list',
      auth: 'token',
      query: { includeRevoked: { type: 'boolean', optional: true } },
      handler: async (req) => ({
        status: 200,
        body: { tokens: await listOperatorTokens(ctx, { includeRevoked: req.query.includeRevoked === true }) },
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/tokens/:id/revoke',
      operation: 'token.revoke',
      auth: 'token',
      handler: async (req) => ({
        status: 200,
        body: await revokeOperatorToken(ctx, operatorActor(req.principal), req.params['id'] as string),
      }),
    }),
  ]
}
