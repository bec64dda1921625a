// The README's first hour, the parts a unit test can hold it to (issue 14's findings):
// its commands run the installed bin, never through npx (which reinstalls the checkout
// and leaves a daemon's node process behind its own PID); a daemon started as it shows
// stops with its PID and gives its state directory back; the files the Quickstart
// writes in the checkout are ignored by git.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

import { startTestControlPlane } from '../kit/cp.js'
import { repoRoot } from '../kit/paths.js'
import { until } from '../kit/wait.js'

const root = repoRoot()
const readme = readFileSync(join(root, 'README.md'), 'utf8')
/** The shell lines of the README's ```sh blocks. */
const shellLines = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => (m[1] as string).split('\n'))

t.test('the README runs keymesh from the installed bin, never through npx', async (t) => {
  t.ok(shellLines.filter((l) => /^keymesh /.test(l.trim())).length >= 20, 'its commands are plain `keymesh …`')
  t.same(shellLines.filter((l) => /\bnpx\s+keymesh\b/.test(l)), [], 'no npx keymesh')
  t.match(readme, /export PATH="\$PWD\/bin:\$PATH"/, 'the set-up puts the checkout\'s bin on PATH')
  t.ok(existsSync(join(root, 'bin', 'keymesh')), 'bin/keymesh is there to be found on PATH')
})

t.test('the files the Quickstart writes in the checkout are ignored by git', async (t) => {
  if (spawnSync('git', ['rev-parse', '--git-dir'], { cwd: root }).status !== 0) {
    t.comment('not a git checkout: nothing to ignore files in')
    return
  }
  const written = ['keymesh-data/', 'api-agent/', 'web-agent/', 'api.token', 'web.token', 'checkpoint.json', 'cp1/', 'cp2/', 'master.key']
  for (const file of written) t.ok(readme.includes(file.replace(/\/$/, '')), `the README writes ${file}`)
  const r = spawnSync('git', ['check-ignore', '--no-index', ...written], { cwd: root, encoding: 'utf8' })
  t.same(r.stdout.trim().split('\n').sort(), [...written].sort(), 'every one is ignored')
})

t.test('an agent started as the README shows (`keymesh agent … &`) stops with its PID and frees its state directory', async (t) => {
  const h = await startTestControlPlane(t)
  const dir = t.testdir()
  const tokenFile = join(dir, 'web.token')
  writeFileSync(tokenFile, (await h.api('POST', '/v1/join-tokens', { service: 'web' })).body.token as string, { mode: 0o600 })
  const stateDir = join(dir, 'web-agent')
  // The bin itself, as a shell runs it from PATH: its `#!/usr/bin/env node` makes the PID node's.
  const child = spawn(join(root, 'bin', 'keymesh'), ['agent', '--cp', h.cp.url, '--cp-key', h.identityPub, '--service', 'web',
    '--join-token-file', tokenFile, '--state-dir', stateDir, '--tunnel-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (out += c.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await until(() => out.includes('"msg":"agent started"'), 'the agent to start', { ms: 60_000, detail: () => out, on: (wake) => {
    child.stdout.on('data', wake)
    return () => child.stdout.off('data', wake)
  } })
  t.match(readFileSync(`/proc/${child.pid}/cmdline`, 'latin1').split('\0')[0], /node$/, 'the PID is the node process itself')
  t.ok(existsSync(join(stateDir, 'agent.lock')), 'it holds its state directory')
  process.kill(child.pid as number, 'SIGTERM')
  t.equal(await exited, 0, 'kill PID stops it')
  t.notOk(existsSync(join(stateDir, 'agent.lock')), 'and the state directory is free again')
})
