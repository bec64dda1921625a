// `keymesh agent status` against a local API server with a fixed status, and
// `keymesh agent` refusing a bad configuration in one line, without echoing secrets,
// and a pinned control-plane key that is not the control plane's.
import t, { type Test } from 'tap'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'

import { requestAgentApi } from '../../../agent/src/index.js'
import { AgentApiServer, type AgentStatus } from '../../../agent/src/index.js'
import { main } from '../../../cli/main.js'
import { renderStatus } from '../../../cli/commands/agent.js'
import { startTestControlPlane } from '../../kit/cp.js'
import type { ApiListen } from '../../../agent/src/index.js'
import { formatPublicKey, nodeSuite, parsePublicKey, publicKeyFingerprint } from '../../../protocol/src/index.js'
import { cliChild, runCli } from '../../kit/cli.js'

const STATUS: AgentStatus = {
  ready: true,
  service: 'web',
  agentId: 'agt_abcdefghijklmnopqrstuvwxya',
  controlPlane: { state: 'connected', url: 'http://127.0.0.1:7400', lastError: null },
  keySet: { source: 'control-plane', updatedAt: Date.UTC(2025, 0, 2, 3, 4, 5) },
  pairs: [
    { pairId: 'api:web', peerService: 'api', currentVersion: 3, mayInitiate: true, mayAccept: false, peers: 2, tunnels: 2, tunnelKeyVersions: [2, 3] },
    { pairId: 'db:web', peerService: 'db', currentVersion: null, mayInitiate: true, mayAccept: true, peers: 0, tunnels: 0, tunnelKeyVersions: [] },
  ],
  tunnels: { open: 3, inbound: 1, outbound: 2 },
  usage: { unackedBatches: 4, dropped: 0, lostBatches: 0, recoveredBatches: 0, lossReportsPending: 0 },
}

// A state directory holding api.token, as the agent writes it: the CLI reads the token from there.
const TOKEN = 'Y2xpLXRlc3QtdG9rZW4tY2xpLXRlc3QtdG9rZW4tY2xp'
const stateDir = mkdtempSync(join(tmpdir(), 'km-cli-state-'))
t.teardown(() => rmSync(stateDir, { recursive: true, force: true }))
writeFileSync(join(stateDir, 'api.token'), `${TOKEN}\n`, { mode: 0o600 })

async function api(t: Test, listen: ApiListen = { host: '127.0.0.1', port: 0 }, status: AgentStatus = STATUS): Promise<AgentApiServer> {
  const server = await AgentApiServer.start({ listen, status: () => status, logger: pino({ level: 'silent' }), token: TOKEN })
  t.teardown(() => server.close())
  return server
}

const hostPort = (url: string): string => url.replace(/^http:\/\//, '')

t.test('agent status says what a damaged usage spool lost and whether the control plane has heard', async (t) => {
  const lost = (pending: number) => renderStatus({ ...STATUS, usage: { ...STATUS.usage, lostBatches: 2, recoveredBatches: 5, lossReportsPending: pending } })
  t.match(lost(1), /^usage lost:\s+2 batch\(es\) unreadable in a damaged spool \(5 recovered\), 1 loss report\(s\) not yet acknowledged$/m)
  t.match(lost(0), /^usage lost:\s+2 batch\(es\) unreadable in a damaged spool \(5 recovered\), reported to the control plane$/m)
})

t.test('agent status prints a readable summary', async (t) => {
  const server = await api(t)
  const r = await runCli(['agent', 'status', '--api', hostPort(server.url), '--state-dir', stateDir])
  t.equal(r.code, 0, r.err)
  t.equal(r.err, '')
  t.match(r.out, /^ready:\s+yes$/m)
  t.match(r.out, /^service:\s+web$/m)
  t.match(r.out, /^agent:\s+agt_abcdefghijklmnopqrstuvwxya$/m)
  t.match(r.out, /^control plane:\s+connected \(http:\/\/127\.0\.0\.1:7400\)$/m)
  t.match(r.out, /^last error:\s+-$/m)
  t.match(r.out, /^key set:\s+from control-plane, updated 2025-01-02T03:04:05\.000Z$/m)
  t.match(r.out, /^tunnels:\s+3 open \(1 inbound, 2 outbound\)$/m)
  t.match(r.out, /^usage:\s+4 batches awaiting the control plane, 0 events dropped$/m)
  t.notMatch(r.out, /usage lost/, 'shown only when a damaged spool lost something')
  t.match(r.out, /^PAIR\s+PEER\s+VERSION\s+INITIATE\s+ACCEPT\s+PEERS\s+TUNNELS\s+TUNNEL VERSIONS$/m)
  t.match(r.out, /^api:web\s+api\s+3\s+yes\s+no\s+2\s+2\s+2,3$/m)
  t.match(r.out, /^db:web\s+db\s+-\s+yes\s+yes\s+0\s+0\s+-$/m)
})

t.test('agent status --json prints the API answer; KEYMESH_API and unix sockets work', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'km-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const waiting: AgentStatus = { ...STATUS, ready: false, agentId: null, controlPlane: { state: 'backoff', url: null, lastError: 'AGENT_ERR_CP_UNREACHABLE' }, keySet: { source: null, updatedAt: null }, pairs: [] }
  const server = await api(t, { socketPath: join(dir, 'api.sock') }, waiting)
  const r = await runCli(['agent', 'status', '--json'], { KEYMESH_API: server.url })
  t.equal(r.code, 0, r.err)
  t.same(JSON.parse(r.out), waiting)
  const text = await runCli(['agent', 'status'], { KEYMESH_API: server.url })
  t.match(text.out, /^ready:\s+no$/m)
  t.match(text.out, /^control plane:\s+backoff$/m)
  t.match(text.out, /^last error:\s+AGENT_ERR_CP_UNREACHABLE$/m)
  t.match(text.out, /^key set:\s+none yet$/m)
  t.match(text.out, /^pairs: none/m)
})

t.test('agent status fails in one line when the API is not named or not there', async (t) => {
  const none = await runCli(['agent', 'status'])
  t.not(none.code, 0)
  t.match(none.err, /^keymesh: agent configuration is invalid: name the agent's API with --api HOST:PORT or unix:\/path \(env KEYMESH_API\) \(AGENT_ERR_CONFIG\)\n$/)
  const bad = await runCli(['agent', 'status', '--api', 'nowhere'])
  t.match(bad.err, /--api must be HOST:PORT .*\(AGENT_ERR_CONFIG\)\n$/)
  const down = await runCli(['agent', 'status', '--api', '127.0.0.1:1', '--api-token-file', join(stateDir, 'api.token')])
  t.not(down.code, 0)
  t.match(down.err, /^keymesh: the agent API cannot be reached: http:\/\/127\.0\.0\.1:1: ECONNREFUSED; is the agent running with --api 127\.0\.0\.1:1\? \(AGENT_ERR_API_UNREACHABLE\)\n$/)
  t.equal(down.out, '')
})

t.test('agent status over TCP needs the token and says where it looked', async (t) => {
  const server = await api(t)
  const at = hostPort(server.url)
  const none = await runCli(['agent', 'status', '--api', at])
  t.equal(none.code, 1)
  t.match(none.err, /the agent API over TCP needs the agent's token: give --api-token-file FILE \(env KEYMESH_API_TOKEN_FILE\) or --state-dir DIR to read DIR\/api\.token, or use the agent's unix socket \(AGENT_ERR_CONFIG\)\n$/)
  const elsewhere = mkdtempSync(join(tmpdir(), 'km-cli-'))
  t.teardown(() => rmSync(elsewhere, { recursive: true, force: true }))
  const missing = await runCli(['agent', 'status', '--api', at, '--state-dir', elsewhere])
  t.match(missing.err, new RegExp(`cannot read the agent's API token from --state-dir \\(${elsewhere}/api\\.token\\) \\(ENOENT\\)`))
  const wrongFile = join(elsewhere, 'wrong.token')
  writeFileSync(wrongFile, `${'x'.repeat(43)}\n`, { mode: 0o600 })
  const wrong = await runCli(['agent', 'status', '--api', at], { KEYMESH_API_TOKEN_FILE: wrongFile })
  t.match(wrong.err, new RegExp(`token does not match; the token from KEYMESH_API_TOKEN_FILE ${wrongFile} was refused \\(AGENT_ERR_API_TOKEN\\)`))
  const junk = join(elsewhere, 'junk')
  writeFileSync(junk, 'not a token at all\n', { mode: 0o600 })
  t.match((await runCli(['agent', 'status', '--api', at, '--api-token-file', junk])).err, /--api-token-file .*junk does not hold an agent API token/)
  const loose = join(elsewhere, 'loose.token')
  writeFileSync(loose, `${'x'.repeat(43)}\n`)
  chmodSync(loose, 0o640)
  const refused = await runCli(['agent', 'status', '--api', at, '--api-token-file', loose])
  t.match(refused.err, new RegExp(`^keymesh: .*${loose} is readable or writable by other users \\(mode 0640\\); run chmod 600 ${loose} \\(AGENT_ERR_TOKEN_FILE_MODE\\)\\n$`))
  const ok = await runCli(['agent', 'status', '--api', at, '--json'], { KEYMESH_STATE_DIR: stateDir })
  t.equal(ok.code, 0, ok.err)
  // A unix socket needs no token: a state dir without api.token is not an error there.
  const sock = await api(t, { socketPath: join(elsewhere, 'api.sock') })
  t.equal((await runCli(['agent', 'status', '--api', sock.url, '--state-dir', elsewhere])).code, 0)
})

t.test('agent with a bad configuration prints one AGENT_ERR_CONFIG line and exits non-zero', async (t) => {
  const key = formatPublicKey(new Uint8Array(32).fill(9))
  const token = 'jt-very-secret-token-0123456789'
  const base = ['agent', '--cp', 'http://127.0.0.1:7400', '--cp-key', key, '--state-dir', '/nonexistent/state', '--join-token', token]
  const noService = await runCli(base)
  t.equal(noService.code, 1)
  t.match(noService.err, /^keymesh: agent configuration is invalid: name this agent's service with --service NAME \(env KEYMESH_SERVICE\) \(AGENT_ERR_CONFIG\)\n$/)
  t.equal(noService.out, '')
  const badConnect = await runCli([...base, '--service', 'web', '--connect', 'api=127.0.0.1:15001', '--connect', 'api=127.0.0.1:15002'])
  t.match(badConnect.err, /^keymesh: .*--connect \(entry 2\): peer api is given twice.*\(AGENT_ERR_CONFIG\)\n$/)
  const env = await runCli(['agent', '--service', 'web', '--join-token', token], { KEYMESH_CP: 'http://127.0.0.1:7400', KEYMESH_CP_KEY: `${key.slice(0, -2)}!!`, KEYMESH_STATE_DIR: '/s' })
  t.match(env.err, /^keymesh: .*KEYMESH_CP_KEY must hold the control plane's public key.*\(AGENT_ERR_CONFIG\)\n$/)
  const badToken = await runCli([...base.slice(0, -1), 'short-token!', '--service', 'web'])
  t.match(badToken.err, /--join-token must hold a join token/)
  for (const r of [noService, badConnect, env, badToken]) {
    t.notMatch(r.err, /very-secret|short-token/, 'no token echoed')
    t.notMatch(r.err, new RegExp(key.slice(7, 30)), 'no key echoed')
    t.equal(r.err.split('\n').length, 2, 'one line')
  }
})

t.test('agent runs from flags and the environment until the stop signal', async (t) => {
  const h = await startTestControlPlane(t)
  const token = (await h.api('POST', '/v1/join-tokens', { service: 'web' })).body.token as string
  const sockDir = mkdtempSync(join(tmpdir(), 'km-cli-'))
  t.teardown(() => rmSync(sockDir, { recursive: true, force: true }))
  const socketPath = join(sockDir, 'api.sock')
  let err = ''
  let stop!: (signal: string) => void
  let started!: () => void
  const up = new Promise<void>((r) => { started = r })
  // main() asks for the stop signal only once the agent has started: that is the cue.
  const io = {
    stdout: { write: () => true },
    stderr: { write: (s: string) => (err += s) },
    env: { KEYMESH_CP_KEY: h.identityPub, KEYMESH_JOIN_TOKEN: token, KEYMESH_LOG_LEVEL: 'silent' },
    get stopSignal(): Promise<string> {
      started()
      return new Promise<string>((r) => { stop = r })
    },
  }
  const run = main(['agent', '--cp', h.cp.url, '--service', 'web', '--state-dir', t.testdir(), '--tunnel-listen', '127.0.0.1:0', '--api', `unix:${socketPath}`], io)
  await Promise.race([up, run.then(() => { throw new Error(`agent exited early: ${err}`) })])
  const status = await requestAgentApi<AgentStatus>({ socketPath }, 'GET', '/v1/status')
  t.equal(status.service, 'web')
  t.match(status.agentId, /^agt_/)
  t.equal(status.controlPlane.state, 'connected')
  // SIGHUP re-reads the level (here KEYMESH_LOG_LEVEL=silent), undoing one set over the API.
  await requestAgentApi({ socketPath }, 'PUT', '/v1/log-level', { level: 'error' })
  process.emit('SIGHUP')
  t.same(await requestAgentApi({ socketPath }, 'GET', '/v1/log-level'), { level: 'silent' }, 'SIGHUP re-read the configured level')
  stop('SIGTERM')
  t.equal(await run, 0, err)
  t.equal(err, '')
  await t.rejects(requestAgentApi({ socketPath }, 'GET', '/v1/status'), { code: 'AGENT_ERR_API_UNREACHABLE' }, 'the API is closed')
})

t.test('an agent never enrolled, pinning another key than the control plane\'s, exits in one line naming both', async (t) => {
  const h = await startTestControlPlane(t)
  const token = (await h.api('POST', '/v1/join-tokens', { service: 'web' })).body.token as string
  const wrong = formatPublicKey(new Uint8Array(32).fill(9))
  const r = await runCli(['agent', '--cp', h.cp.url, '--cp-key', wrong, '--service', 'web', '--state-dir', t.testdir(), '--tunnel-listen', '127.0.0.1:0'], { KEYMESH_JOIN_TOKEN: token, KEYMESH_LOG_LEVEL: 'silent' })
  t.equal(r.code, 1)
  const theirs = publicKeyFingerprint(nodeSuite, parsePublicKey(h.identityPub))
  const pinned = publicKeyFingerprint(nodeSuite, new Uint8Array(32).fill(9))
  t.equal(r.err, `keymesh: the control plane's key is not the one this agent pins (--cp-key-file, --cp-key): the control plane at ${h.cp.url.replace('http:', 'ws:')}/v1/agent has key ${theirs}, this agent pins ${pinned}: give the agent that control plane's DATA_DIR/identity.pub as --cp-key-file (AGENT_ERR_CP_KEY_MISMATCH)\n`)
})

// yargs prints help to the process's stdout and exits, so help runs in a child process.
t.test('agent --help explains every option with its variable and default, and tells agent from agents', async (t) => {
  const help = cliChild(['agent', '--help'])
  const options = ['cp', 'cp-key-file', 'cp-key', 'ca-file', 'cp-fingerprint', 'service', 'join-token', 'join-token-file', 'state-dir', 'tunnel-listen', 'advertise', 'expose', 'connect', 'api', 'log-level', 'config']
  for (const o of options) {
    const env = `KEYMESH_${o.toUpperCase().replace(/-/g, '_')}`
    t.match(help, new RegExp(`--${o}\\s[\\s\\S]*?env\\s+${env}[),]`), `--${o} names ${env}`)
  }
  t.match(help, /Default 127\.0\.0\.1:7401/)
  t.match(help, /Default info/)
  t.match(help, /keymesh agent status\s/, 'lists the status subcommand')
  t.match(help, /Examples:\n\s+keymesh agent --cp https:\/\/127\.0\.0\.1:7400\s[\s\S]*--ca-file cp\/tls\.crt\s/)
  t.match(help, /Not to be confused with `keymesh agents list`, which lists the agents enrolled on the control plane/)
})
