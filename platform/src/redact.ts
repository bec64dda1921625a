// What never reaches a log line: credentials in headers, and any field whose name
// looks like a secret. One word list feeds both pino's redact paths and the
// deep redaction of logged request bodies, so the two cannot drift apart. Shared
// by every logger keymesh makes: the control plane's HTTP layer, the agent, and
// the CLI's (which adds the secret fields of protocol messages).
const SECRET_WORDS = ['token', 'secret', 'plaintext', 'key', 'password', 'passphrase', 'share'] as const

/** What a redacted value is replaced with. */
export const REDACT_CENSOR = '[Redacted]'

/** pino redact paths: credentials in headers and secret-looking fields one level down. */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  'req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'authorization',
  ...SECRET_WORDS.flatMap((f) => [f, `*.${f}`]),
])

/** pino's `redact` option: REDACT_PATHS and `extra` (e.g. where logged messages' secret fields sit). */
export function logRedaction(extra: readonly string[] = []): { paths: string[]; censor: string } {
  return { paths: [...new Set([...REDACT_PATHS, ...extra])], censor: REDACT_CENSOR }
}

const SECRET_FIELD = new RegExp(SECRET_WORDS.join('|'), 'i')

/** Replaces, at any depth, the value of every field whose name looks like a secret. */
export function redactFields(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactFields)
  if (typeof value !== 'object' || value === null) return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_FIELD.test(k) ? REDACT_CENSOR : redactFields(v)
  return out
}
