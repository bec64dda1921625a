// Admin API for enrolment and agents:
//   POST /v1/join-tokens {service, ttlMs?}          → 201 {id, token, service, expiresAt}
//   GET  /v1/join-tokens[?service=S]                → [{id, service, createdAt, expiresAt, usedAt, usedByAgent, revokedAt}]
//   POST /v1/join-tokens/:id/revoke                  → the same view, revoked (audited)
//   GET  /v1/agents[?service=S&includeRevoked=true] → [{id, service, staticKey, enrolledAt,
//                                                      lastSeenAt, revokedAt, endpoint, connected}]
//   POST /v1/agents/:id/revoke                       → {id, service, revokedAt, rotatedPairs}
// The create answer is the only place a join token ever leaves the control plane;
// the store keeps its hash.
import { AGENT_ID_PREFIX, TOKEN_ID_PREFIX, isId } from '../../../protocol/src/index.js'
import type { CpContext } from '../context.js'
import { cpError } from '../errors.js'
import type { Route } from '../http/router.js'
import { createJoinToken, listAgentViews, listJoinTokenViews, revokeAgent, revokeJoinToken } from '../services/enrollment.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

/** What the agents API asks the agent endpoint (its hub): whether an agent has a live session. */
export interface AgentPresence {
  isConnected(agentId: string): boolean
}

export function agentsRoutes(ctx: CpContext, presence: AgentPresence): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'POST',
      path: '/v1/join-tokens',
      operation: 'join-token.create',
      auth: 'token',
      body: {
        fields: {
          service: { type: 'string', minLength: 1, maxLength: 63 },
          ttlMs: { type: 'integer', min: 1, max: ctx.settings.joinTokenMaxTtlMs, optional: true },
        },
      },
      handler: async (req) => {
        const created = await createJoinToken(ctx, operatorActor(req.principal), req.body)
        return { status: 201, body: created }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/join-tokens',
      operation: 'join-token.list',
      auth: 'token',
      query: { service: { type: 'string', minLength: 1, maxLength: 63, optional: true } },
      handler: async (req) => ({ status: 200, body: await listJoinTokenViews(ctx, req.query) }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/join-tokens/:id/revoke',
      operation: 'join-token.revoke',
      auth: 'token',
      handler: async (req) => {
        const id = req.params['id'] as string
        if (!isId(id, TOKEN_ID_PREFIX)) throw cpError('CP_ERR_INVALID_FIELD', 'join token id must be tok_ and 26 base32 characters')
        return { status: 200, body: await revokeJoinToken(ctx, operatorActor(req.principal), id) }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/agents',
      operation: 'agents.list',
      auth: 'token',
      query: {
        service: { type: 'string', minLength: 1, maxLength: 63, optional: true },
        includeRevoked: { type: 'boolean', optional: true },
      },
      handler: async (req) => ({
        status: 200,
        body: await listAgentViews(ctx, req.query, (id) => presence.isConnected(id)),
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/agents/:id/revoke',
      operation: 'agents.revoke',
      auth: 'token',
      handler: async (req) => {
        const id = req.params['id'] as string
        if (!isId(id, AGENT_ID_PREFIX)) throw cpError('CP_ERR_INVALID_FIELD', 'agent id must be agt_ and 26 base32 characters')
        return { status: 200, body: await revokeAgent(ctx, operatorActor(req.principal), id) }
      },
    }),
  ]
}
