// Custody kind "file" without --master-key-file: the development key. On a first
// start with no key given, the master key is made and written to
// KEYDIR/<installation>.key (0600), where KEYDIR is a per-user config directory the
// CLI works out ($KEYMESH_CONFIG_HOME, else $XDG_CONFIG_HOME/keymesh, else
// ~/.config/keymesh). Never in the data directory: a copy of that opens nothing.
// Named by installation, so one user's several development installations never
// share a key or overwrite one another's.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

import type { RandomSource } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import { createMasterKeyFile } from '../master-key.js'

export function devKeyPath(keyDir: string, installation: string): string {
  return join(keyDir, `${installation}.key`)
}

/** Makes the development key of a new installation; its path and bytes. */
export function createDevKey(keyDir: string, installation: string, random: RandomSource): { key: Uint8Array; path: string } {
  const path = devKeyPath(keyDir, installation)
  try {
    mkdirSync(keyDir, { recursive: true, mode: 0o700 })
  } catch (cause) {
    throw cpError('CP_ERR_MASTER_KEY', `cannot create the key directory ${keyDir}`, { cause })
  }
  const key = createMasterKeyFile(path, keyDir, random)
  // The installation id is fresh random: an existing file there is not ours to reuse.
  if (!key) throw cpError('CP_ERR_MASTER_KEY', `${path} exists already; remove it or choose another KEYMESH_CONFIG_HOME`)
  return { key, path }
}
