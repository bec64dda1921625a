// The one place a pino logger is made for a long-running command. Redaction
// covers the admin API's secret fields and every secret field of the control
// messages, so key material cannot reach a log line at any level.
import { pino, type Logger } from 'pino'

import { logRedaction } from '../platform/src/index.js'
import { SECRET_FIELD_PATHS } from '../protocol/src/index.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { pid: process.pid }, redact: logRedaction(SECRET_FIELD_PATHS.map((p) => `msg.${p}`)) },
    destination ?? pino.destination({ dest: 1, sync: false }),
  )
}
