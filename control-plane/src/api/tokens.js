import { OPERATOR_ROLES } from '../store/records.js';
import { createOperatorToken, listOperatorTokens, MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS, revokeOperatorToken } from '../services/tokens.js';
import { operatorActor, operatorRoute } from './principal.js';
export function tokensRoutes(ctx) {
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
                const created = await createOperatorToken(ctx, operatorActor(req.principal), req.body);
                return { status: 201, body: created, headers: { location: `/v1/tokens/${created.id}` } };
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
                body: await revokeOperatorToken(ctx, operatorActor(req.principal), req.params['id']),
            }),
        }),
    ];
}
//# sourceMappingURL=tokens.js.map