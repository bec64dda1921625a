// The `age` baseline of bench/data.bench.ts's drops (issue 18): Debian's `age`
// sealing the same file to an X25519 recipient (`age -r`) and opening it
// (`age -d -i`), each followed by `sync FILE`, since keymesh fsyncs its output and
// age does not. Installed with apt-get when missing and we are root, as the tunnel
// bench does stunnel; otherwise the rows are left out with the reason.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

import { commandPath, ensureDebianPackage } from './apt.js'
import { timedCommand, type CliRun } from './data-drop.js'

/** The age binaries, installing Debian's age first when they are missing and we are root; throws saying how otherwise. */
export function ensureAge(log: (line: string) => void): { age: string; keygen: string } {
  return ensureDebianPackage('age', () => {
    const [age, keygen] = [commandPath('age'), commandPath('age-keygen')]
    return age !== undefined && keygen !== undefined ? { age, keygen } : undefined
  }, log)
}

/** Both runs' time added; the peak RSS is the larger. */
function plus(a: CliRun, b: CliRun): CliRun {
  return { secs: a.secs + b.secs, peakRss: Math.max(a.peakRss, b.peakRss), code: a.code !== 0 ? a.code : b.code, stderr: `${a.stderr}${b.stderr}` }
}

/** Seals `input` with `age -r` then syncs, opens it with `age -d` then syncs; removes what it wrote. */
export async function ageRun(bins: { age: string; keygen: string }, dir: string, input: string, timeoutMs: number): Promise<{ seal: CliRun; open: CliRun }> {
  const identity = join(dir, 'age.key')
  const made = spawnSync(bins.keygen, ['-o', identity], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`age-keygen exited ${made.status}: ${made.stderr}`)
  const recipient = /age1[0-9a-z]+/.exec(`${made.stderr}${made.stdout}`)?.[0]
  if (recipient === undefined) throw new Error('age-keygen printed no recipient')
  const sealed = join(dir, 'age.sealed')
  const opened = join(dir, 'age.opened')
  const seal = plus(await timedCommand(bins.age, ['-r', recipient, '-o', sealed, input], timeoutMs), await timedCommand('sync', [sealed], timeoutMs))
  if (seal.code !== 0) throw new Error(`age -r exited ${seal.code}: ${seal.stderr}`)
  const open = plus(await timedCommand(bins.age, ['-d', '-i', identity, '-o', opened, sealed], timeoutMs), await timedCommand('sync', [opened], timeoutMs))
  if (open.code !== 0) throw new Error(`age -d exited ${open.code}: ${open.stderr}`)
  spawnSync('rm', ['-f', sealed, opened, identity])
  return { seal, open }
}
