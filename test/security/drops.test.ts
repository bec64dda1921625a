// Findings: (6) anyone with a recipient's public key could seal an x25519 drop with
// `--from billing`, and `drop open` printed "from billing" as if verified; (7) /v1/agree
// was a raw Diffie-Hellman oracle: a service with decrypt on the x25519 key left out the
// context and derived the key of a drop addressed to another service.
// Each attack, performed through the CLI and the agents' APIs as an attacker would:
import t from 'tap'
import { chmodSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { parseApiListen, requestAgentApi } from '../../agent/src/index.js'
import { decodeDropHeader, encodeDropHeader, isKeymeshError } from '../../protocol/src/index.js'
import { startTestAgent, type TestAgent } from '../kit/agent.js'
import { until } from '../kit/wait.js'
import { runCli } from '../kit/cli.js'
import { startTestControlPlane } from '../kit/cp.js'

const h = await startTestControlPlane(t)
const grant = async (name: string, service: string, rights: string[]): Promise<void> => {
  const g = await h.api('POST', `/v1/keys/${name}/grants`, { service, rights })
  if (g.status !== 200) throw new Error(`grant: ${g.status} ${JSON.stringify(g.body)}`)
}
await h.api('POST', '/v1/keys', { name: 'globex-inbox', type: 'x25519' })
await grant('globex-inbox', 'globex', ['decrypt'])
await grant('globex-inbox', 'initech', ['decrypt']) // holds decrypt, but drops are addressed to globex
await h.api('POST', '/v1/keys', { name: 'billing-id', type: 'x25519' })
await grant('billing-id', 'billing', ['encrypt'])

const agents: Record<string, TestAgent> = {}
for (const service of ['billing', 'globex', 'initech', 'mallory']) agents[service] = await startTestAgent(t, h, { service, api: true })
await until(() => Object.values(agents).every((a) => a.agent.status().controlPlane.state === 'connected'), 'agents connected')
const api = (service: string): string => (agents[service] as TestAgent).agent.apiUrl!.replace(/^http:\/\//, '')
/** `--api HOST:PORT --state-dir DIR`: the CLI reads the agent's API token from DIR/api.token. */
const apiArgs = (service: string): string[] => (agents[service] as TestAgent).apiArgs

const dir = t.testdir({ 'report.txt': 'quarterly numbers\n', 'admin.token': h.adminToken })
const path = (name: string): string => join(dir, name)
chmodSync(path('admin.token'), 0o600)
for (const k of ['globex-inbox', 'billing-id']) {
  const r = await runCli(['key', 'public', k, '-o', path(`${k}.pub`), '--cp', h.cp.url, '--token-file', path('admin.token')])
  if (r.code !== 0) throw new Error(r.err)
}
const open = (drop: string, as: string, out: string, ...extra: string[]) => runCli(['drop', 'open', ...apiArgs(as), drop, '-o', out, ...extra])

t.test('a sender name written by whoever holds the public key is reported as not verified', async (t) => {
  const forged = path('forged.drop')
  const sealed = await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), '--to', 'globex', '--from', 'billing', path('report.txt'), '-o', forged])
  t.equal(sealed.code, 0, sealed.err)
  const text = await open(forged, 'globex', path('forged.out'))
  t.equal(text.code, 0, text.err)
  t.match(text.out, /from billing \(sender not verified/, 'the text output says so plainly')
  t.notMatch(text.out, /from billing \(verified\)/)
  const json = await open(forged, 'globex', path('forged.json.out'), '--json')
  t.match(JSON.parse(json.out), { from: 'billing', senderVerified: false })
})

t.test('a sender that seals with its own key through its agent is verified, and the name cannot be moved', async (t) => {
  const real = path('real.drop')
  const sealed = await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), ...apiArgs('billing'), '--sender-key', path('billing-id.pub'), '--to', 'globex', path('report.txt'), '-o', real])
  t.equal(sealed.code, 0, sealed.err)
  const header = decodeDropHeader(readFileSync(real))?.header
  t.match(header, { formatVersion: 2, sender: 'billing', senderKey: 'billing-id', senderKeyVersion: 1 })
  const opened = await open(real, 'globex', path('real.json.out'), '--json')
  t.equal(opened.code, 0, opened.err)
  t.match(JSON.parse(opened.out), { from: 'billing', senderVerified: true })
  t.equal(readFileSync(path('real.json.out'), 'utf8'), 'quarterly numbers\n')

  // The attacker relabels the verified drop as coming from another service: the header
  // is the key's salt, so the file no longer opens, and nothing is written.
  const bytes = readFileSync(real)
  const decoded = decodeDropHeader(bytes)
  if (decoded === undefined) throw new Error('header')
  const relabelled = encodeDropHeader({ ...decoded.header, sender: 'payroll' })
  writeFileSync(path('relabelled.drop'), Buffer.concat([relabelled, bytes.subarray(decoded.length)]))
  const r = await open(path('relabelled.drop'), 'globex', path('relabelled.out'))
  t.not(r.code, 0)
  t.match(r.err, /\(PROTO_ERR_DECRYPT\)/, 'the first chunk does not authenticate')
  t.notOk(existsSync(path('relabelled.out')))

  // Nobody else can claim billing's key: initech is refused the sender term.
  const claim = await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), ...apiArgs('initech'), '--sender-key', path('billing-id.pub'), '--to', 'globex', path('report.txt'), '-o', path('claim.drop')])
  t.not(claim.code, 0)
  t.match(claim.err, /CP_ERR_FORBIDDEN/)
  t.notOk(existsSync(path('claim.drop')))
})

t.test('a service with decrypt on the key that is not the recipient opens the drop by no API', async (t) => {
  const drop = path('for-globex.drop')
  t.equal((await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), '--to', 'globex', path('report.txt'), '-o', drop])).code, 0)
  const bytes = readFileSync(drop)
  const decoded = decodeDropHeader(bytes)
  if (decoded === undefined) throw new Error('header')
  const headerB64 = Buffer.from(bytes.subarray(0, decoded.length)).toString('base64')

  // Through the CLI.
  const viaCli = await open(drop, 'initech', path('stolen.out'))
  t.not(viaCli.code, 0)
  t.match(viaCli.err, /CP_ERR_NOT_RECIPIENT/)
  t.notOk(existsSync(path('stolen.out')))

  const ask = async (route: string, body: unknown): Promise<string> => {
    try {
      await requestAgentApi(parseApiListen(api('initech'), 'test'), 'POST', route, body, { token: (agents['initech'] as TestAgent).apiToken })
      return 'answered'
    } catch (err) {
      return isKeymeshError(err) ? err.code : String(err)
    }
  }
  // The header as it is: refused for the recipient it names.
  t.equal(await ask('/v1/dropopen', { header: headerB64 }), 'CP_ERR_NOT_RECIPIENT')
  // The old raw agreement, with or without a context: the route is gone.
  t.not(await ask('/v1/agree', { key: 'globex-inbox', publicKey: Buffer.from(decoded.header.ephemeralPublic as Uint8Array).toString('base64') }), 'answered')
  // A header rewritten to name initech: the key it gets is that header's, which opens nothing.
  const mine = encodeDropHeader({ ...decoded.header, recipient: 'initech' })
  t.equal(await ask('/v1/dropopen', { header: Buffer.from(mine).toString('base64') }), 'answered', 'initech gets the key of its own header')
  writeFileSync(path('retargeted.drop'), Buffer.concat([mine, bytes.subarray(decoded.length)]))
  const r = await open(path('retargeted.drop'), 'initech', path('retargeted.out'))
  t.not(r.code, 0, 'and that key opens nothing of the drop')
  t.match(r.err, /\(PROTO_ERR_DECRYPT\)/, 'the first chunk does not authenticate')
  t.notOk(existsSync(path('retargeted.out')))
  // The true recipient still opens it.
  t.equal((await open(drop, 'globex', path('globex.out'))).code, 0)
})

t.test('a header naming keys that do not exist, from a service with no grant at all, is refused and harms nothing', async (t) => {
  // The control plane looks up both keys a drop names before it checks either; a
  // refusal of the first must not leave the second look-up's refusal unhandled,
  // which would end the process (one request from any enrolled agent, every replica).
  const pub = JSON.parse(readFileSync(path('globex-inbox.pub'), 'utf8')) as { publicKey: string }
  const eph = Buffer.from(pub.publicKey.slice('x25519:'.length), 'base64url')
  const header = (fields: Record<string, unknown>): string => Buffer.from(encodeDropHeader({
    formatVersion: 2, mode: 'x25519', chunkSize: 65536, noncePrefix: new Uint8Array(7), sender: 'mallory', recipient: 'mallory',
    key: 'globex-inbox', keyVersion: 1, ephemeralPublic: eph, senderKey: 'no-such-key', senderKeyVersion: 1, ...fields,
  } as Parameters<typeof encodeDropHeader>[0])).toString('base64')
  const ask = async (route: string, body: unknown): Promise<string> => {
    try {
      await requestAgentApi(parseApiListen(api('mallory'), 'test'), 'POST', route, body, { token: (agents['mallory'] as TestAgent).apiToken })
      return 'answered'
    } catch (err) {
      return isKeymeshError(err) ? err.code : String(err)
    }
  }
  for (let i = 0; i < 3; i++) {
    t.equal(await ask('/v1/dropopen', { header: header({}) }), 'CP_ERR_FORBIDDEN', 'dropopen: no decrypt on the inbox, and the missing sender key is not what is said')
    t.equal(await ask('/v1/dropseal', { header: header({ key: 'no-such-inbox' }) }), 'CP_ERR_KEY_NOT_FOUND', 'dropseal: no such sender key')
    t.equal(await ask('/v1/dropseal', { header: header({ senderKey: 'billing-id' }) }), 'CP_ERR_FORBIDDEN', 'dropseal: a missing recipient key behind a refused sender key')
  }
  const status = await h.api('GET', '/v1/keys')
  t.equal(status.status, 200, 'the control plane still answers')
})

t.test('a disabled sender key verifies nothing: its drops do not open until it is enabled again', async (t) => {
  const drop = path('while-enabled.drop')
  t.equal((await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), ...apiArgs('billing'), '--sender-key', path('billing-id.pub'), '--to', 'globex', path('report.txt'), '-o', drop])).code, 0)
  t.equal((await h.api('POST', '/v1/keys/billing-id/versions/1/state', { state: 'disabled' })).status, 200)
  const refused = await open(drop, 'globex', path('while-disabled.out'))
  t.not(refused.code, 0)
  t.match(refused.err, /CP_ERR_VERSION_DISABLED/)
  t.notOk(existsSync(path('while-disabled.out')))
  t.equal((await h.api('POST', '/v1/keys/billing-id/versions/1/state', { state: 'enabled' })).status, 200)
  t.equal((await open(drop, 'globex', path('re-enabled.out'))).code, 0)
})

t.test('--require-verified-sender refuses an unproven sender before any byte is written, even to stdout', async (t) => {
  const forged = path('forged-again.drop')
  t.equal((await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), '--to', 'globex', '--from', 'billing', path('report.txt'), '-o', forged])).code, 0)
  const r = await open(forged, 'globex', path('strict.out'), '--require-verified-sender')
  t.equal(r.code, 1)
  t.match(r.err, /names billing as its sender without proving it \(AGENT_ERR_SENDER_NOT_VERIFIED\)\n$/)
  t.notOk(existsSync(path('strict.out')))
  const real = path('strict-real.drop')
  t.equal((await runCli(['drop', 'seal', '--recipient-key', path('globex-inbox.pub'), ...apiArgs('billing'), '--sender-key', path('billing-id.pub'), '--to', 'globex', path('report.txt'), '-o', real])).code, 0)
  t.equal((await open(real, 'globex', path('strict-real.out'), '--require-verified-sender')).code, 0, 'a proven sender passes')
})
