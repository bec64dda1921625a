// What every CLI command is handed: where to write, the environment (read once in
// main.ts, never inside a command), and the exit code it leaves behind. Commands
// run through `run()`, which turns errors into one line on stderr and an exit code.
import { createClient, DryRunAnswer, type ClientFlags, type ControlPlaneClient, type DryRunReport, type Env } from './client.js'
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
  /**
   * Asks the person at the terminal a yes/no question; absent when stdin is not a
   * TTY (scripts are never asked: a command then does what its flags say).
   */
  readonly confirm?: ((question: string) => Promise<boolean>) | undefined
}

/** Options every command accepts (declared once in main.ts). */
export interface GlobalArgs {
  readonly cp?: string | undefined
  readonly tokenFile?: string | undefined
  readonly caFile?: string | undefined
  readonly cpFingerprint?: string | undefined
  readonly json?: boolean | undefined
  readonly debug?: boolean | undefined
  /** Changing commands: show what would change and change nothing. */
  readonly dryRun?: boolean | undefined
}

export async function run(ctx: CliContext, args: GlobalArgs, fn: () => Promise<number | void>): Promise<void> {
  const rehearsed = async (): Promise<number | void> => {
    try {
      return await fn()
    } catch (err) {
      if (!(err instanceof DryRunAnswer)) throw err
      printDryRun(ctx, args, err.report)
    }
  }
  ctx.exitCode = await runCommand(rehearsed, { debug: args.debug === true, stderr: ctx.stderr })
}

export function connect(ctx: CliContext, args: GlobalArgs, requireToken = true): Promise<ControlPlaneClient> {
  return createClient(clientFlags(args), ctx.env, { requireToken, dryRun: args.dryRun === true })
}

/** The global options that say where the control plane is and how to trust it. */
export function clientFlags(args: GlobalArgs): ClientFlags {
  return { cp: args.cp, tokenFile: args.tokenFile, caFile: args.caFile, cpFingerprint: args.cpFingerprint }
}

/** `--dry-run`'s answer: JSON as received, or one line per operation and per affected pair. */
export function printDryRun(ctx: CliContext, args: GlobalArgs, report: DryRunReport): void {
  if (args.json) return print(ctx, args, report)
  const lines = ['dry run: nothing was changed']
  for (const c of report.changes) {
    lines.push(`would ${c.action} ${c.target}: ${c.reason}`)
    const effect = c.details['impact'] as { pairs?: { pairId: string; after: Record<string, boolean> | null; change: string }[]; agents?: number } | undefined
    for (const p of effect?.pairs ?? []) {
      const dirs = Object.entries(p.after ?? {}).filter(([, on]) => on).map(([d]) => d)
      lines.push(`  pair ${p.pairId}: allows ${dirs.length > 0 ? dirs.join(' ') : 'none'}; key ${p.change}`)
    }
    const services = [...new Set(c.notifications.flatMap((n) => n.services ?? []))]
    if (services.length > 0) lines.push(`  agents of ${services.join(', ')} would get new key sets${effect?.agents !== undefined ? ` (${effect.agents} enrolled)` : ''}`)
  }
  ctx.stdout.write(`${lines.join('\n')}\n`)
}

/** Prints JSON with --json, else a table (arrays) or key: value lines (objects). */
export function print(ctx: CliContext, args: GlobalArgs, value: unknown, columns?: readonly Column[]): void {
  printResult(ctx.stdout, value, { json: args.json === true, ...(columns ? { columns } : {}) })
}
