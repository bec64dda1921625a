// The one place a pino logger is made for a long-running command. Redaction
// covers the admin API's secret fields and every secret field of the control
// messages, so key material cannot reach a log line at any level.
//
// pino is loaded when the first logger is made, not when this module is: only
// `control-plane` and `agent` make one, and every other command imports this
// module through main.ts. It is CommonJS, so require() serves it.
import { createRequire } from 'node:module'
import type { Logger } from 'pino'
import type * as Pino from 'pino'

import { logRedaction } from '../platform/src/index.js'
import { SECRET_FIELD_PATHS } from '../protocol/src/index.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

const require = createRequire(import.meta.url)

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const { pino } = require('pino') as typeof Pino
  return pino(
    { level, base: { pid: process.pid }, redact: logRedaction(SECRET_FIELD_PATHS.map((p) => `msg.${p}`)) },
    destination ?? pino.destination({ dest: 1, sync: false }),
  )
}
