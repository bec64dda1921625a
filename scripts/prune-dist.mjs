// Removes compiled files under dist/ whose TypeScript source is gone, before tsc -b.
// tsc -b builds incrementally and never deletes: without this, a test file that was
// renamed or removed would still run from its stale copy in dist/.
// dist/ mirrors the tree (dist/agent/src/x.js comes from agent/src/x.ts), so the
// source of a compiled file is its path under dist/ with .ts for the JavaScript ending.
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
const OUTPUT = /(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/

function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) walk(path)
    else if (OUTPUT.test(entry.name)) {
      const source = join(root, relative(dist, path).replace(OUTPUT, '.ts'))
      if (!existsSync(source)) rmSync(path)
    }
  }
}

if (existsSync(dist)) walk(dist)
