// The keymesh CLI. Parses argv (a plainly right line in cli/quick-path.ts, anything
// else with yargs) and dispatches to one module per command family; the packages
// never read process.argv or process.env themselves (configuration is merged here,
// at the edge, and handed down).
import { createInterface } from 'node:readline/promises'

import type { CommandModule } from 'yargs'

import type { CliContext, GlobalArgs } from './context.js'
import type { Env } from './client.js'
import { EXIT_USAGE } from './output.js'
import { quickParse } from './quick-path.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type CommandFactory = (ctx: CliContext) => CommandModule<GlobalArgs, any>

/**
 * The commands, each loaded only when it is the one being run: `keymesh key list`
 * should not pay for parsing the drop, store or agent code (test/cli/light.test.ts).
 * Help, completion and a mistyped command load them all.
 */
export const COMMANDS: Readonly<Record<string, () => Promise<CommandFactory>>> = {
  'control-plane': async () => (await import('./commands/control-plane.js')).controlPlaneCommand,
  'join-token': async () => (await import('./commands/join-token.js')).joinTokenCommand,
  agent: async () => (await import('./commands/agent.js')).agentCommand,
  agents: async () => (await import('./commands/agents.js')).agentsCommand,
  intention: async () => (await import('./commands/intention.js')).intentionCommand,
  pair: async () => (await import('./commands/pair.js')).pairCommand,
  key: async () => (await import('./commands/key.js')).keyCommand,
  token: async () => (await import('./commands/token.js')).tokenCommand,
  audit: async () => (await import('./commands/audit.js')).auditCommand,
  drop: async () => (await import('./commands/drop.js')).dropCommand,
  store: async () => (await import('./commands/store.js')).storeCommand,
  completion: async () => (await import('./commands/completion.js')).completionCommand,
  doctor: async () => (await import('./commands/doctor.js')).doctorCommand,
  backup: async () => (await import('./commands/backup.js')).backupCommand,
  unseal: async () => (await import('./commands/custody.js')).unsealCommand,
  seal: async () => (await import('./commands/custody.js')).sealCommand,
  rekey: async () => (await import('./commands/custody.js')).rekeyCommand,
  debug: async () => (await import('./commands/debug.js')).debugCommand,
  console: async () => (await import('./commands/console.js')).consoleCommand,
}

/** The options every command takes. */
export const GLOBAL_OPTIONS = {
  cp: { type: 'string', describe: 'Control plane URL, e.g. https://127.0.0.1:7400 (env KEYMESH_CP)' },
  'token-file': { type: 'string', describe: 'File holding an operator token, mode 0600 (env KEYMESH_TOKEN_FILE)' },
  'ca-file': { type: 'string', describe: 'PEM file of the CA to trust for https:// (the control plane\'s own DATA_DIR/tls.crt when it made one); default: the system\'s trust store (env KEYMESH_CA_FILE)' },
  'cp-fingerprint': { type: 'string', describe: 'Accept only the control plane certificate with this fingerprint (sha256:…, printed at its start); no CA needed then (env KEYMESH_CP_FINGERPRINT)' },
  json: { type: 'boolean', describe: 'Print JSON for scripts instead of a table' },
  debug: { type: 'boolean', describe: 'Print the stack trace of an unexpected error' },
  'dry-run': { type: 'boolean', describe: 'Changing commands: print what would change (pairs, agents, audit entries) and change nothing' },
} as const

/** Global options that take a value, so that the value is not taken for the command's name. */
const GLOBAL_VALUE_OPTIONS: ReadonlySet<string> = new Set(['--cp', '--token-file', '--ca-file', '--cp-fingerprint'])

/** The first word on the line that is not an option or a global option's value. */
function firstWord(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (GLOBAL_VALUE_OPTIONS.has(a)) i++
    else if (!a.startsWith('-')) return a
  }
  return undefined
}

/** The command named on the line, when it is a known one; else undefined (all are loaded). */
export function namedCommand(argv: readonly string[]): string | undefined {
  const word = firstWord(argv)
  return word !== undefined && Object.hasOwn(COMMANDS, word) ? word : undefined
}

/** The first option on the line that takes a string and was given none, e.g. `--api`. */
function valueMissing(argv: readonly string[], y: unknown): string | undefined {
  const options = (y as { getOptions?: () => { string?: unknown } }).getOptions?.()
  const strings = Array.isArray(options?.string) ? (options.string as string[]) : []
  return argv.find((a, i) => {
    const next = argv[i + 1]
    return a.startsWith('-') && strings.includes(a.replace(/^--?/, '')) && (next === undefined || next.startsWith('--'))
  })
}

/**
 * The words of the command being run (`key list`), for the hint after a usage error:
 * yargs keeps them in its parse context (not in its typed API, hence the guard); the
 * named command is the fallback.
 */
function commandWords(argv: readonly string[], y: unknown): string {
  const internals = (y as { getInternalMethods?: () => { getContext(): { fullCommands?: unknown } } }).getInternalMethods?.()
  const full = internals?.getContext().fullCommands
  if (Array.isArray(full) && full.length > 0) return full.map((c) => String(c).split(' ')[0]).join(' ')
  return namedCommand(argv) ?? ''
}

/**
 * yargs renders a command's whole help right after calling its handler, to cache it
 * for a later showHelp() that this CLI never makes (a failure is one line): a fifth
 * of a short command's start when it goes through yargs. The hook lives in yargs's internals (not its typed
 * API, hence the guard); `--help` renders as before.
 */
function skipHelpCache(y: unknown): void {
  const usage = (y as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: unknown } } }).getInternalMethods?.().getUsageInstance?.()
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined
}

export interface MainIo {
  readonly stdout?: { write(s: string): unknown }
  readonly stderr?: { write(s: string): unknown }
  readonly env?: Env
  /** Resolves with a signal name when a long-running command should stop. */
  readonly stopSignal?: Promise<string>
  /** Asks a yes/no question; by default only when stdin is a TTY (see CliContext.confirm). */
  readonly confirm?: (question: string) => Promise<boolean>
}

/** y/yes on a TTY's stdin, asked on stderr so that stdout stays the command's output. */
async function askTerminal(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim())
  } finally {
    rl.close()
  }
}

function processStopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', on)
      process.off('SIGTERM', on)
      resolve(sig)
    }
    process.once('SIGINT', on)
    process.once('SIGTERM', on)
  })
}

const USAGE_FAILED = new Error('usage')

/** A mistake on the command line found by our own checks, reported like yargs's own. */
class UsageMistake extends Error {}

/** yargs's message, first letter lowered to read after `keymesh: `, on one line. */
function oneLineMessage(msg: string | undefined, argv: readonly string[]): string {
  let text = (msg ?? 'invalid command line').replace(/\s+/g, ' ').trim()
  // recommendCommands says only "Did you mean key?"; say what was wrong first.
  const typo = firstWord(argv)
  if (text.startsWith('Did you mean') && typo !== undefined) text = `unknown command ${JSON.stringify(typo)}; ${text.charAt(0).toLowerCase()}${text.slice(1)}`
  return text.charAt(0).toLowerCase() + text.slice(1)
}

export async function main(argv: string[], io: MainIo = {}): Promise<number> {
  let stop: Promise<string> | undefined
  const env = io.env ?? process.env
  const ctx: CliContext = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env,
    exitCode: 0,
    forgetEnv: (name) => {
      delete (env as Record<string, string | undefined>)[name]
    },
    confirm: io.confirm ?? (io.stdout === undefined && process.stdin.isTTY ? askTerminal : undefined),
    // Only long-running commands await this, so signal handlers are installed lazily.
    get stopSignal() {
      return (stop ??= io.stopSignal ?? processStopSignal())
    },
  }
  const named = namedCommand(argv)
  const factories = await Promise.all(
    Object.entries(COMMANDS).filter(([name]) => named === undefined || name === named).map(([, load]) => load()),
  )
  // A plainly right line runs without yargs (cli/quick-path.ts); anything else is yargs's.
  const quick = named !== undefined && factories.length === 1 ? quickParse((factories[0] as CommandFactory)(ctx) as CommandModule, argv, GLOBAL_OPTIONS) : undefined
  if (quick !== undefined) {
    await quick.handler(quick.args)
    return ctx.exitCode
  }
  return runYargs(argv, ctx, factories)
}

/** The command line through yargs: help, completion, usage errors, and every line the quick path leaves. */
export async function runYargs(argv: string[], ctx: CliContext, factories: readonly CommandFactory[]): Promise<number> {
  const { default: yargs } = await import('yargs')
  let usageError = false
  // Wrapped so that a throw from .fail() (see there) arrives as a rejection, whether
  // yargs raises it synchronously or not.
  let cli = yargs(argv)
    .scriptName('keymesh')
    .usage('$0 <command> [options]\n\nkeymesh: a key management service with sidecar agents.')
  for (const [key, spec] of Object.entries(GLOBAL_OPTIONS)) cli = cli.option(key, { ...spec, global: true })
  for (const factory of factories) cli = cli.command(factory(ctx))
  // The hook the completion scripts call (--get-yargs-completions); its own command stays hidden.
  cli = cli.completion('completion-script', false)
  const instance = cli
  skipHelpCache(instance)
  // yargs hands '' to a string option given without a value (`--api` last on the line);
  // that is a missing value, said here once for every command.
  cli = cli.check(() => {
    const flag = valueMissing(argv, instance)
    if (flag !== undefined) throw new UsageMistake(`${flag} needs a value`)
    return true
  }, true)
  await Promise.resolve().then(() => cli
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .strict()
    .help()
    .alias('h', 'help')
    .version()
    // Wrapping costs string-width on every word, and yargs renders the help of every
    // command it runs (to cache it): wrap only help that is asked for.
    .wrap(argv.includes('--help') || argv.includes('-h') ? Math.min(100, process.stdout.columns || 100) : null)
    .fail((msg, err) => {
      if (err && !(err instanceof UsageMistake)) throw err
      // One line, one code, like every other error; the full usage is one --help away.
      const words = ['keymesh', commandWords(argv, cli)].filter(Boolean).join(' ')
      const code = words.startsWith('keymesh agent') && !words.startsWith('keymesh agents') ? 'AGENT_ERR_USAGE' : 'CP_ERR_USAGE'
      ctx.stderr.write(`keymesh: ${oneLineMessage(msg, argv)}; see ${words} --help (${code})\n`)
      usageError = true
      // Throwing is what stops yargs: a fail handler that returns lets a subcommand's
      // handler run anyway, with the invalid or missing option.
      throw USAGE_FAILED
    })
    .parseAsync())
    .catch((err: unknown) => {
      if (err !== USAGE_FAILED) throw err
    })
  return usageError ? EXIT_USAGE : ctx.exitCode
}

export type { GlobalArgs }
