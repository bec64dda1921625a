// The keymesh CLI. Parses argv with yargs and dispatches to one module per
// command family; the packages never read process.argv or process.env themselves
// (configuration is merged here, at the edge, and handed down).
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
import { rekeyCommand, sealCommand, unsealCommand } from './commands/custody.js'

export interface MainIo {
  readonly stdout?: { write(s: string): unknown }
  readonly stderr?: { write(s: string): unknown }
  readonly env?: Env
  /** Resolves with a signal name when a long-running command should stop. */
  readonly stopSignal?: Promise<string>
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
    .option('cp', { type: 'string', global: true, describe: 'Control plane URL, e.g. http://127.0.0.1:7400 (env KEYMESH_CP)' })
    .option('token-file', { type: 'string', global: true, describe: 'File holding an operator token (env KEYMESH_TOKEN_FILE)' })
    .option('json', { type: 'boolean', global: true, describe: 'Print JSON for scripts instead of a table' })
    .option('debug', { type: 'boolean', global: true, hidden: true, describe: 'Print stack traces of unexpected errors' })
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
    .command(unsealCommand(ctx))
    .command(sealCommand(ctx))
    .command(rekeyCommand(ctx))
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
