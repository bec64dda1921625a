// Finding (issue 12, item 3): on a loopback TCP port any local user reached the
// agent's data API: `su nobody -c "curl … /v1/datakey"` returned a plaintext data
// key, and `--api 0.0.0.0:PORT` was accepted silently. The attack again, as the
// other user it was: a child process running as `nobody` tries the unix socket,
// the token file and the TCP port without the token.
import t from 'tap'
import { execFile } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'

import { AgentApiServer } from '../../agent/src/index.js'
import { startTestAgent } from '../kit/agent.js'
import { startTestControlPlane } from '../kit/cp.js'
import { until } from '../kit/wait.js'

const h = await startTestControlPlane(t)
await h.api('POST', '/v1/keys', { name: 'records', type: 'aead' })
const g = await h.api('POST', '/v1/keys/records/grants', { service: 'billing', rights: ['generate-data-key', 'encrypt', 'decrypt'] })
if (g.status !== 200) throw new Error(`grant: ${g.status}`)
const billing = await startTestAgent(t, h, { service: 'billing', api: true })
await until(() => billing.agent.status().controlPlane.state === 'connected', 'billing to connect')
const base = billing.agent.apiUrl as string
const datakey = (headers: Record<string, string>): Promise<Response> =>
  fetch(`${base}/v1/datakey`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ key: 'records' }) })

t.test('over TCP, /v1/datakey without the token or with a wrong one is 401 and no key', async (t) => {
  t.match(base, /^http:\/\/127\.0\.0\.1:\d+$/, 'the agent runs with --api 127.0.0.1:0')
  for (const [what, headers] of [['no token', {}], ['a wrong token', { authorization: `Bearer ${'A'.repeat(43)}` }]] as const) {
    const res = await datakey(headers)
    const text = await res.text()
    t.equal(res.status, 401, what)
    t.equal(JSON.parse(text).error.code, 'AGENT_ERR_API_TOKEN', what)
    t.notMatch(text, /plaintext/, `${what}: no key in the answer`)
  }
  t.equal((await fetch(`${base}/v1/status`)).status, 401, '/v1/status needs it too')
  const ok = await datakey(billing.apiHeaders)
  t.equal(ok.status, 200, 'the right token')
  t.match(await ok.json(), { plaintext: String, ciphertext: String })
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'the probes stay open: they carry no secret')
})

t.test('the token file is 0600', async (t) => {
  t.equal(statSync(join(billing.stateDir, 'api.token')).mode & 0o777, 0o600)
  t.match(readFileSync(join(billing.stateDir, 'api.token'), 'utf8'), /^[A-Za-z0-9_-]{43}\n$/)
})

/** The passwd entry of `nobody`, or undefined when there is none. */
function nobody(): { uid: number; gid: number } | undefined {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'))
  const f = line?.split(':')
  return f === undefined ? undefined : { uid: Number(f[2]), gid: Number(f[3]) }
}

// What the other user runs: three attempts, each reported as a code or a status.
const ATTACK = `
const net = require('node:net'), fs = require('node:fs')
const [sock, tokenFile, base] = process.argv.slice(1)
const out = {}
const viaSocket = new Promise((r) => { const s = net.connect({ path: sock }); s.on('connect', () => { s.destroy(); r('connected') }); s.on('error', (e) => r(e.code)) })
try { fs.readFileSync(tokenFile); out.token = 'read' } catch (e) { out.token = e.code }
viaSocket.then(async (socket) => {
  out.socket = socket
  const res = await fetch(base + '/v1/datakey', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'records' }) })
  out.tcp = res.status
  out.tcpBody = await res.text()
  console.log(JSON.stringify(out))
})
`

const who = nobody()
const skip = process.getuid?.() !== 0 ? 'needs root to run a child as another user' : who === undefined ? 'no nobody user in /etc/passwd' : false
t.test('another uid cannot use the API: not the socket, not the token file, not the port without the token', { skip }, async (t) => {
  const user = who as { uid: number; gid: number }
  // Directories the other user may enter, so that only the socket's and the token file's own modes stand in the way.
  const dir = mkdtempSync(join(tmpdir(), 'km-access-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  chmodSync(billing.stateDir, 0o755)
  const socketPath = join(dir, 'api.sock')
  const server = await AgentApiServer.start({ listen: { socketPath }, status: () => billing.agent.status(), logger: pino({ level: 'silent' }) })
  t.teardown(() => server.close())
  t.equal(statSync(socketPath).mode & 0o777, 0o600, 'the socket is 0600')

  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['-e', ATTACK, socketPath, join(billing.stateDir, 'api.token'), base], { uid: user.uid, gid: user.gid, cwd: '/', env: {} }, (err, out, errOut) => {
      if (err !== null) reject(new Error(`${err.message}\n${errOut}`))
      else resolve(out)
    })
  })
  const got = JSON.parse(stdout) as { socket: string; token: string; tcp: number; tcpBody: string }
  t.equal(got.socket, 'EACCES', 'the unix socket')
  t.equal(got.token, 'EACCES', 'STATE_DIR/api.token')
  t.equal(got.tcp, 401, 'the TCP port without the token')
  t.notMatch(got.tcpBody, /plaintext/)
})
