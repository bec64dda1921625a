// The Debian packages benches need beside keymesh (stunnel4 for the tunnel bench, age for
// the drops, faketime for the faults' clock step): found where they are, or installed
// with apt-get when this process is root, saying so; otherwise an error that says how.
import { spawnSync } from 'node:child_process'

/** Where `name` is on PATH, or undefined. */
export function commandPath(name: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined
}

/**
 * What `found` finds, installing Debian's `pkg` first when it finds nothing and this
 * process is root (apt-get install; apt-get update and again when the index is stale).
 * Throws saying how to install it otherwise, or why installing failed.
 */
export function ensureDebianPackage<T>(pkg: string, found: () => T | undefined, log: (line: string) => void): T {
  const there = found()
  if (there !== undefined) return there
  if (process.getuid?.() !== 0) throw new Error(`${pkg} is not installed: run \`sudo apt-get install ${pkg}\` (Debian/Ubuntu) and run this again`)
  log(`${pkg} is not installed: installing Debian's ${pkg} with apt-get (as root)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () => spawnSync('apt-get', ['install', '-y', '-qq', pkg], { encoding: 'utf8', env, timeout: 300_000 })
  let r = install()
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 180_000 })
    r = install()
  }
  const after = found()
  if (after === undefined) throw new Error(`installing ${pkg} failed (apt-get exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`)
  return after
}
