// Where the agent configuration's raw values come from: parsed flags, KEYMESH_*
// variables and the JSON config file (--config / KEYMESH_CONFIG), looked up in
// that order. Values are returned unvalidated, each with a label saying where it
// came from (`--service`, `KEYMESH_SERVICE`, `"service" in agent.json`), so that
// config-load.ts can name the source in its messages. Reads go through the
// injected readFile; nothing here touches process.*.
import { agentError } from './errors.js'

/** Every setting that flags, environment and file share (kebab-case, as on the command line). */
export const AGENT_OPTIONS = [
  'cp', 'cp-key', 'cp-key-file', 'service', 'join-token', 'join-token-file', 'state-dir',
  'tunnel-listen', 'advertise', 'expose', 'connect', 'api', 'api-allow-remote', 'log-level',
] as const
export type AgentOption = (typeof AGENT_OPTIONS)[number]

/** `state-dir` → `KEYMESH_STATE_DIR`. */
export const envName = (option: string): string => `KEYMESH_${option.toUpperCase().replace(/-/g, '_')}`

export interface LoadAgentConfigInput {
  /** Parsed flags (yargs output: camelCase or kebab-case keys; other keys are ignored). */
  readonly args: Readonly<Record<string, unknown>>
  readonly env: Readonly<Record<string, string | undefined>>
  /** Reads a file as UTF-8 (default fs.readFileSync); used for --config, --cp-key-file, --join-token-file. */
  readonly readFile?: (path: string) => string
}

/** A value and where it came from. */
export interface Raw { readonly value: unknown; readonly from: string }

/** One of a setting's two forms (text or file), and its value. */
export interface Picked { readonly option: AgentOption; readonly raw: Raw }

export interface ConfigFile { readonly path: string; readonly values: Map<AgentOption, Raw>; readonly limits: unknown }

export interface ConfigSources {
  readonly file: ConfigFile | undefined
  /** The first source that sets `option`. */
  pick(option: AgentOption): Raw | undefined
  /**
   * For a setting with two forms: the first source that gives either. One source
   * giving both is AGENT_ERR_CONFIG (which one was meant cannot be guessed).
   */
  pickOneOf(a: AgentOption, b: AgentOption): Picked | undefined
}

const bad = (detail: string) => agentError('AGENT_ERR_CONFIG', detail)

export function configSources(input: LoadAgentConfigInput, readFile: (path: string) => string, maxFileBytes: number): ConfigSources {
  const file = loadConfigFile(input, readFile, maxFileBytes)
  const layers: Array<(o: AgentOption) => Raw | undefined> = [
    (o) => fromArgs(input.args, o),
    (o) => fromEnv(input.env, o),
    (o) => file?.values.get(o),
  ]
  return {
    file,
    pick: (option) => {
      for (const layer of layers) {
        const raw = layer(option)
        if (raw !== undefined) return raw
      }
      return undefined
    },
    pickOneOf: (a, b) => {
      for (const layer of layers) {
        const ra = layer(a)
        const rb = layer(b)
        if (ra !== undefined && rb !== undefined) throw bad(`${ra.from} and ${rb.from} are both given; give one`)
        if (ra !== undefined) return { option: a, raw: ra }
        if (rb !== undefined) return { option: b, raw: rb }
      }
      return undefined
    },
  }
}

/** Reads a file through `readFile`; unreadable or larger than `limit` is AGENT_ERR_CONFIG naming `from` and the path. */
export function readSmallFile(readFile: (path: string) => string, path: string, limit: number, from: string): string {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    throw bad(`${from}: cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}`)
  }
  if (text.length > limit) throw bad(`${from}: ${path} is larger than ${limit} bytes`)
  return text
}

const camel = (kebab: string): string => kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

function fromArgs(args: Readonly<Record<string, unknown>>, option: string): Raw | undefined {
  const value = args[camel(option)] ?? args[option]
  return value === undefined || value === null ? undefined : { value, from: `--${option}` }
}

function fromEnv(env: Readonly<Record<string, string | undefined>>, option: string): Raw | undefined {
  const name = envName(option)
  const value = env[name]
  // An empty variable counts as unset, as shells make clearing one awkward.
  return value === undefined || value === '' ? undefined : { value, from: name }
}

function loadConfigFile(input: LoadAgentConfigInput, readFile: (path: string) => string, maxFileBytes: number): ConfigFile | undefined {
  const given = fromArgs(input.args, 'config') ?? fromEnv(input.env, 'config')
  if (given === undefined) return undefined
  if (typeof given.value !== 'string' || given.value === '') throw bad(`${given.from} must name a JSON file`)
  const path = given.value
  const text = readSmallFile(readFile, path, maxFileBytes, given.from)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    // JSON.parse's message quotes the input, which may hold the join token.
    throw bad(`config file ${path} (${given.from}) is not valid JSON`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad(`config file ${path} must hold a JSON object`)
  const values = new Map<AgentOption, Raw>()
  let limits: unknown
  for (const [key, value] of Object.entries(parsed)) {
    const name = kebab(key)
    if (name === 'limits') {
      if (limits !== undefined) throw bad(`config file ${path} gives "limits" twice`)
      limits = value
      continue
    }
    if (!(AGENT_OPTIONS as readonly string[]).includes(name)) {
      throw bad(`config file ${path} has an unknown key ${JSON.stringify(key.slice(0, 40))}; the keys are the flag names (${AGENT_OPTIONS.join(', ')}, limits)`)
    }
    if (values.has(name as AgentOption)) throw bad(`config file ${path} gives "${name}" twice (kebab-case and camelCase)`)
    if (value !== null) values.set(name as AgentOption, { value, from: `"${name}" in ${path}` })
  }
  return { path, values, limits }
}
