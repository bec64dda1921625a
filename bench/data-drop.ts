// The drop part of bench/data.bench.ts: `keymesh drop seal|open` run as a user runs
// it (node bin/keymesh.js, a child process, stderr piped so no progress line), timed
// from spawn to exit, with the child's peak RSS read from /proc/<pid>/status
// (VmHWM, the kernel's own high-water mark, polled until the child exits; the last
// reading before exit is the peak of the whole run).
import { spawn } from 'node:child_process'
import { open } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'

import { procMemory } from './measure.js'

export interface CliRun {
  readonly secs: number
  /** Peak resident set size in bytes (VmHWM), NaN when it could not be read. */
  readonly peakRss: number
  readonly code: number | null
  readonly stderr: string
}

function hwm(pid: number): number {
  try {
    return procMemory(pid).hwm
  } catch {
    return NaN // the child has just exited
  }
}

/** Runs `node bin args…` and measures it; `timeoutMs` kills a run that hangs. */
export function timedCli(bin: string, args: string[], timeoutMs: number): Promise<CliRun> {
  return timedCommand(process.execPath, [bin, ...args], timeoutMs)
}

/** Runs `command args…` (no shell) and measures it like timedCli. */
export async function timedCommand(command: string, args: string[], timeoutMs: number): Promise<CliRun> {
  const t0 = performance.now()
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString()
  })
  let peak = NaN
  let running = true
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    running = false
    resolve(code)
  }))
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const poll = (async () => {
    while (running && child.pid !== undefined) {
      const v = hwm(child.pid)
      if (Number.isFinite(v) && !(v <= peak)) peak = v
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  const code = await exited
  const secs = (performance.now() - t0) / 1000
  clearTimeout(killer)
  await poll
  return { secs, peakRss: peak, code, stderr: stderr.trim() }
}

/**
 * A sparse file of `bytes` zero bytes, read through once so that its pages are in
 * the page cache, as the drop that `drop open` reads is (it was just written).
 * Without that, the first read of a sparse file has the kernel allocate and zero
 * every page, and seal would be charged for it: measured, that alone cut seal's
 * figure by more than half on this machine.
 */
export async function sparseFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'wx+', 0o600)
  try {
    await fh.truncate(bytes)
    const buf = Buffer.allocUnsafe(1024 * 1024)
    let pos = 0
    while (pos < bytes) pos += (await fh.read(buf, 0, buf.length, pos)).bytesRead || bytes
  } finally {
    await fh.close()
  }
}
