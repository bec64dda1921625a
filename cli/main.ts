// The keymesh CLI. Parses argv with yargs and dispatches to one module per
// command family; the packages never read process.argv or process.env themselves
// (configuration is merged here, at the edge, and handed down).
import { createInterface } from 'node:readline/promises'

import yargs from 'yargs'

import type { CliContext, GlobalArgs } from './context.js'
import type { Env } from './client.js'
import { EXIT_USAGE } from './output.js'
import { controlPlaneCommand } from './commands/control-plane.js'
import { joinTokenCommand } from './commands/join-token.js'
import { agentsCommand } from './commands/agents.js'
import { agentCommand } from './commands/agent.js'
import { intentionCommand } from './commands/intention.js'
import { pairCommand } from './commands/pair.js'
import { keyCommand } from './commands/key.js'
import { tokenCommand } from './commands/token.js'
import { auditCommand } from './commands/audit.js'
import { dropCommand } from './commands/drop.js'
import { storeCommand } from './commands/store.js'
import { completionCommand } from './commands/completion.js'
import { doctorCommand } from './commands/doctor.js'
import { debugCommand } from './commands/debug.js'

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
  let usageError = false
  // Wrapped so that a throw from .fail() (see there) arrives as a rejection, whether
  // yargs raises it synchronously or not.
  await Promise.resolve().then(() => yargs(argv)
    .scriptName('keymesh')
    .usage('$0 <command> [options]\n\nkeymesh: a key management service with sidecar agents.')
    .option('cp', { type: 'string', global: true, describe: 'Control plane URL, e.g. https://127.0.0.1:7400 (env KEYMESH_CP)' })
    .option('token-file', { type: 'string', global: true, describe: 'File holding an operator token (env KEYMESH_TOKEN_FILE)' })
    .option('ca-file', { type: 'string', global: true, describe: 'PEM file of the CA to trust for https:// (the control plane\'s own DATA_DIR/tls.crt when it made one); default: the system\'s trust store (env KEYMESH_CA_FILE)' })
    .option('cp-fingerprint', { type: 'string', global: true, describe: 'Accept only the control plane certificate with this fingerprint (sha256:…, printed at its start); no CA needed then (env KEYMESH_CP_FINGERPRINT)' })
    .option('json', { type: 'boolean', global: true, describe: 'Print JSON for scripts instead of a table' })
    .option('debug', { type: 'boolean', global: true, hidden: true, describe: 'Print stack traces of unexpected errors' })
    .option('dry-run', { type: 'boolean', global: true, describe: 'Changing commands: print what would change (pairs, agents, audit entries) and change nothing' })
    .command(controlPlaneCommand(ctx))
    .command(joinTokenCommand(ctx))
    .command(agentCommand(ctx))
    .command(agentsCommand(ctx))
    .command(intentionCommand(ctx))
    .command(pairCommand(ctx))
    .command(keyCommand(ctx))
    .command(tokenCommand(ctx))
    .command(auditCommand(ctx))
    .command(dropCommand(ctx))
    .command(storeCommand(ctx))
    .command(completionCommand(ctx))
    .command(doctorCommand(ctx))
    .command(debugCommand(ctx))
    // The hook the completion scripts call (--get-yargs-completions); its own command stays hidden.
    .completion('completion-script', false)
    .demandCommand(1, 'Name a command; see the list above.')
    .recommendCommands()
    .strict()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((msg, err, y) => {
      if (err) throw err
      ctx.stderr.write(`${y.help()}\n\nkeymesh: ${msg}\n`)
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
