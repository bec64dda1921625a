// The CLI stays light: printing help, or a command that makes one HTTP request,
// loads no server, no database driver, no logger and no PKCS#11 addon; the entries of control-plane
// and agent export what would as functions that load it on first call.
//
// Each run is a child process (yargs prints help and exits, and a module once
// loaded stays loaded) that lists, as it exits, the packages in require.cache:
// the heavy ones are CommonJS, which Node loads through that cache even when ESM
// imports them. The first test shows that the probe does see them.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'

import { repoRoot } from '../kit/paths.js'

const HEAVY = ['pg', 'ws', 'prom-client', 'better-sqlite3', 'pino', 'pkcs11js']

const PROBE = `
import { createRequire } from 'node:module'
import { writeSync } from 'node:fs'
const require = createRequire(import.meta.url)
process.on('exit', () => {
  const packages = new Set(Object.keys(require.cache).map((f) => /node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)[\\\\/]/.exec(f)?.[1]).filter(Boolean))
  writeSync(2, '\\nLOADED ' + JSON.stringify([...packages]) + '\\n')
})
await import(process.env.PROBE_TARGET)
`

// A probe only lists modules: it runs without tap's coverage hooks (NODE_OPTIONS
// and NODE_V8_COVERAGE), which cost each child a loader thread and a coverage
// dump, and cover nothing the in-process tests do not.
function probeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYMESH_CP: 'http://127.0.0.1:9' }
  delete env.NODE_OPTIONS
  delete env.NODE_V8_COVERAGE
  return env
}

function heavyLoaded(dir: string, target: string, args: string[] = []): string[] {
  const env: NodeJS.ProcessEnv = { ...probeEnv(), PROBE_TARGET: target }
  for (const name of Object.keys(env)) if (name.startsWith('KEYMESH_') && name !== 'KEYMESH_CP') delete env[name]
  const r = spawnSync(process.execPath, [join(dir, 'probe.mjs'), ...args], { encoding: 'utf8', env })
  const line = /\nLOADED (.*)\n/.exec(r.stderr)
  if (!line) throw new Error(`the probe printed no list: ${r.stderr}`)
  return (JSON.parse(line[1] as string) as string[]).filter((p) => HEAVY.includes(p)).sort()
}

t.test('the probe sees the heavy packages the control plane loads', async (t) => {
  const dir = t.testdir({ 'probe.mjs': PROBE })
  t.same(heavyLoaded(dir, join(repoRoot(), 'dist', 'control-plane', 'src', 'app.js')), ['pg', 'prom-client', 'ws'])
})

t.test('help and a one-request command load none of pg, ws, prom-client, better-sqlite3, pino or pkcs11js', async (t) => {
  const dir = t.testdir({ 'probe.mjs': PROBE })
  const bin = join(repoRoot(), 'bin', 'keymesh.js')
  for (const args of [['--help'], ['key', 'list', '--help'], ['key', 'list'], ['control-plane', '--help'], ['agent', '--help'], ['drop', 'seal', '--help']]) {
    t.same(heavyLoaded(dir, bin, args), [], `keymesh ${args.join(' ')}`)
  }
})

// ESM modules are not in require.cache: a loader hook lists the command modules loaded.
const HOOKS = `
import { writeSync } from 'node:fs'
export async function load(url, context, next) {
  const m = /\\/dist\\/cli\\/commands\\/([^/]+)\\.js$/.exec(url)
  if (m) writeSync(2, 'COMMAND-MODULE ' + m[1] + '\\n')
  return next(url, context)
}
`
const REGISTER = `
import { register } from 'node:module'
register('./hooks.mjs', import.meta.url)
`

function commandModules(dir: string, args: string[]): string[] {
  const env = probeEnv()
  const r = spawnSync(process.execPath, ['--import', join(dir, 'register.mjs'), join(repoRoot(), 'bin', 'keymesh.js'), ...args], { encoding: 'utf8', env })
  return [...r.stderr.matchAll(/^COMMAND-MODULE (\S+)$/gm)].map((m) => m[1] as string).sort()
}

t.test('a command loads its own module and no other command\'s; help and a typo load them all', async (t) => {
  const dir = t.testdir({ 'hooks.mjs': HOOKS, 'register.mjs': REGISTER })
  t.same(commandModules(dir, ['key', 'list']), ['key'])
  t.same(commandModules(dir, ['--cp', 'http://127.0.0.1:9', 'agents', 'list']), ['agents'])
  t.same(commandModules(dir, ['agent', 'status', '--api', '127.0.0.1:9']), ['agent'])
  const all = commandModules(dir, ['--help'])
  t.ok(all.length >= 11 && all.includes('drop') && all.includes('store'), `--help: ${all.join(' ')}`)
  t.same(commandModules(dir, ['keyz']), all)
})
