// What every CLI command is handed: where to write, the environment (read once in
// main.ts, never inside a command), and the exit code it leaves behind. Commands
// run through `run()`, which turns errors into one line on stderr and an exit code.
import { createClient, type ClientFlags, type ControlPlaneClient, type Env } from './client.js'
import { printResult, runCommand, type Column, type Writable } from './output.js'

export interface CliContext {
  readonly stdout: Writable
  readonly stderr: Writable
  readonly env: Env
  /** Set by `run`; main() returns it. */
  exitCode: number
  /** Long-running commands (control-plane, agent) resolve it when they should stop. */
  readonly stopSignal: Promise<string>
  /**
   * Removes a secret variable from the environment once it has been read, so that no
   * child process inherits it and no later reader of process.env finds it. The kernel's
   * copy in /proc/PID/environ (readable by the same user and root) is not rewritten.
   */
  forgetEnv(name: string): void
}

/** Options every command accepts (declared once in main.ts). */
export interface GlobalArgs {
  readonly cp?: string | undefined
  readonly tokenFile?: string | undefined
  readonly caFile?: string | undefined
  readonly cpFingerprint?: string | undefined
  readonly json?: boolean | undefined
  readonly debug?: boolean | undefined
}

export async function run(ctx: CliContext, args: GlobalArgs, fn: () => Promise<number | void>): Promise<void> {
  ctx.exitCode = await runCommand(fn, { debug: args.debug === true, stderr: ctx.stderr })
}

export function connect(ctx: CliContext, args: GlobalArgs, requireToken = true): Promise<ControlPlaneClient> {
  return createClient(clientFlags(args), ctx.env, { requireToken })
}

/** The global options that say where the control plane is and how to trust it. */
export function clientFlags(args: GlobalArgs): ClientFlags {
  return { cp: args.cp, tokenFile: args.tokenFile, caFile: args.caFile, cpFingerprint: args.cpFingerprint }
}

/** Prints JSON with --json, else a table (arrays) or key: value lines (objects). */
export function print(ctx: CliContext, args: GlobalArgs, value: unknown, columns?: readonly Column[]): void {
  printResult(ctx.stdout, value, { json: args.json === true, ...(columns ? { columns } : {}) })
}
