// Where a server's configuration values come from, for the agent and the control plane
// alike: parsed flags, KEYMESH_* variables and a JSON config file (--config /
// KEYMESH_CONFIG), looked up in that order. Values are returned unvalidated, each with
// a label saying where it came from (`--service`, `KEYMESH_SERVICE`, `"service" in
// agent.json`), so that the caller's loader can name the source in its messages.
// Reads go through the injected readFile; nothing here touches process.*. Every
// problem is the caller's error (`error`), naming the source, never repeating a value.

/** `state-dir` → `KEYMESH_STATE_DIR`. */
export const envName = (option: string): string => `KEYMESH_${option.toUpperCase().replace(/-/g, '_')}`

/** A value and where it came from. */
export interface Raw { readonly value: unknown; readonly from: string }

/** One of a setting's two forms (text or file), and its value. */
export interface Picked<O extends string> { readonly option: O; readonly raw: Raw }

export interface ConfigFile<O extends string> {
  readonly path: string
  readonly values: Map<O, Raw>
  /** The file's sections (`limits`: an object handed over whole), by name. */
  readonly sections: Map<string, unknown>
}

export interface ConfigSourcesOptions<O extends string> {
  /** Every setting that flags, environment and file share (kebab-case, as on the command line). */
  readonly options: readonly O[]
  /** File keys that hold a section rather than a setting. */
  readonly sections?: readonly string[]
  /** Parsed flags (yargs output: camelCase or kebab-case keys; other keys are ignored). */
  readonly args: Readonly<Record<string, unknown>>
  readonly env: Readonly<Record<string, string | undefined>>
  readonly readFile: (path: string) => string
  readonly maxFileBytes: number
  /** The caller's typed error (AGENT_ERR_CONFIG, CP_ERR_CONFIG). */
  readonly error: (detail: string) => Error
}

export interface ConfigSources<O extends string> {
  readonly file: ConfigFile<O> | undefined
  /** The first source that sets `option`. */
  pick(option: O): Raw | undefined
  /**
   * For a setting with two forms: the first source that gives either. One source
   * giving both is an error (which one was meant cannot be guessed).
   */
  pickOneOf(a: O, b: O): Picked<O> | undefined
}

export function configSources<O extends string>(o: ConfigSourcesOptions<O>): ConfigSources<O> {
  const file = loadConfigFile(o)
  const layers: Array<(option: O) => Raw | undefined> = [
    (option) => fromArgs(o.args, option),
    (option) => fromEnv(o.env, option),
    (option) => file?.values.get(option),
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
        if (ra !== undefined && rb !== undefined) throw o.error(`${ra.from} and ${rb.from} are both given; give one`)
        if (ra !== undefined) return { option: a, raw: ra }
        if (rb !== undefined) return { option: b, raw: rb }
      }
      return undefined
    },
  }
}

/** Reads a file through `readFile`; unreadable or larger than `limit` is `error` naming `from` and the path. */
export function readSmallFile(readFile: (path: string) => string, path: string, limit: number, from: string, error: (detail: string) => Error): string {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    throw error(`${from}: cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}`)
  }
  if (text.length > limit) throw error(`${from}: ${path} is larger than ${limit} bytes`)
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

function loadConfigFile<O extends string>(o: ConfigSourcesOptions<O>): ConfigFile<O> | undefined {
  const bad = o.error
  const given = fromArgs(o.args, 'config') ?? fromEnv(o.env, 'config')
  if (given === undefined) return undefined
  if (typeof given.value !== 'string' || given.value === '') throw bad(`${given.from} must name a JSON file`)
  const path = given.value
  const text = readSmallFile(o.readFile, path, o.maxFileBytes, given.from, bad)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    // JSON.parse's message quotes the input, which may hold a secret (a join token).
    throw bad(`config file ${path} (${given.from}) is not valid JSON`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad(`config file ${path} must hold a JSON object`)
  const values = new Map<O, Raw>()
  const sections = new Map<string, unknown>()
  const sectionNames = o.sections ?? []
  for (const [key, value] of Object.entries(parsed)) {
    const name = kebab(key)
    if (sectionNames.includes(name)) {
      if (sections.has(name)) throw bad(`config file ${path} gives "${name}" twice`)
      sections.set(name, value)
      continue
    }
    if (!(o.options as readonly string[]).includes(name)) {
      throw bad(`config file ${path} has an unknown key ${JSON.stringify(key.slice(0, 40))}; the keys are the flag names (${[...o.options, ...sectionNames].join(', ')})`)
    }
    if (values.has(name as O)) throw bad(`config file ${path} gives "${name}" twice (kebab-case and camelCase)`)
    if (value !== null) values.set(name as O, { value, from: `"${name}" in ${path}` })
  }
  return { path, values, sections }
}
