// Where the repository is, whether a test runs from its .ts source or from the
// compiled copy under dist/.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let cached: string | undefined

/** The repository root: the nearest folder above this file with the project's package.json. */
export function repoRoot(): string {
  if (cached !== undefined) return cached
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir)
    if (up === dir) throw new Error('no package.json above the test kit')
    dir = up
  }
  cached = dir
  return dir
}
