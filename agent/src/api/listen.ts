// Binding the local API: TCP, or a unix socket that only this user can open.
//
// A unix socket is bound inside a fresh 0700 directory, set to 0600 there and
// only then renamed into place, so there is no moment at which another local
// user could connect to it (the socket's mode would otherwise start from the
// umask). The directory holding the socket must not be world-writable (not
// even /tmp with its sticky bit): there another user could take the name
// first, or (without the sticky bit) swap our socket for theirs and receive
// what services send to the agent. A file already at the path is removed only when it is a socket that
// nothing answers on (left by an agent that died); a live socket or any other
// kind of file is AGENT_ERR_LISTEN, never deleted.
import { chmodSync, lstatSync, mkdtempSync, renameSync, rmdirSync, statSync, unlinkSync } from 'node:fs'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import { dirname, join } from 'node:path'

import { formatHostPort, type HostPort } from '../config.js'
import { agentError } from '../errors.js'

const MAX_SUN_PATH = 107

export interface UnixBinding {
  readonly path: string
  /** The inode bound, so close() removes the path only while it is still this socket. */
  readonly ino: number
}

export async function listenTcp(server: Server, at: HostPort): Promise<HostPort> {
  try {
    await bind(server, { host: at.host, port: at.port })
  } catch (err) {
    throw agentError('AGENT_ERR_LISTEN', `API on ${formatHostPort(at)}: ${errCode(err)}`, { cause: err })
  }
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw agentError('AGENT_ERR_LISTEN', 'API listener has no TCP address')
  return { host: addr.address, port: addr.port }
}

export async function listenUnix(server: Server, path: string): Promise<UnixBinding> {
  checkSocketDir(dirname(path))
  await removeStaleSocket(path)
  let dir: string
  try {
    dir = mkdtempSync(join(dirname(path), '.km'))
  } catch (err) {
    throw agentError('AGENT_ERR_LISTEN', `API socket ${path}: cannot create a directory beside it (${errCode(err)})`, { cause: err })
  }
  const tmp = join(dir, 's')
  try {
    // Past sun_path's 107 bytes, Linux would bind a truncated name (or fail obscurely).
    if (Buffer.byteLength(tmp) > MAX_SUN_PATH) throw Object.assign(new Error('path too long'), { code: `path too long (at most ${MAX_SUN_PATH - 10} bytes)` })
    await bind(server, { path: tmp })
    chmodSync(tmp, 0o600)
    renameSync(tmp, path)
    return { path, ino: statSync(path).ino }
  } catch (err) {
    if (server.listening) server.close()
    throw agentError('AGENT_ERR_LISTEN', `API socket ${path}: ${errCode(err)}`, { cause: err })
  } finally {
    try { unlinkSync(tmp) } catch { /* renamed away, or never bound */ }
    try { rmdirSync(dir) } catch { /* best effort: an empty 0700 directory is harmless */ }
  }
}

function checkSocketDir(dir: string): void {
  let mode: number
  try {
    mode = statSync(dir).mode
  } catch (err) {
    throw agentError('AGENT_ERR_LISTEN', `API socket directory ${dir}: ${errCode(err)}`, { cause: err })
  }
  if ((mode & 0o002) !== 0) {
    throw agentError('AGENT_ERR_LISTEN', `API socket directory ${dir} is world-writable; put the socket in a directory only the agent's user can write, e.g. the state directory`)
  }
}

/** Removes the socket file at close, unless something else has since taken the path. */
export function unlinkOwnSocket(binding: UnixBinding): void {
  try {
    if (lstatSync(binding.path).ino === binding.ino) unlinkSync(binding.path)
  } catch { /* already gone */ }
}

async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw agentError('AGENT_ERR_LISTEN', `API socket ${path}: ${errCode(err)}`, { cause: err })
  }
  if (!isSocket) throw agentError('AGENT_ERR_LISTEN', `API socket ${path}: the path exists and is not a socket; it is left alone`)
  const live = await new Promise<boolean | string>((resolve) => {
    const probe = connect({ path })
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? false : errCode(err)))
  })
  if (live === true) throw agentError('AGENT_ERR_LISTEN', `API socket ${path}: another process is listening on it`)
  if (typeof live === 'string') throw agentError('AGENT_ERR_LISTEN', `API socket ${path}: cannot check the existing socket (${live})`)
  unlinkSync(path)
}

function bind(server: Server, options: { host: string; port: number } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(options, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'failed'
}
