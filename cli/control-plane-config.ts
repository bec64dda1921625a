// `keymesh control-plane` settings from flags, KEYMESH_* variables and a JSON config
// file (--config / KEYMESH_CONFIG), a flag beating the variable beating the file, then
// the defaults: the agent's rule, through the same loader (platform's configSources).
// The result is validated once and frozen. Problems are CP_ERR_USAGE naming where the
// value came from; values are not repeated (a store URL may hold a password).
import { readFileSync } from 'node:fs'

import { cpError } from '../control-plane/src/index.js'
import { configSources, envName, type Raw } from '../platform/src/index.js'
import { LOG_LEVELS } from './logger.js'

/** Every setting that flags, environment and file share (kebab-case). */
export const CONTROL_PLANE_OPTIONS = [
  'listen', 'data-dir', 'master-key-file', 'store', 'log-level', 'tls-cert', 'tls-key', 'tls-san', 'insecure-http', 'destroy-guard-window',
  'integrity-check-interval', 'audit-verify-interval',
] as const

export const DEFAULT_LISTEN = '127.0.0.1:7400'
const MAX_CONFIG_FILE = 1024 * 1024

export interface ControlPlaneConfig {
  readonly listen: string
  readonly dataDir: string
  readonly masterKeyFile: string | undefined
  readonly store: string | undefined
  readonly logLevel: string
  /** Plain HTTP instead of TLS (--insecure-http). */
  readonly insecureHttp: boolean
  readonly tlsCert: string | undefined
  readonly tlsKey: string | undefined
  readonly tlsSans: readonly string[]
  /** --destroy-guard-window, as written (parsed by the command). */
  readonly destroyGuardWindow: string
  /** --integrity-check-interval and --audit-verify-interval, as written (parsed by the command). */
  readonly integrityCheckInterval: string
  readonly auditVerifyInterval: string
}

const bad = (detail: string) => cpError('CP_ERR_USAGE', detail)

export function loadControlPlaneConfig(args: Readonly<Record<string, unknown>>, env: Readonly<Record<string, string | undefined>>, readFile: (path: string) => string = (path) => readFileSync(path, 'utf8')): ControlPlaneConfig {
  const { pick } = configSources({ options: CONTROL_PLANE_OPTIONS, args, env, readFile, maxFileBytes: MAX_CONFIG_FILE, error: bad })
  const text = (option: (typeof CONTROL_PLANE_OPTIONS)[number]): string | undefined => {
    const raw = pick(option)
    if (raw === undefined) return undefined
    if (typeof raw.value !== 'string' || raw.value.trim() === '') throw bad(`${raw.from} must be a non-empty string`)
    return raw.value.trim()
  }
  const dataDir = text('data-dir')
  if (dataDir === undefined) throw bad(`give the data directory with --data-dir DIR (env ${envName('data-dir')}, or "data-dir" in the --config file)`)
  const logLevel = text('log-level') ?? 'info'
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw bad(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  const insecure = pick('insecure-http')
  const config: ControlPlaneConfig = {
    listen: text('listen') ?? DEFAULT_LISTEN,
    dataDir,
    masterKeyFile: text('master-key-file'),
    store: text('store'),
    logLevel,
    insecureHttp: insecure === undefined ? false : parseBool(insecure),
    tlsCert: text('tls-cert'),
    tlsKey: text('tls-key'),
    tlsSans: Object.freeze(list(pick('tls-san'))),
    destroyGuardWindow: text('destroy-guard-window') ?? '30d',
    integrityCheckInterval: text('integrity-check-interval') ?? '6h',
    auditVerifyInterval: text('audit-verify-interval') ?? '10m',
  }
  if (config.insecureHttp && (config.tlsCert !== undefined || config.tlsKey !== undefined)) throw bad('--insecure-http serves plain HTTP: it does not go with --tls-cert or --tls-key')
  return Object.freeze(config)
}

/** A string, comma list, or array of either (a repeated flag, a JSON array). */
function list(raw: Raw | undefined): string[] {
  if (raw === undefined) return []
  const items = Array.isArray(raw.value) ? raw.value : [raw.value]
  return items.flatMap((item) => {
    if (typeof item !== 'string') throw bad(`${raw.from} must be names, as a list or separated by commas`)
    return item.split(',').map((s) => s.trim()).filter((s) => s !== '')
  })
}

/** true/false from a flag or the file, 1/0/true/false/yes/no from the environment. */
function parseBool(raw: Raw): boolean {
  if (typeof raw.value === 'boolean') return raw.value
  const t = typeof raw.value === 'string' ? raw.value.trim().toLowerCase() : ''
  if (['1', 'true', 'yes'].includes(t)) return true
  if (['0', 'false', 'no'].includes(t)) return false
  throw bad(`${raw.from} must be true or false (1 or 0)`)
}
