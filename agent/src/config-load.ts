// Builds the agent's AgentConfig from flags, KEYMESH_* environment variables and
// a JSON config file, in that order of precedence, then defaults.
//
// Contract:
//   - The result is validated once and deep-frozen (every object and array; the
//     cpKey bytes are a private copy, as typed arrays cannot be frozen).
//   - Nothing is read from process.*: the caller passes argv-derived args and the
//     environment as records, and file reads go through `readFile`.
//   - Every problem is AGENT_ERR_CONFIG naming where the value came from (the flag,
//     the variable or the config file key) and what is expected. Values are never
//     repeated: a join token or key pasted into the wrong field must not reach a log.
//   - A setting with two forms (--cp-key / --cp-key-file, --join-token /
//     --join-token-file) is taken from the first source that gives either form;
//     one source giving both is refused as ambiguous.
import { readFileSync } from 'node:fs'

import { looseSecretFile } from '../../platform/src/index.js'
import { isEndpointUrl, parsePublicKey, validateServiceName } from '../../protocol/src/index.js'
import { normalizeFingerprint } from '../../platform/src/index.js'
import {
  formatHostPort, isLoopbackHost, isWildcardHost, parseHostPort,
  type AgentConfig, type ApiListen, type ConnectTarget, type HostPort,
} from './config.js'
import { loadLimits } from './config-limits.js'
import { configSources, envName, readSmallFile, type LoadAgentConfigInput, type Picked, type Raw } from './config-sources.js'
import { agentError } from './errors.js'

export const DEFAULT_TUNNEL_LISTEN = '127.0.0.1:7401'
export const DEFAULT_LOG_LEVEL = 'info'
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export { AGENT_OPTIONS, envName, type AgentOption, type LoadAgentConfigInput } from './config-sources.js'

// Bounds on what is read: a config file, a key file and a token file are all small;
// a path given by mistake (a log, a disk image) must not be read whole.
const MAX_CONFIG_FILE = 1024 * 1024
const MAX_SECRET_FILE = 4096
const MAX_CP_URLS = 16
// Linux sun_path holds 107 bytes; the API server first binds the socket in a temporary
// directory beside the path (api/listen.ts), a name up to 10 bytes longer.
export const MAX_SOCKET_PATH = 96
// The control plane's join token rule (protocol/src/messages/enrollment.ts).
const JOIN_TOKEN_RE = /^[A-Za-z0-9._~-]{16,256}$/

const bad = (detail: string) => agentError('AGENT_ERR_CONFIG', detail)

export function loadAgentConfig(input: LoadAgentConfigInput): AgentConfig {
  const readFile = input.readFile ?? ((path: string) => readFileSync(path, 'utf8'))
  const { file, pick, pickOneOf } = configSources(input, readFile, MAX_CONFIG_FILE)

  const service = parseService(pick('service'))
  const cpUrls = parseCpUrls(pick('cp'))
  const cpKey = parseCpKey(pickOneOf('cp-key', 'cp-key-file'), readFile)
  const cpTrust = parseCpTrust(pick('cp-fingerprint'), pick('ca-file'), cpUrls, readFile)
  const joinToken = parseJoinToken(pickOneOf('join-token', 'join-token-file'), readFile)
  const stateDir = parseStateDir(pick('state-dir'))
  const tunnelListenRaw = pick('tunnel-listen')
  const tunnelListen = tunnelListenRaw === undefined ? (parseHostPort(DEFAULT_TUNNEL_LISTEN) as HostPort) : hostPortOf(tunnelListenRaw, true)
  const advertise = parseAdvertise(pick('advertise'), tunnelListen, tunnelListenRaw?.from ?? '--tunnel-listen')
  const exposeRaw = pick('expose')
  const expose = exposeRaw === undefined ? undefined : hostPortOf(exposeRaw, false)
  const connect = parseConnect(pick('connect'), service)
  const api = parseApi(pick('api'), pick('api-allow-remote'))
  const logLevel = parseLogLevel(pick('log-level'))
  const limits = loadLimits(file === undefined ? [] : [{ value: file.limits, from: `"limits" in ${file.path}` }])
  checkDistinctListeners(tunnelListen, connect, api?.listen)

  const config: AgentConfig = {
    cpUrls,
    cpKey,
    ...(cpTrust !== undefined ? { cpTrust } : {}),
    service,
    ...(joinToken !== undefined ? { joinToken } : {}),
    stateDir,
    tunnelListen,
    ...(advertise !== undefined ? { advertise } : {}),
    ...(expose !== undefined ? { expose } : {}),
    connect,
    ...(api !== undefined ? { api: api.listen } : {}),
    ...(api?.allowRemote === true ? { apiAllowRemote: true } : {}),
    logLevel,
    limits,
  }
  return deepFreeze(config)
}

// ---- fields ---------------------------------------------------------------

function str(raw: Raw, what: string): string {
  if (typeof raw.value !== 'string' || raw.value.trim() === '') throw bad(`${raw.from} must be ${what}`)
  return raw.value.trim()
}

/** A string, comma list, or array of either, flattened (repeated flags arrive as arrays). */
function list(raw: Raw, what: string): string[] {
  const items = Array.isArray(raw.value) ? raw.value : [raw.value]
  return items.flatMap((item) => {
    if (typeof item !== 'string') throw bad(`${raw.from} must be ${what}`)
    return item.split(',').map((s) => s.trim()).filter((s) => s !== '')
  })
}

function parseService(raw: Raw | undefined): string {
  if (raw === undefined) throw bad(`name this agent's service with --service NAME (env ${envName('service')})`)
  try {
    return validateServiceName(raw.value)
  } catch {
    throw bad(`${raw.from} must be a service name: 1-63 of a-z, 0-9 and "-", not starting or ending with "-"`)
  }
}

function parseCpUrls(raw: Raw | undefined): string[] {
  if (raw === undefined) throw bad(`name the control plane with --cp URL (several: repeat it or give a comma list; env ${envName('cp')})`)
  const urls = list(raw, 'one or more control-plane URLs')
  if (urls.length === 0) throw bad(`${raw.from} names no control-plane URL`)
  if (urls.length > MAX_CP_URLS) throw bad(`${raw.from} names more than ${MAX_CP_URLS} control-plane URLs`)
  const out: string[] = []
  urls.forEach((text, i) => {
    const which = urls.length > 1 ? `${raw.from} (URL ${i + 1})` : raw.from
    let url: URL
    try {
      url = new URL(text)
    } catch {
      throw bad(`${which} is not a URL; expected http://, https://, ws:// or wss:// with a host`)
    }
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol) || url.hostname === '') {
      throw bad(`${which} must be an http://, https://, ws:// or wss:// URL with a host`)
    }
    // Credentials would be logged with the URL; the agent authenticates with its static key.
    if (url.username !== '' || url.password !== '') throw bad(`${which} must not carry credentials`)
    if (url.search !== '' || url.hash !== '') throw bad(`${which} must not have a query or fragment`)
    const normal = url.href.replace(/\/+$/, '')
    if (out.includes(normal)) throw bad(`${which} repeats an earlier control-plane URL`)
    out.push(normal)
  })
  return out
}

function parseCpKey(picked: Picked | undefined, readFile: (path: string) => string): Uint8Array {
  if (picked === undefined) {
    throw bad(`pin the control plane's public key with --cp-key-file FILE (its identity.pub) or --cp-key TEXT (env ${envName('cp-key-file')} or ${envName('cp-key')})`)
  }
  const { option, raw } = picked
  const text = option === 'cp-key-file'
    ? readSmallFile(readFile, str(raw, 'a file name'), MAX_SECRET_FILE, raw.from).trim()
    : typeof raw.value === 'string' ? raw.value.trim() : ''
  try {
    // A copy: parsePublicKey may return a view into Node's shared buffer pool.
    return new Uint8Array(parsePublicKey(text))
  } catch {
    const where = option === 'cp-key-file' ? `${raw.from}: the file` : raw.from
    throw bad(`${where} must hold the control plane's public key as "x25519:" and 43 base64url characters (the control plane writes it to DATA_DIR/identity.pub)`)
  }
}

/**
 * How a TLS control plane is verified: a pinned fingerprint (the CA is not consulted
 * then), else a CA file, else the default trust store (undefined). Either is refused
 * when no URL uses TLS: it would protect nothing while seeming to.
 */
function parseCpTrust(pin: Raw | undefined, caFile: Raw | undefined, cpUrls: readonly string[], readFile: (path: string) => string): AgentConfig['cpTrust'] {
  const given = pin ?? caFile
  if (given === undefined) return undefined
  if (!cpUrls.some((u) => /^(https|wss):/.test(u))) throw bad(`${given.from} verifies TLS, but no control-plane URL is https:// or wss://`)
  if (pin !== undefined) {
    const fingerprint = typeof pin.value === 'string' ? normalizeFingerprint(pin.value) : undefined
    if (fingerprint === undefined) throw bad(`${pin.from} must be sha256: and 64 hex digits, as the control plane prints it at start`)
    return { fingerprint }
  }
  const path = str(caFile as Raw, 'a file name')
  const ca = readSmallFile(readFile, path, MAX_CONFIG_FILE, (caFile as Raw).from)
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw bad(`${(caFile as Raw).from}: ${path} does not hold a PEM certificate`)
  return { ca }
}

function parseJoinToken(picked: Picked | undefined, readFile: (path: string) => string): string | undefined {
  if (picked === undefined) return undefined
  const { option, raw } = picked
  const text = option === 'join-token-file'
    ? readSmallFile(readFile, str(raw, 'a file name'), MAX_SECRET_FILE, raw.from).trim()
    : typeof raw.value === 'string' ? raw.value.trim() : ''
  const loose = option === 'join-token-file' ? looseSecretFile(str(raw, 'a file name')) : undefined
  if (loose !== undefined) throw agentError('AGENT_ERR_TOKEN_FILE_MODE', `${raw.from}: ${loose}`)
  if (!JOIN_TOKEN_RE.test(text)) {
    const where = option === 'join-token-file' ? `${raw.from}: the file` : raw.from
    throw bad(`${where} must hold a join token: 16-256 of A-Z, a-z, 0-9 and ._~- (as \`keymesh join-token create\` prints it)`)
  }
  return text
}

function parseStateDir(raw: Raw | undefined): string {
  if (raw === undefined) throw bad(`give a state directory with --state-dir DIR (env ${envName('state-dir')}); it holds the agent's identity and caches`)
  return str(raw, 'a directory name')
}

function hostPortOf(raw: Raw, allowPortZero: boolean): HostPort {
  const parsed = typeof raw.value === 'string' ? parseHostPort(raw.value.trim()) : undefined
  const example = raw.from.includes('expose') ? '127.0.0.1:8080' : DEFAULT_TUNNEL_LISTEN
  if (parsed === undefined) throw bad(`${raw.from} must be HOST:PORT (e.g. ${example}; IPv6 as [::1]:PORT)`)
  if (parsed.port === 0 && !allowPortZero) throw bad(`${raw.from} must name a port from 1 to 65535`)
  return parsed
}

function parseAdvertise(raw: Raw | undefined, tunnelListen: HostPort, listenFrom: string): string | undefined {
  if (raw === undefined) {
    if (isWildcardHost(tunnelListen.host)) {
      throw bad(`${listenFrom} binds every interface, so peers need --advertise URL: the ws:// or wss:// URL they should dial (env ${envName('advertise')})`)
    }
    return undefined
  }
  const text = typeof raw.value === 'string' ? raw.value.trim() : undefined
  if (!isEndpointUrl(text)) throw bad(`${raw.from} must be a ws:// or wss:// URL with a host that is not link-local, a metadata service or unspecified, without credentials, at most 160 characters`)
  return text
}

function parseConnect(raw: Raw | undefined, service: string): ConnectTarget[] {
  if (raw === undefined) return []
  // The config file may also give an object: { "api": "127.0.0.1:15001" }.
  const entries: Array<[string, unknown]> = typeof raw.value === 'object' && raw.value !== null && !Array.isArray(raw.value)
    ? Object.entries(raw.value)
    : list(raw, 'a list of PEER=HOST:PORT').map((item) => {
      const eq = item.indexOf('=')
      return eq === -1 ? ['', item] : [item.slice(0, eq).trim(), item.slice(eq + 1).trim()]
    })
  const out: ConnectTarget[] = []
  entries.forEach(([peer, address], i) => {
    const which = `${raw.from} (entry ${i + 1})`
    if (peer === '') throw bad(`${which} must be PEER=HOST:PORT, e.g. api=127.0.0.1:15001`)
    try {
      validateServiceName(peer)
    } catch {
      throw bad(`${which}: the peer must be a service name: 1-63 of a-z, 0-9 and "-"`)
    }
    if (peer === service) throw bad(`${which}: an agent cannot connect to its own service`)
    if (out.some((c) => c.peerService === peer)) throw bad(`${which}: peer ${peer} is given twice; one local listener per peer service`)
    const hp = hostPortOf({ value: address, from: `${which} for ${peer}` }, true)
    out.push({ peerService: peer, host: hp.host, port: hp.port })
  })
  return out
}

/**
 * Any local user can connect to a TCP port, and anyone on the network to a
 * non-loopback one: the token guards both, but exposing the data API beyond the
 * host is a choice to make explicitly, never by a typo such as 0.0.0.0.
 */
function parseApi(raw: Raw | undefined, allowRaw: Raw | undefined): { listen: ApiListen; allowRemote: boolean } | undefined {
  const allowRemote = allowRaw === undefined ? false : parseBool(allowRaw)
  if (raw === undefined) return undefined
  const listen = parseApiListen(raw.value, raw.from)
  if ('port' in listen && !isLoopbackHost(listen.host) && !allowRemote) {
    throw bad(`${raw.from} is not a loopback address: the local API hands out data keys and plaintext, so it stays on 127.0.0.1, ::1 or a unix socket; to serve it to other hosts anyway (the token is still required) add --api-allow-remote (env ${envName('api-allow-remote')})`)
  }
  return { listen, allowRemote }
}

/** A switch: true/false from a flag or the config file, 1/0/true/false/yes/no from the environment. */
function parseBool(raw: Raw): boolean {
  if (typeof raw.value === 'boolean') return raw.value
  const text = typeof raw.value === 'string' ? raw.value.trim().toLowerCase() : ''
  if (['1', 'true', 'yes'].includes(text)) return true
  if (['0', 'false', 'no'].includes(text)) return false
  throw bad(`${raw.from} must be true or false (1 or 0)`)
}

/** `HOST:PORT` or `unix:/path/to.sock`, as --api takes it; AGENT_ERR_CONFIG naming `from` otherwise. */
export function parseApiListen(value: unknown, from: string): ApiListen {
  const text = typeof value === 'string' ? value.trim() : ''
  if (text.startsWith('unix:')) {
    const socketPath = text.slice('unix:'.length)
    if (socketPath === '' || socketPath.includes('\0')) throw bad(`${from} must be HOST:PORT or unix:/path/to.sock`)
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw bad(`${from}: a unix socket path may be at most ${MAX_SOCKET_PATH} bytes`)
    return { socketPath }
  }
  const parsed = parseHostPort(text)
  if (parsed === undefined) throw bad(`${from} must be HOST:PORT (e.g. 127.0.0.1:7402) or unix:/path/to.sock`)
  return parsed
}

/**
 * Only the log level, from the same sources in the same order as loadAgentConfig
 * (a flag beats the variable, which beats --config): what SIGHUP re-reads.
 * AGENT_ERR_CONFIG when the file cannot be read or the level is not one of LOG_LEVELS.
 */
export function loadAgentLogLevel(input: LoadAgentConfigInput): string {
  const readFile = input.readFile ?? ((path: string) => readFileSync(path, 'utf8'))
  return parseLogLevel(configSources(input, readFile, MAX_CONFIG_FILE).pick('log-level'))
}

function parseLogLevel(raw: Raw | undefined): string {
  if (raw === undefined) return DEFAULT_LOG_LEVEL
  if (typeof raw.value !== 'string' || !(LOG_LEVELS as readonly string[]).includes(raw.value)) {
    throw bad(`${raw.from} must be one of ${LOG_LEVELS.join(', ')}`)
  }
  return raw.value
}

/** Two listeners on one fixed address would fail at start-up with a less helpful EADDRINUSE. */
function checkDistinctListeners(tunnel: HostPort, connect: readonly ConnectTarget[], api: ApiListen | undefined): void {
  const listeners: Array<[string, HostPort]> = [['--tunnel-listen', tunnel], ...connect.map((c): [string, HostPort] => [`--connect ${c.peerService}`, c])]
  if (api !== undefined && 'port' in api) listeners.push(['--api', api])
  const seen = new Map<string, string>()
  for (const [name, hp] of listeners) {
    if (hp.port === 0) continue
    const key = formatHostPort(hp)
    const earlier = seen.get(key)
    if (earlier !== undefined) throw bad(`${earlier} and ${name} listen on the same address`)
    seen.set(key, name)
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value
  for (const v of Object.values(value)) deepFreeze(v)
  return Object.freeze(value)
}
