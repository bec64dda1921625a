// Admin API for the log level, changed at run time without a restart:
//   GET /v1/log-level            log.level   → {level}
//   PUT /v1/log-level {level}    log.level   → {level, previous}   (audited; ?dryRun=true works)
// The level applies to the control plane's logger and every logger derived from it
// that follows its changes (the HTTP layer's, http/server.ts). It lasts until the
// process restarts, when the configured level applies again.
import type { CpContext } from '../context.js'
import { dryRunScope } from '../dry-run.js'
import type { Route } from '../http/router.js'
import { perform } from '../operation.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export function loggingRoutes(ctx: CpContext): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'GET',
      path: '/v1/log-level',
      operation: 'log.level',
      auth: 'token',
      handler: async () => ({ status: 200, body: { level: ctx.logger.level } }),
    }),
    operatorRoute({
      method: 'PUT',
      path: '/v1/log-level',
      operation: 'log.level',
      auth: 'token',
      body: { fields: { level: { type: 'string', enum: LOG_LEVELS } } },
      handler: async ({ body, principal }) => {
        const previous = ctx.logger.level
        const result = await perform(ctx, {
          actor: operatorActor(principal),
          action: 'log.level',
          target: 'log-level',
          run: async () => ({ result: { level: body.level, previous }, reason: `log level ${previous} → ${body.level}`, details: { level: body.level, previous } }),
        })
        // Set after the audit entry committed, and never in a dry run (perform() rolled back).
        if (dryRunScope.getStore() === undefined) ctx.logger.level = result.level
        return { status: 200, body: result }
      },
    }),
  ]
}
