// A pino logger whose lines a test can read: every line, as JSON text, pushed onto
// `logs` (a fresh array, or one the caller keeps), at debug unless told otherwise.
// Tests assert on them, and that no secret ever reached one.
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'

export function captureLogger(logs: string[] = [], level = 'debug'): { logger: Logger; logs: string[] } {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk))
      cb()
    },
  })
  return { logger: pino({ level }, sink), logs }
}
