// A client for the agent's local API, over TCP or a unix socket (what
// `keymesh agent status`, and later `keymesh drop …`, talk to).
//
// Contract: resolves with the parsed JSON of a 2xx answer; every failure is a
// KeymeshError with a one-line message: the agent's own code and message when it
// answered with one, AGENT_ERR_API_UNREACHABLE when nothing answered in time or
// what answered is not a keymesh agent.
import { request } from 'node:http'

import { KeymeshError } from '../../../protocol/src/index.js'
import { formatHostPort, type ApiListen } from '../config.js'
import { AGENT_ERRORS, agentError } from '../errors.js'

export interface ApiClientOptions {
  /** Time allowed without progress on the connection (default 10 s). */
  readonly timeoutMs?: number
  /** Largest answer read (default 16 MiB). */
  readonly maxResponseBytes?: number
  /** The agent's API token (STATE_DIR/api.token), sent as `Authorization: Bearer`; needed over TCP. */
  readonly token?: string
  /** Where the token was looked for, named when the agent refuses it (e.g. `--api-token-file /x`). */
  readonly tokenSource?: string
}

/** How an ApiListen is written in messages and the `url` of the server: `http://h:p` or `unix:/path`. */
export function apiTargetText(target: ApiListen): string {
  return 'socketPath' in target ? `unix:${target.socketPath}` : `http://${formatHostPort(target)}`
}

export function requestAgentApi<T>(target: ApiListen, method: string, path: string, body?: unknown, options: ApiClientOptions = {}): Promise<T> {
  const where = apiTargetText(target)
  const limit = options.maxResponseBytes ?? 16 * 1024 * 1024
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return new Promise<T>((resolve, reject) => {
    const req = request({
      ...('socketPath' in target ? { socketPath: target.socketPath } : { host: target.host, port: target.port }),
      method,
      path,
      headers: {
        accept: 'application/json',
        ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
        ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
      },
    })
    req.setTimeout(options.timeoutMs ?? 10_000, () => {
      req.destroy(agentError('AGENT_ERR_API_UNREACHABLE', `${where} did not answer in time`))
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof KeymeshError) return reject(err)
      reject(agentError('AGENT_ERR_API_UNREACHABLE', `${where}: ${typeof err.code === 'string' ? err.code : 'connection failed'}; is the agent running with --api ${where.replace(/^http:\/\//, '')}?`, { cause: err }))
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > limit) {
          reject(agentError('AGENT_ERR_API_UNREACHABLE', `${where}: the answer is larger than ${limit} bytes`))
          res.destroy()
        } else {
          chunks.push(chunk)
        }
      })
      res.on('end', () => {
        if (size > limit) return
        let parsed: unknown
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'))
        } catch {
          return reject(agentError('AGENT_ERR_API_UNREACHABLE', `${where} answered HTTP ${res.statusCode ?? '?'} without JSON; is that a keymesh agent API?`))
        }
        const status = res.statusCode ?? 0
        if (status >= 200 && status < 300) return resolve(parsed as T)
        const err = answeredError(parsed, status, where)
        if (err.code !== 'AGENT_ERR_API_TOKEN') return reject(err)
        const hint = options.token === undefined
          ? `no token was sent${options.tokenSource !== undefined ? ` (${options.tokenSource})` : ''}; give --api-token-file FILE or --state-dir DIR (reads DIR/api.token)`
          : `the token from ${options.tokenSource ?? 'the caller'} was refused`
        reject(new KeymeshError(err.code, { message: `${err.message}; ${hint}`, status: err.status, closeCode: err.closeCode }))
      })
      res.on('error', (err) => reject(agentError('AGENT_ERR_API_UNREACHABLE', `${where}: the answer was cut off`, { cause: err })))
    })
    req.end(payload)
  })
}

/** The agent's `{ error: { code, message } }` as a KeymeshError carrying that code and message. */
function answeredError(parsed: unknown, status: number, where: string): KeymeshError {
  const error = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error
  const code = error?.code
  const message = error?.message
  if (typeof code !== 'string' || typeof message !== 'string' || !/^[A-Z][A-Z0-9_]{0,63}$/.test(code)) {
    return agentError('AGENT_ERR_API_UNREACHABLE', `${where} answered HTTP ${status} without a keymesh error; is that a keymesh agent API?`)
  }
  const known = (AGENT_ERRORS as Record<string, { closeCode: number } | undefined>)[code]
  // Shown to the user as is: one line, bounded, no control characters.
  const text = message.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 500)
  return new KeymeshError(code, { message: text, status, closeCode: known?.closeCode ?? 0 })
}
