// Runs the keymesh CLI in-process with captured output and an empty environment,
// so CLI tests see exactly what a user would on stdout and stderr, and the exit code.
import { main, type CliContext } from '../../cli/index.js'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { repoRoot } from './paths.js'

export interface CliRun {
  readonly code: number
  readonly out: string
  readonly err: string
}

export async function runCli(argv: string[], env: Readonly<Record<string, string>> = {}): Promise<CliRun> {
  let out = ''
  let err = ''
  const code = await main(argv, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env })
  return { code, out, err }
}


/**
 * Runs the installed command (bin/keymesh.js, the compiled CLI) in a child process and
 * returns its standard output: yargs prints help to the process's stdout and exits.
 */
export function cliChild(argv: readonly string[], env: Readonly<Record<string, string>> = {}): string {
  return execFileSync(process.execPath, [join(repoRoot(), 'bin', 'keymesh.js'), ...argv], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  })
}

/** A CLI context for calling a command's pieces directly: no output, an empty environment. */
export function cliContext(over: Partial<CliContext> = {}): CliContext {
  return {
    stdout: { write: () => true },
    stderr: { write: () => true },
    env: {},
    exitCode: 0,
    stopSignal: new Promise<string>(() => {}),
    forgetEnv: () => {},
    ...over,
  }
}
