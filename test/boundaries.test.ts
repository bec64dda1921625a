// The package graph of DESIGN.md, enforced. tsc -b already refuses an import of a
// project that is not referenced (an edge the graph forbids); this test refuses the
// rest: a path into another package's internals instead of its entry, an edge the
// graph forbids even where a project reference would allow it, and a bench or script
// that leans on test files other than the kit.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { repoRoot } from './kit/paths.js'
import { specifiers } from './kit/source-scan.js'

/** Where each package's sources live, relative to the repository root. */
export const PACKAGE_DIRS = {
  protocol: 'protocol/src',
  platform: 'platform/src',
  'control-plane': 'control-plane/src',
  agent: 'agent/src',
  cli: 'cli',
} as const
type Pkg = keyof typeof PACKAGE_DIRS

/** Which packages each package may import (through their entries). */
export const ALLOWED: Record<Pkg, readonly Pkg[]> = {
  protocol: [],
  platform: [],
  'control-plane': ['protocol', 'platform'],
  agent: ['protocol', 'platform'],
  cli: ['protocol', 'platform', 'control-plane', 'agent'],
}

/**
 * Light entries: besides its index, a package offers a few small modules that others may
 * import directly, so that a short CLI command (`keymesh key list`) loads its error table and
 * TLS client rather than the whole package (test/cli/light.test.ts). Each imports nothing of
 * ours but other light entries (checked below), so reaching one never loads an index.
 */
export const LIGHT_ENTRIES: readonly string[] = [
  'protocol/src/errors.ts',
  'platform/src/files.ts',
  'platform/src/tls-client.ts',
  'control-plane/src/errors.ts',
]

const PKGS = Object.keys(PACKAGE_DIRS) as Pkg[]
const entryOf = (p: Pkg): string => `${PACKAGE_DIRS[p]}/index.ts`

function packageOf(file: string): Pkg | undefined {
  return PKGS.find((p) => file.startsWith(PACKAGE_DIRS[p] + '/'))
}

/** The kind of place a file is, for the rules: a package, a test of a package, the kit, … */
function placeOf(file: string): { kind: 'package' | 'test' | 'kit' | 'bench' | 'script'; pkg?: Pkg } {
  const pkg = packageOf(file)
  if (pkg) return { kind: 'package', pkg }
  if (file.startsWith('test/kit/')) return { kind: 'kit' }
  const m = /^test\/([^/]+)\//.exec(file)
  if (m) return { kind: 'test', pkg: PKGS.find((p) => p === m[1]) }
  if (file.startsWith('bench/')) return { kind: 'bench' }
  return { kind: 'script' }
}

/**
 * Why an import from `from` to `to` (both repository-relative .ts paths) breaks the
 * rules, or undefined when it keeps them.
 */
export function violation(from: string, to: string): string | undefined {
  const place = placeOf(from)
  const target = packageOf(to)
  if (target) {
    if (place.kind === 'package' && place.pkg === target) return undefined
    if (place.kind === 'test' && place.pkg === target) return undefined // a package's own tests see its internals
    if (place.kind === 'package' && !ALLOWED[place.pkg as Pkg].includes(target)) return `${place.pkg} may not import ${target}`
    if (to !== entryOf(target) && !LIGHT_ENTRIES.includes(to)) return `reaches into ${target}'s internals; import ${entryOf(target)}`
    return undefined
  }
  if (to.startsWith('test/')) {
    if (place.kind === 'package') return `${place.pkg} may not import test files`
    if ((place.kind === 'bench' || place.kind === 'script') && !to.startsWith('test/kit/')) return 'benches and scripts import only the test kit'
    if (place.kind === 'kit' && !to.startsWith('test/kit/')) return 'the kit imports no test'
  }
  if (to.startsWith('bench/') && place.kind !== 'bench') return 'only benches import bench files'
  return undefined
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.name === 'node_modules' || d.name === 'dist' || d.name.startsWith('.')
      ? []
      : d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [join(dir, d.name)] : [],
  )
}

const root = repoRoot()

t.test('the rules refuse deep and forbidden imports and allow the entries', async (t) => {
  t.equal(violation('agent/src/tunnel/dial.ts', 'protocol/src/index.ts'), undefined)
  t.match(violation('agent/src/tunnel/dial.ts', 'protocol/src/record.ts'), /internals/)
  t.match(violation('agent/src/agent.ts', 'control-plane/src/index.ts'), /may not import control-plane/)
  t.match(violation('protocol/src/record.ts', 'platform/src/index.ts'), /may not import platform/)
  t.equal(violation('test/agent/keyset.test.ts', 'agent/src/keyset.ts'), undefined)
  t.match(violation('test/agent/keyset.test.ts', 'control-plane/src/store/index.ts'), /internals/)
  t.match(violation('bench/cp.bench.ts', 'test/agent/keyset.test.ts'), /only the test kit/)
  t.equal(violation('bench/cp.bench.ts', 'test/kit/index.ts'), undefined)
  t.match(violation('test/kit/cp.ts', 'test/agent/x.test.ts'), /kit imports no test/)
  t.match(violation('cli/main.ts', 'test/kit/index.ts'), /may not import test/)
  t.equal(violation('cli/client.ts', 'control-plane/src/errors.ts'), undefined, 'a light entry')
  t.match(violation('agent/src/agent.ts', 'control-plane/src/errors.ts'), /may not import control-plane/, 'a light entry keeps the graph')
})

t.test('every import in the tree keeps the package graph', async (t) => {
  const files = ['protocol', 'platform', 'control-plane', 'agent', 'cli', 'test', 'bench', 'scripts']
    .flatMap((d) => sources(join(root, d)))
  t.ok(files.length > 100, `read ${files.length} sources`)
  const broken: string[] = []
  for (const file of files) {
    const from = relative(root, file)
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue
      const to = relative(root, resolve(dirname(file), spec)).replace(/\.js$/, '.ts')
      const why = violation(from, to)
      if (why) broken.push(`${from} imports '${spec}': ${why}`)
    }
  }
  t.same(broken, [], 'no deep or forbidden import')
})

t.test('a light entry imports nothing of ours but other light entries', async (t) => {
  for (const entry of LIGHT_ENTRIES) {
    const heavy = specifiers(readFileSync(join(root, entry), 'utf8'))
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => relative(root, resolve(dirname(join(root, entry)), spec)).replace(/\.js$/, '.ts'))
      .filter((to) => !LIGHT_ENTRIES.includes(to))
    t.same(heavy, [], entry)
  }
})

t.test('each package has one entry', async (t) => {
  for (const p of PKGS) {
    t.doesNotThrow(() => readFileSync(join(root, entryOf(p))), `${entryOf(p)} exists`)
  }
})
