// One control plane per data directory. Two on one directory would run two
// schedulers over one store and race on first-start files; SQLite would keep the
// data consistent, but it is a mistake to refuse with a clear message. The lock
// is a file holding the owner's pid: a lock left by a process that died (kill -9)
// names a pid that no longer runs, and the next start takes it over.
import { openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'

import { cpError } from './errors.js'

export const LOCK_FILE = 'control-plane.lock'

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

export function lockDataDir(dataDir: string): DirLock {
  const path = join(dataDir, LOCK_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number
    try {
      fd = openSync(path, 'wx', 0o600)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw cpError('CP_ERR_DATA_DIR', `cannot create ${path}`, { cause: e })
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10)
      if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
        throw cpError('CP_ERR_DATA_DIR', `${dataDir} is in use by another control plane (pid ${pid}); stop it or choose another --data-dir`)
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
  throw cpError('CP_ERR_DATA_DIR', `${dataDir}: another control plane is starting at the same moment`)
}
