// `keymesh debug bundle`: one tar.gz (read back with the system tar) holding a
// control plane's and an agent's state, a redacted config and log tail, and a
// manifest; no byte of it holds the admin token, the agent's API token or a join token.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { redactText } from '../../../cli/commands/debug.js'
import { tar } from '../../../cli/tar.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { startTestAgent } from '../../kit/agent.js'
import { runCli } from '../../kit/cli.js'

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'keymesh-debug-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function extract(archive: string, into: string): Map<string, Buffer> {
  mkdirSync(into)
  execFileSync('tar', ['-xzf', archive, '-C', into])
  const files = new Map<string, Buffer>()
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path, `${prefix}${name}/`)
      else files.set(`${prefix}${name}`, readFileSync(path))
    }
  }
  walk(into, '')
  return files
}

t.test('a bundle from a running control plane and agent holds their state and no secret', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await startTestAgent(t, h, { service: 'web', api: true })
  const dir = tempDir(t)
  const tokenFile = join(dir, 'admin.token')
  writeFileSync(tokenFile, h.adminToken, { mode: 0o600 })
  const join_ = (await h.api('POST', '/v1/join-tokens', { service: 'web' })).body.token as string
  const config = join(dir, 'agent.json')
  writeFileSync(config, JSON.stringify({ service: 'web', 'join-token': join_, 'log-level': 'debug' }))
  const log = join(dir, 'agent.log')
  writeFileSync(log, [
    'old line that falls outside --lines',
    JSON.stringify({ level: 30, msg: 'enrolled', token: join_ }),
    `plain text with token=${join_} and Authorization: Bearer ${a.apiToken as string}`,
    JSON.stringify({ level: 20, msg: 'API request', headers: { authorization: `Bearer ${h.adminToken}` } }),
  ].join('\n') + '\n')
  const out = join(dir, 'b.tar.gz')

  const res = await runCli(['debug', 'bundle', '--cp', h.cp.url, '--token-file', tokenFile, ...a.apiArgs, '--config', config, '--log-file', log, '--lines', '3', '-o', out, '--json'])
  t.equal(res.code, 0, res.err)
  t.equal(statSync(out).mode & 0o777, 0o600)
  const files = extract(out, join(dir, 'x'))
  t.same([...files.keys()].sort(), ['agent/log-level.json', 'agent/metrics.txt', 'agent/readyz.json', 'agent/status.json', 'config.json',
    'control-plane/healthz.json', 'control-plane/log-level.json', 'control-plane/metrics.txt', 'control-plane/readyz.json', 'control-plane/summary.json', 'log.txt', 'manifest.json'])
  const manifest = JSON.parse(String(files.get('manifest.json')))
  t.same(manifest.failed, [])
  t.same(manifest.host, { node: process.version, platform: `${process.platform}/${process.arch}` })
  t.equal(manifest.collected.length, 11)
  t.same(JSON.parse(String(files.get('control-plane/summary.json'))), { agents: 1, keys: 0 })
  t.match(JSON.parse(String(files.get('agent/status.json'))), { service: 'web' })
  t.match(String(files.get('agent/metrics.txt')), /# TYPE/)
  t.same(JSON.parse(String(files.get('config.json'))), { service: 'web', 'join-token': '[Redacted]', 'log-level': 'debug' })
  const tail = String(files.get('log.txt'))
  t.notMatch(tail, /old line/, 'only the last --lines lines')
  t.equal(tail.trim().split('\n').length, 3)
  for (const [name, bytes] of files) {
    for (const [what, secret] of [['admin token', h.adminToken], ['agent API token', a.apiToken as string], ['join token', join_]] as const) {
      t.equal(bytes.indexOf(secret), -1, `${name} holds no ${what}`)
    }
  }
})

t.test('a source that fails is listed in the manifest; the bundle is still written', async (t) => {
  const dir = tempDir(t)
  const out = join(dir, 'b.tar.gz')
  writeFileSync(join(dir, 'conf.txt'), 'token = not json\n')
  const res = await runCli(['debug', 'bundle', '--cp', 'http://127.0.0.1:1', '--api', 'unix:/nonexistent/x.sock', '--config', join(dir, 'conf.txt'), '--log-file', join(dir, 'absent.log'), '-o', out])
  t.equal(res.code, 0, res.err)
  t.match(res.out, /0 collected, 11 failed/)
  const files = extract(out, join(dir, 'x'))
  t.same([...files.keys()], ['manifest.json'])
  const manifest = JSON.parse(String(files.get('manifest.json')))
  t.match(manifest.failed, [{ source: 'control-plane/healthz.json', error: /no answer from http:\/\/127.0.0.1:1\/healthz/ }])
  t.ok(manifest.failed.some((f: { source: string; error: string }) => f.source === 'config.json' && /not JSON/.test(f.error)))
  const lines = await runCli(['debug', 'bundle', '--lines', '0', '-o', join(dir, 'c.tar.gz')])
  t.not(lines.code, 0)
  t.match(lines.err, /--lines must be a whole number.*CP_ERR_USAGE/)
})

t.test('redactText masks secret-looking fields of JSON and assignments in plain text', async (t) => {
  t.same(JSON.parse(redactText('{"a":{"apiToken":"x","n":1}}')), { a: { apiToken: '[Redacted]', n: 1 } })
  t.equal(redactText('key: abc secret="def" Bearer ghi ok'), 'key: [Redacted] secret="[Redacted]" Bearer [Redacted] ok')
  t.equal(redactText('pin=1234 given kms1-0123456789abcdef-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA then'), 'pin=[Redacted] given [Redacted] then', 'PINs and unseal shares, named or not')
  t.same(JSON.parse(redactText('{"headers":{"Authorization":"Basic x","cookie":"c"},"msg":"sent token=abc"}')),
    { headers: { Authorization: '[Redacted]', cookie: '[Redacted]' }, msg: 'sent token=[Redacted]' }, 'credential headers and assignments inside strings')
})

t.test('the tar writer pads to 512-byte blocks and ends with two zero blocks', async (t) => {
  const bytes = tar([{ name: 'a.txt', data: Buffer.from('hi') }])
  t.equal(bytes.length, 512 * 4)
  t.equal(bytes.subarray(257, 262).toString(), 'ustar')
  t.throws(() => tar([{ name: 'n'.repeat(101), data: Buffer.alloc(0) }]), /too long/)
})
