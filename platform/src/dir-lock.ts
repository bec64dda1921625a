// One process per data or state directory. Two control planes on one directory
// would run two schedulers over one store and race on first-start files; two agents
// on one state directory would share an identity and interleave one usage spool.
// Both are mistakes to refuse with a clear message. The lock
// is a file holding the owner's pid: a lock left by a process that died (kill -9)
// names a pid that no longer runs, and the next start takes it over.
import { openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'

export interface DirLock {
  release(): void
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: the pid runs, under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export interface LockOptions {
  /** The lock file's name inside the directory. */
  readonly file: string
  /** Who holds it, for the message: 'control plane', 'agent'. */
  readonly owner: string
  /** Builds the caller's typed error. */
  readonly error: (detail: string, cause?: unknown) => Error
}

export function lockDir(dir: string, o: LockOptions): DirLock {
  const path = join(dir, o.file)
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number
    try {
      fd = openSync(path, 'wx', 0o600)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw o.error(`cannot create ${path}`, e)
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10)
      if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
        throw o.error(`${dir} is in use by another ${o.owner} (pid ${pid}); stop it or choose another directory`)
      }
      rmSync(path, { force: true })
      continue
    }
    writeSync(fd, `${process.pid}\n`)
    closeSync(fd)
    let held = true
    return {
      release() {
        if (held) rmSync(path, { force: true })
        held = false
      },
    }
  }
  throw o.error(`${dir}: another ${o.owner} is starting at the same moment`)
}
