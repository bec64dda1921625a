// `keymesh control-plane` as an operator runs it: HTTPS with a certificate it makes,
// plain HTTP only when asked, and its settings from flags, environment and --config;
// the first thing it prints is where it answers and which files it made; a data
// directory that is a file is named as such, with its own code; a port in use is said
// before anything is written.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { X509Certificate, createHash } from 'node:crypto'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'

import { loadControlPlaneConfig } from '../../../cli/control-plane-config.js'
import { serveTls } from '../../../cli/tls.js'
import { runCli, runControlPlaneCli } from '../../kit/cli.js'
import { startChildControlPlane } from '../../kit/cp.js'
import { captureLogger } from '../../kit/logs.js'
import { until } from '../../kit/wait.js'

t.test('it serves HTTPS by default with a certificate made in the data directory, which the CLI trusts by file', async (t) => {
  const dataDir = join(t.testdir(), 'cp')
  const child = await startChildControlPlane({ t, dataDir, cli: true, tls: true })
  t.match(child.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const env = { KEYMESH_CP: child.url, KEYMESH_TOKEN_FILE: join(dataDir, 'admin.token') }
  t.match(await runCli(['key', 'list', '--ca-file', join(dataDir, 'tls.crt')], env), { code: 0, out: '(none)\n' })
  const fingerprint = `sha256:${createHash('sha256').update(new X509Certificate(readFileSync(join(dataDir, 'tls.crt'))).raw).digest('hex')}`
  t.match(await runCli(['key', 'list', '--cp-fingerprint', fingerprint], env), { code: 0 })
  t.match(await runCli(['key', 'list'], env), { code: 1, err: /DEPTH_ZERO_SELF_SIGNED_CERT.*\(CP_ERR_TLS\)/ })
})

t.test('--insecure-http serves plain HTTP, here given in the --config file', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'cp.json'), JSON.stringify({ 'insecure-http': true, logLevel: 'info' }))
  const dataDir = join(dir, 'cp')
  const child = await startChildControlPlane({ t, dataDir, cli: true, tls: true, args: ['--config', join(dir, 'cp.json')] })
  t.match(child.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const res = await fetch(`${child.url}/healthz`)
  t.equal(res.status, 200)
  const env = { KEYMESH_CP: child.url, KEYMESH_TOKEN_FILE: join(dataDir, 'admin.token') }
  t.match(await runCli(['key', 'list'], env), { code: 0 })
})

t.test('plain HTTP off loopback is said in a warning at every start; on loopback it is not', async (t) => {
  const base = loadControlPlaneConfig({ dataDir: 'x', insecureHttp: true }, {})
  const off = captureLogger()
  t.equal(await serveTls(base, '0.0.0.0', off.logger), undefined)
  t.match(off.logs.join('\n'), /"level":40.*serving plain HTTP on an address other hosts can reach \(--insecure-http\)/)
  const on = captureLogger()
  await serveTls(base, '127.0.0.1', on.logger)
  t.notMatch(on.logs.join('\n'), /"level":40/)
})

t.test('a setting comes from the flag, else the environment, else the --config file, else the default', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'cp.json')
  writeFileSync(file, JSON.stringify({ listen: '10.0.0.1:1', 'data-dir': '/from/file', store: 'sqlite:/file', 'tls-san': ['a.example', 'b.example'], logLevel: 'debug' }))
  const env = { KEYMESH_CONFIG: file, KEYMESH_LISTEN: '10.0.0.2:2', KEYMESH_STORE: 'sqlite:/env' }
  const c = loadControlPlaneConfig({ listen: '10.0.0.3:3' }, env)
  t.same(c, {
    listen: '10.0.0.3:3', dataDir: '/from/file', masterKeyFile: undefined, store: 'sqlite:/env', logLevel: 'debug',
    insecureHttp: false, tlsCert: undefined, tlsKey: undefined, tlsSans: ['a.example', 'b.example'], destroyGuardWindow: '30d',
    integrityCheckInterval: '6h', auditVerifyInterval: '10m',
  })
  t.ok(Object.isFrozen(c))
  t.equal(loadControlPlaneConfig({}, env).listen, '10.0.0.2:2', 'the environment beats the file')
  t.equal(loadControlPlaneConfig({}, { KEYMESH_CONFIG: file }).listen, '10.0.0.1:1', 'the file beats the default')
  t.equal(loadControlPlaneConfig({ dataDir: 'd' }, {}).listen, '127.0.0.1:7400', 'the default')
  t.match(loadControlPlaneConfig({ dataDir: 'd' }, { KEYMESH_TLS_SAN: 'x.example, y.example', KEYMESH_INSECURE_HTTP: '0' }), { tlsSans: ['x.example', 'y.example'], insecureHttp: false })
  t.throws(() => loadControlPlaneConfig({}, {}), { code: 'CP_ERR_USAGE', message: /--data-dir DIR \(env KEYMESH_DATA_DIR, or "data-dir" in the --config file\)/ })
  t.throws(() => loadControlPlaneConfig({ dataDir: 'd', logLevel: 'loud' }, {}), { code: 'CP_ERR_USAGE', message: /--log-level must be one of/ })
  t.throws(() => loadControlPlaneConfig({ dataDir: 'd', insecureHttp: true, tlsCert: 'c' }, {}), { code: 'CP_ERR_USAGE', message: /does not go with --tls-cert/ })
  t.throws(() => loadControlPlaneConfig({ dataDir: 'd' }, { KEYMESH_INSECURE_HTTP: 'maybe' }), { message: /KEYMESH_INSECURE_HTTP must be true or false/ })
  writeFileSync(file, JSON.stringify({ 'data-dir': 'd', 'master-key': 'c2VjcmV0' }))
  t.throws(() => loadControlPlaneConfig({ config: file }, {}), { code: 'CP_ERR_USAGE', message: /has an unknown key "master-key"; the keys are the flag names/ })
  writeFileSync(file, '{"data-dir": "d", "store": "postgres://u:hunter2@db/x",')
  const e = (() => { try { loadControlPlaneConfig({ config: file }, {}) } catch (err) { return err as Error } })()
  t.match(e, { code: 'CP_ERR_USAGE', message: /is not valid JSON/ })
  t.notMatch(String(e?.message), /hunter2/, 'the file\'s text is not repeated')
  t.throws(() => loadControlPlaneConfig({ dataDir: 'd', tlsSan: [3] }, {}), { message: /--tls-san must be names/ })
  t.throws(() => loadControlPlaneConfig({ dataDir: '  ' }, {}), { message: /--data-dir must be a non-empty string/ })
})

t.test('a started control plane says where it answers and which files it wrote', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const cp = await runControlPlaneCli(dir, {})
  const line = await until(() => /^keymesh: control plane at .*\n/m.exec(cp.err())?.[0], 'the start line')
  t.match(line, new RegExp(`^keymesh: control plane at (https?://127\\.0\\.0\\.1:\\d+) \\(export KEYMESH_CP=\\1\\); agents pin ${join(dir, 'identity.pub')}; admin token in ${join(dir, 'admin.token')}\\n$`))
  t.equal(await cp.stop(), 0)
})

t.test('a store file that is not a database: one line naming it and the fix, CP_ERR_STORE_CORRUPT', async (t) => {
  const dir = t.testdir({ 'keymesh.db': 'x'.repeat(4096) })
  const file = join(dir, 'keymesh.db')
  const r = await runCli(['control-plane', '--listen', '127.0.0.1:0', '--data-dir', dir])
  t.equal(r.code, 1)
  t.match(r.err, `${file} cannot be read (SQLITE_NOTADB): stop the control plane, move ${file} and its -wal and -shm files aside`)
  t.match(r.err, /\(CP_ERR_STORE_CORRUPT\)\n$/)
  t.equal(r.err.split('\n').length, 2, 'one line')
  const bad = await runCli(['control-plane', '--listen', '127.0.0.1:0', '--data-dir', dir, '--audit-verify-interval', 'often'])
  t.equal(bad.code, 2)
  t.match(bad.err, /--audit-verify-interval must look like 90s, 15m, 1h, 7d or 2w.*CP_ERR_USAGE/)
})

t.test('a data directory that is a file: one line naming it, CP_ERR_DATA_DIR', async (t) => {
  const file = join(t.testdir(), 'not-a-dir')
  writeFileSync(file, 'x')
  const r = await runCli(['control-plane', '--listen', '127.0.0.1:0', '--data-dir', file])
  t.equal(r.code, 1)
  t.equal(r.err, `keymesh: the data directory cannot be used: ${file} is not a directory; give --data-dir a directory (it is created if missing) (CP_ERR_DATA_DIR)\n`)
  t.notMatch(r.err, /unexpected|--debug/)
})

t.test('a port already in use: CP_ERR_LISTEN before any file is written (no certificate, store, key or token)', async (t) => {
  const base = t.testdir()
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const port = (busy.address() as AddressInfo).port
  const dataDir = join(base, 'cp')
  const keyDir = join(base, 'keys')
  const r = await runCli(['control-plane', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log-level', 'silent'], { KEYMESH_CONFIG_HOME: keyDir })
  t.equal(r.code, 1)
  t.equal(r.err, `keymesh: cannot listen on the requested address: 127.0.0.1:${port}: address already in use (CP_ERR_LISTEN)\n`)
  t.notOk(existsSync(dataDir), 'no data directory: no tls.crt, tls.key, store or admin.token')
  t.notOk(existsSync(keyDir), 'no development master key')
})
