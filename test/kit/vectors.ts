// Locates the shared known-answer vectors (../shared/vectors from the project root).
// A fresh clone may not have them: tests then skip with a message that says so.
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { repoRoot } from './paths.js'

const root = repoRoot()

export const VECTORS_DIR = process.env.KEYMESH_VECTORS_DIR ?? resolve(root, '..', 'shared', 'vectors')

/** Parsed JSON of a vector file, or a skip reason when it is not there. */
export function loadVectors<T = unknown>(relPath: string): { data: T } | { skip: string } {
  const file = join(VECTORS_DIR, relPath)
  if (!existsSync(file)) {
    return { skip: `known-answer vectors not found at ${file}: run from a checkout beside shared/vectors (CI has them)` }
  }
  return { data: JSON.parse(readFileSync(file, 'utf8')) as T }
}

export const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
