// The agent's log level on its local API, changed at run time without a restart:
//   GET /v1/log-level            → {level}
//   PUT /v1/log-level {level}    → {level, previous}
// Token-guarded like /v1/status (not an `open` route). The level lasts until the
// process restarts or SIGHUP re-reads --config's log-level (cli/commands/agent.ts).
import { LOG_LEVELS } from '../config-load.js'
import { agentError } from '../errors.js'
import type { ApiRoute } from './routes.js'

export interface LogLevelControl {
  get(): string
  set(level: string): void
}

export function logLevelRoutes(control: LogLevelControl): ApiRoute[] {
  return [
    { method: 'GET', path: '/v1/log-level', handler: async () => ({ body: { level: control.get() } }) },
    {
      method: 'PUT',
      path: '/v1/log-level',
      maxBodyBytes: 1024,
      handler: async ({ body }) => {
        const level = (body as { level?: unknown } | undefined)?.level
        if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) {
          throw agentError('AGENT_ERR_BAD_REQUEST', `send {"level": one of ${LOG_LEVELS.join(', ')}}`)
        }
        const previous = control.get()
        control.set(level)
        return { body: { level, previous } }
      },
    },
  ]
}
