// Runs the keymesh CLI in-process with captured output and an empty environment,
// so CLI tests see exactly what a user would on stdout and stderr, and the exit code.
import { main, type CliContext } from '../../cli/index.js'
import { execFileSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { IDENTITY_PUB_FILE } from '../../control-plane/src/index.js'
import { startTestControlPlane, testKeyDir, type TestControlPlane } from './cp.js'
import { repoRoot } from './paths.js'
import { until } from './wait.js'

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

export interface CliControlPlane {
  /** What it wrote on stderr so far. */
  err(): string
  /** True once main() has returned (it should not have before stop()). */
  finished(): boolean
  /** Sends the stop signal; resolves with main()'s exit code. */
  stop(): Promise<number>
}

/**
 * `keymesh control-plane --listen 127.0.0.1:0 --data-dir DIR` run in-process through
 * main() with `env` as its whole environment; resolves once the control plane has
 * written DIR/identity.pub (or main() returned early, which the caller sees in finished()).
 */
export async function runControlPlaneCli(dir: string, env: Record<string, string>): Promise<CliControlPlane> {
  let signal: (sig: string) => void = () => {}
  const stopSignal = new Promise<string>((resolve) => (signal = resolve))
  let err = ''
  // A development key beside the data directory, never in the user's own config directory.
  env['KEYMESH_CONFIG_HOME'] ??= testKeyDir(dir)
  const exit = main(['control-plane', '--listen', '127.0.0.1:0', '--data-dir', dir, '--log-level', 'silent'], {
    stdout: { write: () => true },
    stderr: { write: (s: string) => (err += s) },
    env,
    stopSignal,
  })
  let finished = false
  void exit.finally(() => (finished = true))
  await until(() => finished || existsSync(join(dir, IDENTITY_PUB_FILE)), 'the control plane to start')
  return { err: () => err, finished: () => finished, stop: () => (signal('SIGTERM'), exit) }
}

export interface OperatorCliRun extends CliRun {
  json(): any
}

/**
 * A control plane in this process and the CLI pointed at it with its admin token (a
 * 0600 file in the control plane's data directory, the test's one fixture directory:
 * t.testdir() recreates it on every call, so outputs belong beside it too).
 */
export async function operatorCli(t: Parameters<typeof startTestControlPlane>[0]): Promise<{ tcp: TestControlPlane; dir: string; cli: (...argv: string[]) => Promise<OperatorCliRun> }> {
  const tcp = await startTestControlPlane(t)
  const dir = tcp.dataDir
  const tokenFile = join(dir, 'cli.token')
  writeFileSync(tokenFile, tcp.adminToken, { mode: 0o600 })
  const cli = async (...argv: string[]): Promise<OperatorCliRun> => {
    const r = await runCli([...argv, '--cp', tcp.cp.url, '--token-file', tokenFile])
    return { ...r, json: () => JSON.parse(r.out) }
  }
  return { tcp, dir, cli }
}
