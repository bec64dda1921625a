// Small durable-file helpers for the data directory. A file is either absent or
// complete: written to a temporary name, fsync'd, renamed into place, and the
// directory fsync'd so the new name survives a crash.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Replaces `path` with `data` atomically, created with `mode` (the mode is set before any byte is written). */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`)
  const fd = openSync(tmp, 'wx', mode)
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    let off = 0
    while (off < bytes.length) off += writeSync(fd, bytes, off)
    fsyncSync(fd)
  } catch (e) {
    closeSync(fd)
    rmSync(tmp, { force: true })
    throw e
  }
  closeSync(fd)
  renameSync(tmp, path)
  fsyncDir(dir)
}

/**
 * writeFileAtomic without blocking the event loop: the same steps (temporary file
 * created with `mode`, written, fsync'd, renamed into place, directory fsync'd), each
 * on the thread pool. For writers that share their loop with live traffic.
 */
export async function writeFileAtomicAsync(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`)
  const file = await open(tmp, 'wx', mode)
  try {
    await file.writeFile(typeof data === 'string' ? Buffer.from(data) : data)
    await file.sync()
  } catch (e) {
    await file.close()
    await rm(tmp, { force: true })
    throw e
  }
  await file.close()
  await rename(tmp, path)
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

/**
 * Why a secret file (a token file the operator names) may not be used: its mode lets
 * the group or others read or write it. Undefined when it is 0600 or stricter, and
 * when it cannot be examined (the read that follows or came before says why).
 */
export function looseSecretFile(path: string): string | undefined {
  let mode: number
  try {
    mode = statSync(path).mode
  } catch {
    return undefined
  }
  if ((mode & 0o077) === 0) return undefined
  return `${path} is readable or writable by other users (mode 0${(mode & 0o777).toString(8)}); run chmod 600 ${path}`
}
