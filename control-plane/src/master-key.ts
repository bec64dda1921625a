// Master key files: 32 raw bytes or base64 text of 32 bytes, mode 0600 (custody/
// provider.ts decides which file or variable holds the key an installation needs;
// this module never reads process.env). MASTER_KEY_FILE is where installations from
// before key custody kept theirs, in the data directory.
// A key file readable or writable by group or others is refused: the master key
// opens everything, so a lax mode is a mistake worth stopping for. Errors name
// the path and the mode, never the contents.
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'

import { nodeRandom } from '../../protocol/src/index.js'
import type { RandomSource } from '../../protocol/src/index.js'
import { cpError } from './errors.js'
import { MASTER_KEY_BYTES } from './seal.js'

export const MASTER_KEY_FILE = 'master.key'

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** Decodes strict base64 (standard alphabet, whitespace around it allowed) of exactly 32 bytes. */
export function decodeMasterKeyText(text: string, where: string): Uint8Array {
  const t = text.trim()
  if (!BASE64.test(t) || t.length % 4 !== 0) throw cpError('CP_ERR_MASTER_KEY', `${where}: not base64`)
  const key = new Uint8Array(Buffer.from(t, 'base64'))
  if (key.length !== MASTER_KEY_BYTES) {
    key.fill(0)
    throw cpError('CP_ERR_MASTER_KEY', `${where}: decodes to ${key.length} bytes, need ${MASTER_KEY_BYTES}`)
  }
  return key
}

function fsCall<T>(path: string, f: () => T): T {
  try {
    return f()
  } catch (cause) {
    throw cpError('CP_ERR_MASTER_KEY', `cannot read ${path}`, { cause })
  }
}

/** Reads a key file after checking that only its owner can read it. */
export function readMasterKeyFile(path: string): Uint8Array {
  const st = fsCall(path, () => statSync(path))
  if (!st.isFile()) throw cpError('CP_ERR_MASTER_KEY', `${path} is not a regular file`)
  const mode = st.mode & 0o777
  if ((mode & 0o077) !== 0) {
    throw cpError(
      'CP_ERR_MASTER_KEY',
      `${path} has mode ${mode.toString(8).padStart(4, '0')}; it must not be accessible by group or others (chmod 600 ${path})`,
    )
  }
  const bytes = fsCall(path, () => readFileSync(path))
  try {
    if (bytes.length === MASTER_KEY_BYTES) return new Uint8Array(bytes)
    const text = bytes.toString('latin1')
    // Raw bytes of the wrong length are not "not base64": say what they are.
    if (!BASE64.test(text.trim())) throw cpError('CP_ERR_MASTER_KEY', `${path}: holds ${bytes.length} raw bytes, need ${MASTER_KEY_BYTES} (or base64 text of ${MASTER_KEY_BYTES} bytes)`)
    return decodeMasterKeyText(text, path)
  } finally {
    bytes.fill(0)
  }
}

/**
 * Writes a new random key to `path` (0600) without ever exposing a partial file
 * or replacing an existing one: temp file, fsync, then link() into place, which
 * fails if the name exists (a rename would silently overwrite a key that other
 * data is sealed under). Returns null when another process created it first.
 */
export function createMasterKeyFile(path: string, dir: string, random: RandomSource = nodeRandom): Uint8Array | null {
  const key = new Uint8Array(random(MASTER_KEY_BYTES))
  if (key.length !== MASTER_KEY_BYTES) throw cpError('CP_ERR_MASTER_KEY', 'random source returned the wrong length')
  const tmp = join(dir, `.${MASTER_KEY_FILE}.${process.pid}.${Date.now()}.tmp`)
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    writeSync(fd, key)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    linkSync(tmp, path)
  } catch (e) {
    key.fill(0)
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null
    throw cpError('CP_ERR_MASTER_KEY', `cannot create ${path}`, { cause: e })
  } finally {
    unlinkSync(tmp)
  }
  // The directory entry must reach the disk too, or a crash could lose the key
  // while data sealed under it survives.
  const dfd = openSync(dir, 'r')
  try {
    fsyncSync(dfd)
  } finally {
    closeSync(dfd)
  }
  return key
}
