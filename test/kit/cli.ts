// Runs the keymesh CLI in-process with captured output and an empty environment,
// so CLI tests see exactly what a user would on stdout and stderr, and the exit code.
import { main } from '../../cli/index.js'

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

