// Reading a JSON request body within a limit.
//
// Contract: a body past the limit is refused with AGENT_ERR_BODY_TOO_LARGE and
// nothing past the limit is buffered (an announced Content-Length over it is
// refused before reading a byte); a non-empty body must be declared
// application/json (which also makes a browser preflight any cross-origin POST,
// so a web page cannot drive the API); bad JSON is AGENT_ERR_BAD_REQUEST without
// the parser's message, which would quote the input.
import type { IncomingMessage } from 'node:http'

import { agentError } from '../errors.js'
import { readBodyLimited, type BodyErrors } from '../../../platform/src/index.js'

export const DEFAULT_BODY_LIMIT = 1024 * 1024

export async function readJsonBody(req: IncomingMessage, limit: number = DEFAULT_BODY_LIMIT): Promise<unknown> {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > limit) throw agentError('AGENT_ERR_BODY_TOO_LARGE', `limit is ${limit} bytes`)
  const raw = await readLimited(req, limit)
  if (raw.length === 0) return undefined
  const [type = '', ...params] = (req.headers['content-type'] ?? '').split(';').map((s) => s.trim().toLowerCase())
  const charset = params.find((p) => p.startsWith('charset='))?.slice(8).replace(/"/g, '')
  if (type !== 'application/json' || (charset !== undefined && charset !== 'utf-8')) {
    throw agentError('AGENT_ERR_BAD_REQUEST', 'a request body must be sent as application/json (UTF-8)')
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw)
  } catch {
    throw agentError('AGENT_ERR_BAD_REQUEST', 'body is not UTF-8')
  }
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw agentError('AGENT_ERR_BAD_REQUEST', 'body is not valid JSON')
  }
}

const BODY_ERRORS: BodyErrors = {
  tooLarge: (limit) => agentError('AGENT_ERR_BODY_TOO_LARGE', `limit is ${limit} bytes`),
  cutOff: (cause) => agentError('AGENT_ERR_BAD_REQUEST', 'request body was cut off', { cause }),
}

const readLimited = (req: IncomingMessage, limit: number): Promise<Buffer> => readBodyLimited(req, limit, BODY_ERRORS)
