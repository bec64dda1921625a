// The CLI stays light: printing help, or a command that makes one HTTP request,
// loads no server, no database driver, no logger and no PKCS#11 addon; the entries of control-plane
// and agent export what would as functions that load it on first call.
//
// Each run is a child process (yargs prints help and exits, and a module once
// loaded stays loaded) that lists, as it exits, the packages in require.cache:
// the heavy ones are CommonJS, which Node loads through that cache even when ESM
// imports them. The first test shows that the probe does see them.
import { execFile, spawnSync } from 'node:child_process'
import { chmodSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
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
  t.same(heavyLoaded(dir, join(repoRoot(), 'dist', 'control-plane', 'src', 'app.js')), ['prom-client', 'ws'])
})

t.test('help and a one-request command load none of pg, ws, prom-client, better-sqlite3, pino or pkcs11js', async (t) => {
  const dir = t.testdir({ 'probe.mjs': PROBE })
  const bin = join(repoRoot(), 'bin', 'keymesh.js')
  for (const args of [['--help'], ['key', 'list', '--help'], ['key', 'list'], ['control-plane', '--help'], ['agent', '--help'], ['drop', 'seal', '--help']]) {
    t.same(heavyLoaded(dir, bin, args), [], `keymesh ${args.join(' ')}`)
  }
})

// ESM modules are not in require.cache: a loader hook lists every module loaded, and
// node's own list says whether its fetch implementation (undici) was.
const HOOKS = `
import { writeSync } from 'node:fs'
export async function load(url, context, next) {
  writeSync(2, 'LOADED-MODULE ' + url + '\\n')
  return next(url, context)
}
`
const REGISTER = `
import { register } from 'node:module'
import { writeSync } from 'node:fs'
register('./hooks.mjs', import.meta.url)
process.on('exit', () => {
  if (process.moduleLoadList.some((m) => m.includes('undici'))) writeSync(2, 'LOADED-MODULE node:undici\\n')
})
`

function loadedModules(dir: string, args: string[]): string[] {
  const env = probeEnv()
  const r = spawnSync(process.execPath, ['--import', join(dir, 'register.mjs'), join(repoRoot(), 'bin', 'keymesh.js'), ...args], { encoding: 'utf8', env })
  return [...r.stderr.matchAll(/^LOADED-MODULE (\S+)$/gm)].map((m) => m[1] as string)
}

function commandModules(dir: string, args: string[]): string[] {
  return loadedModules(dir, args).flatMap((url) => /\/dist\/cli\/commands\/([^/]+)\.js$/.exec(url)?.[1] ?? []).sort()
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

t.test('keymesh key list, answered, loads its command and the light entries: no package index, no yargs, no fetch', async (t) => {
  const dir = t.testdir({ 'hooks.mjs': HOOKS, 'register.mjs': REGISTER, 'admin.token': 'tok' })
  chmodSync(join(dir, 'admin.token'), 0o600)
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [{ name: 'orders', type: 'aead', primaryVersion: 1, minDecryptVersion: 1, rotationPeriodMs: null, nextRotationAt: null, createdAt: 0, versions: [] }] })))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  // The server answers in this process, so the child runs without blocking it.
  const env: NodeJS.ProcessEnv = { ...process.env, KEYMESH_CP: url, KEYMESH_TOKEN_FILE: join(dir, 'admin.token') }
  const r = await promisify(execFile)(process.execPath, ['--import', join(dir, 'register.mjs'), join(repoRoot(), 'bin', 'keymesh.js'), 'key', 'list'], { encoding: 'utf8', env })
  t.match(r.stdout, /^NAME .*\norders /, 'it listed')
  const urls = [...r.stderr.matchAll(/^LOADED-MODULE (\S+)$/gm)].map((m) => m[1] as string)
  const ours = urls.flatMap((u) => /\/dist\/(.+)$/.exec(u)?.[1] ?? [])
  t.ok(ours.includes('cli/commands/key.js') && ours.includes('control-plane/src/errors.js'), `ours: ${ours.join(' ')}`)
  t.same(ours.filter((p) => p.endsWith('/index.js')), [], 'no package index (control-plane/src/index.js would load fastify\'s code and the store)')
  t.same(urls.filter((u) => u.includes('/node_modules/')).map((u) => u.replace(/.*\/node_modules\//, '')), [], 'no package: not yargs, fastify or better-sqlite3')
  t.notOk(urls.includes('node:undici'), 'no fetch implementation (Response, Headers)')
})
