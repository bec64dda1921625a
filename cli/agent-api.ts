// Where the CLI finds a running agent's local API and its token, for
// `keymesh agent status` and `keymesh drop seal|open`:
//   --api HOST:PORT | unix:PATH           (env KEYMESH_API)
//   --api-token-file FILE                 (env KEYMESH_API_TOKEN_FILE), else
//   --state-dir DIR → DIR/api.token       (env KEYMESH_STATE_DIR)
// Over TCP the token is required (the agent answers 401 without it), so a TCP
// target with neither source is refused here, naming both. Over a unix socket
// the socket's mode is the boundary: the token is sent when it is found, and a
// missing DIR/api.token is not an error.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { agentError, envName, parseApiListen, type ApiListen } from '../agent/src/index.js'
import { looseSecretFile } from '../platform/src/index.js'
import type { Env } from './client.js'

export interface AgentApiArgs {
  readonly api?: string | undefined
  readonly apiTokenFile?: string | undefined
  readonly stateDir?: string | undefined
}

/** An agent API address with the token to send and where it came from (named in errors). */
export type AgentApiTarget = ApiListen & { readonly token?: string; readonly tokenSource?: string }

export const API_TOKEN_FILE_NAME = 'api.token'

/** yargs options shared by the commands that talk to an agent. */
export const AGENT_API_OPTIONS = {
  'api-token-file': { type: 'string', describe: `File holding the agent's API token, needed over TCP (env ${envName('api-token-file')}; default: STATE_DIR/${API_TOKEN_FILE_NAME} with --state-dir)` },
  'state-dir': { type: 'string', describe: `The agent's state directory, to read its API token from (env ${envName('state-dir')})` },
} as const

export function agentApiTarget(args: AgentApiArgs, env: Env, refuse: (detail: string) => Error, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): AgentApiTarget {
  const value = args.api ?? env[envName('api')]
  if (value === undefined || value === '') throw refuse(`name the agent's API with --api HOST:PORT or unix:/path (env ${envName('api')})`)
  const listen = parseApiListen(value, args.api !== undefined ? '--api' : envName('api'))
  const tcp = 'port' in listen
  const file = args.apiTokenFile ?? nonEmpty(env[envName('api-token-file')])
  const dir = args.stateDir ?? nonEmpty(env[envName('state-dir')])
  if (file !== undefined) {
    const from = args.apiTokenFile !== undefined ? '--api-token-file' : envName('api-token-file')
    return { ...listen, token: readToken(readFile, file, `${from} ${file}`, refuse, true) as string, tokenSource: `${from} ${file}` }
  }
  if (dir !== undefined) {
    const path = join(dir, API_TOKEN_FILE_NAME)
    const from = `${args.stateDir !== undefined ? '--state-dir' : envName('state-dir')} (${path})`
    const token = readToken(readFile, path, from, refuse, tcp)
    return token === undefined ? listen : { ...listen, token, tokenSource: from }
  }
  if (tcp) {
    throw refuse(`the agent API over TCP needs the agent's token: give --api-token-file FILE (env ${envName('api-token-file')}) or --state-dir DIR to read DIR/${API_TOKEN_FILE_NAME}, or use the agent's unix socket`)
  }
  return listen
}

/** The token in `path`; undefined when it is absent and not `required`. */
function readToken(readFile: (path: string) => string, path: string, from: string, refuse: (detail: string) => Error, required: boolean): string | undefined {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (!required && code === 'ENOENT') return undefined
    throw refuse(`cannot read the agent's API token from ${from}${typeof code === 'string' ? ` (${code})` : ''}; it is readable only by the agent's user`)
  }
  const loose = looseSecretFile(path)
  if (loose !== undefined) throw agentError('AGENT_ERR_TOKEN_FILE_MODE', loose)
  // The file is written by the agent: one line. A file of another kind is not quoted back.
  const token = text.trim()
  if (!/^[A-Za-z0-9_-]{16,256}$/.test(token)) throw refuse(`${from} does not hold an agent API token`)
  return token
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v)
