// The quick path: a command line that is plainly right (`keymesh key list --json`)
// runs without loading yargs, which alone costs a third of a short command's start
// (yargs and its ~45 modules; test/cli/light.test.ts). Anything else goes to yargs as
// before: help, completion, a mistake of any kind (it is yargs that words the one-line
// usage error), and every option form this reader does not know.
//
// The commands are still declared once, as yargs command modules: their builders run
// here against a recorder that notes the options, positionals and subcommands they
// declare and gives up on any builder call it does not understand. What must hold: for
// every line it accepts, the handler gets the arguments yargs would have given it
// (test/cli/quick-path.test.ts compares the two on every command).
import type { CommandModule } from 'yargs'

/** An option as a builder declares it; only these keys are understood. */
interface OptionSpec {
  readonly type?: unknown
  readonly describe?: unknown
  readonly choices?: readonly unknown[]
  readonly demandOption?: unknown
  readonly default?: unknown
  readonly defaultDescription?: unknown
  readonly alias?: unknown
}

const KNOWN_KEYS: ReadonlySet<string> = new Set(['type', 'describe', 'choices', 'demandOption', 'default', 'defaultDescription', 'alias'])
const TYPES: ReadonlySet<unknown> = new Set(['string', 'number', 'boolean'])

/** What one command's builder declared. */
export interface CommandShape {
  readonly options: Map<string, OptionSpec>
  readonly positionals: Map<string, OptionSpec>
  readonly subcommands: CommandModule[]
  readonly conflicts: [string, string][]
  /** A builder call the quick path does not understand was made: use yargs. */
  understood: boolean
}

/** Builder calls that only shape help or are the defaults here. */
const HELP_ONLY: ReadonlySet<string | symbol> = new Set(['example', 'usage', 'epilog', 'epilogue', 'demandCommand'])

/**
 * What `module`'s builder declares, read by calling it with a stand-in for yargs's
 * builder argument. Only the shape is kept; nothing runs.
 */
export function commandShape(module: CommandModule): CommandShape {
  const shape: CommandShape = { options: new Map(), positionals: new Map(), subcommands: [], conflicts: [], understood: true }
  const option = (key: unknown, spec: unknown): void => {
    if (typeof key !== 'string' || typeof spec !== 'object' || spec === null) shape.understood = false
    else shape.options.set(key, spec as OptionSpec)
  }
  const calls: Record<string, (...args: unknown[]) => void> = {
    option,
    options: (all) => {
      if (typeof all !== 'object' || all === null) shape.understood = false
      else for (const [key, spec] of Object.entries(all)) option(key, spec)
    },
    positional: (name, spec) => {
      if (typeof name !== 'string' || typeof spec !== 'object' || spec === null) shape.understood = false
      else shape.positionals.set(name, spec as OptionSpec)
    },
    command: (sub) => {
      if (typeof sub !== 'object' || sub === null) shape.understood = false
      else shape.subcommands.push(sub as CommandModule)
    },
    conflicts: (a, b) => {
      if (typeof a !== 'string' || typeof b !== 'string') shape.understood = false
      else shape.conflicts.push([a, b])
    },
    // `.version(false)`: the word is a command's own option (key subcommands' --version N).
    version: (on) => {
      if (on !== false) shape.understood = false
    },
  }
  const stand: unknown = new Proxy(function () {}, {
    get: (_target, prop) => (...args: unknown[]) => {
      const call = typeof prop === 'string' && Object.hasOwn(calls, prop) ? calls[prop] : undefined
      if (call !== undefined) call(...args)
      else if (!HELP_ONLY.has(prop)) shape.understood = false
      return stand
    },
  })
  if (typeof module.builder === 'function') {
    try {
      ;(module.builder as (y: unknown) => unknown)(stand)
    } catch {
      shape.understood = false
    }
  } else if (module.builder !== undefined) shape.understood = false
  for (const spec of [...shape.options.values(), ...shape.positionals.values()]) {
    if (!TYPES.has(spec.type) || Object.keys(spec).some((k) => !KNOWN_KEYS.has(k))) shape.understood = false
    if (spec.alias !== undefined && (typeof spec.alias !== 'string' || !/^[a-zA-Z][a-z0-9-]*$/.test(spec.alias))) shape.understood = false
  }
  for (const spec of shape.positionals.values()) if (spec.type !== 'string') shape.understood = false
  return shape
}

/** A command's spelling, `create <name> [more]`: its word, the demanded and the optional positionals. */
function spelling(module: CommandModule): { word: string; demanded: string[]; optional: string[] } | undefined {
  if (typeof module.command !== 'string' || module.aliases !== undefined || module.deprecated !== undefined || 'middlewares' in module) return undefined
  const [word, ...rest] = module.command.split(' ').filter(Boolean)
  const demanded: string[] = []
  const optional: string[] = []
  for (const p of rest) {
    const m = /^(?:<([a-z][a-z0-9-]*)>|\[([a-z][a-z0-9-]*)\])$/.exec(p)
    if (!m) return undefined
    if (m[1] !== undefined) {
      if (optional.length > 0) return undefined
      demanded.push(m[1])
    } else optional.push(m[2] as string)
  }
  return word === undefined ? undefined : { word, demanded, optional }
}

const camel = (s: string): string => s.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase())

/** A plain decimal, as yargs reads it for a number option; any other form goes to yargs. */
const DECIMAL = /^-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?$/

export interface QuickRun {
  readonly handler: (args: Record<string, unknown>) => unknown
  readonly args: Record<string, unknown>
}

/**
 * The handler and arguments for `argv` when the line is plainly right for `module`
 * (`globals`: the options every command takes); undefined sends the line to yargs.
 * Only global options may come before the command's last word; a group of
 * subcommands may declare no options of its own.
 */
export function quickParse(module: CommandModule, argv: readonly string[], globals: Readonly<Record<string, OptionSpec>>): QuickRun | undefined {
  const table = new Map<string, OptionSpec>(Object.entries(globals))
  const args: Record<string, unknown> = {}
  const set = (key: string, value: unknown): void => {
    args[key] = value
    args[camel(key)] = value
    const alias = table.get(key)?.alias
    if (typeof alias === 'string') {
      args[alias] = value
      args[camel(alias)] = value
    }
  }
  /** The option at argv[i], set in args; the index after it, or undefined for yargs. */
  const option = (i: number): number | undefined => {
    // --name, --name=value, and -x for a one-letter name or alias.
    const m = /^--([a-z][a-z0-9-]*)(?:=(.+))?$/s.exec(argv[i] as string) ?? /^-([a-zA-Z])$/.exec(argv[i] as string)
    if (!m) return undefined
    const inline = m[2]
    let key = [...table].find(([, spec]) => spec.alias === m[1])?.[0] ?? (m[1] as string)
    let value: unknown
    if (!table.has(key) && key.startsWith('no-') && table.get(key.slice(3))?.type === 'boolean' && inline === undefined) {
      key = key.slice(3)
      value = false
    }
    const spec = table.get(key)
    if (spec === undefined || args[key] !== undefined) return undefined
    if (spec.type === 'boolean') {
      if (inline !== undefined) return undefined
      set(key, value ?? true)
      return i + 1
    }
    const text = inline ?? argv[i + 1]
    if (text === undefined || text === '' || (inline === undefined && text.startsWith('-'))) return undefined
    if (spec.type === 'number' && !DECIMAL.test(text)) return undefined
    value = spec.type === 'number' ? Number(text) : text
    if (spec.choices !== undefined && !spec.choices.includes(value)) return undefined
    set(key, value)
    return i + (inline === undefined ? 2 : 1)
  }

  // The command path: the module's word, then a subcommand's word while the current
  // command is a group; only global options before its end.
  let current = module
  let shape = commandShape(module)
  let declared = spelling(module)
  const path: string[] = []
  const positionals: string[] = []
  let leaf = false
  for (let i = 0; i < argv.length;) {
    const word = argv[i] as string
    if (word.startsWith('-')) {
      const next = option(i)
      if (next === undefined) return undefined
      i = next
      continue
    }
    i++
    if (leaf) {
      positionals.push(word)
      continue
    }
    if (path.length > 0) {
      const sub = shape.subcommands.find((s) => spelling(s)?.word === word)
      if (sub === undefined) return undefined
      current = sub
      shape = commandShape(sub)
      declared = spelling(sub)
    } else if (word !== declared?.word) return undefined
    if (declared === undefined || !shape.understood) return undefined
    path.push(word)
    if (shape.subcommands.length === 0) {
      leaf = true
      for (const [k, spec] of shape.options) table.set(k, spec)
    } else if (shape.options.size > 0 || shape.positionals.size > 0) return undefined // (a group's `<command>` names its subcommand)
  }
  if (!leaf || declared === undefined) return undefined
  const handler = current.handler
  if (handler === undefined) return undefined
  // Positionals by count, then what a missing option, a conflict or a default says.
  if (positionals.length < declared.demanded.length || positionals.length > declared.demanded.length + declared.optional.length) return undefined
  const names = [...declared.demanded, ...declared.optional]
  positionals.forEach((value, n) => set(names[n] as string, value))
  for (const [key, spec] of table) {
    if (args[key] !== undefined) continue
    if (spec.demandOption !== undefined && spec.demandOption !== false) return undefined
    if (spec.default !== undefined) set(key, spec.default)
  }
  if (shape.conflicts.some(([a, b]) => args[a] !== undefined && args[b] !== undefined)) return undefined
  return { handler: handler as QuickRun['handler'], args: { _: path, ...args, $0: 'keymesh' } }
}
