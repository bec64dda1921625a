// The CLI and a control plane over TLS: trusted through the made certificate as CA
// file or through its pinned fingerprint; every other case refused with a code that
// says why.
import { writeFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'

import { selfSignedCertificate } from '../../control-plane/src/index.js'
import { ControlPlaneClient } from '../../cli/client.js'
import { loadTrust } from '../../cli/transport.js'
import { runCli } from '../kit/cli.js'
import { startTestControlPlane } from '../kit/cp.js'

async function listening(t: Tap, server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  return `127.0.0.1:${(server.address() as AddressInfo).port}`
}
type Tap = { teardown(fn: () => unknown): void }

t.test('the CLI talks to a control plane over TLS with its made certificate, trusted by CA file or by fingerprint', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  t.match(h.cp.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  t.match(h.cp.tlsFingerprint, /^sha256:[0-9a-f]{64}$/)
  t.match(h.logs.join('\n'), new RegExp(`"tlsFingerprint":"${h.cp.tlsFingerprint}".*control plane listening`))
  const env = { KEYMESH_CP: h.cp.url, KEYMESH_TOKEN_FILE: join(h.dataDir, 'admin.token') }

  const byCa = await runCli(['key', 'create', 'orders', '--type', 'aead', '--json'], { ...env, KEYMESH_CA_FILE: h.caFile as string })
  t.equal(byCa.code, 0, byCa.err)
  const byFlag = await runCli(['key', 'list', '--ca-file', h.caFile as string], env)
  t.match(byFlag, { code: 0, out: /orders/ })
  const byPin = await runCli(['key', 'list', '--cp-fingerprint', (h.cp.tlsFingerprint as string).toUpperCase()], env)
  t.match(byPin, { code: 0, out: /orders/ }, 'a pin needs no CA, and is read in any case')
  const byEnvPin = await runCli(['key', 'list'], { ...env, KEYMESH_CP_FINGERPRINT: h.cp.tlsFingerprint as string })
  t.match(byEnvPin, { code: 0, out: /orders/ })
  const localhost = await runCli(['key', 'list', '--cp', h.cp.url.replace('127.0.0.1', 'localhost'), '--ca-file', h.caFile as string], env)
  t.match(localhost, { code: 0, out: /orders/ }, 'the certificate names localhost too')
})

t.test('a certificate the CLI does not trust is refused with CP_ERR_TLS naming the fingerprints and the way out', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  // Not t.testdir(): it would empty the control plane's data directory.
  const dir = h.dataDir
  const tokenFile = join(dir, 'admin.token')
  const other = await selfSignedCertificate({ sans: ['localhost', '127.0.0.1'], now: Date.now(), validityDays: 1 })
  writeFileSync(join(dir, 'other.crt'), other.cert)
  const env = { KEYMESH_CP: h.cp.url, KEYMESH_TOKEN_FILE: tokenFile }
  const fp = h.cp.tlsFingerprint as string

  const untrusted = await runCli(['key', 'list'], env)
  t.equal(untrusted.code, 1)
  t.match(untrusted.err, `keymesh: ${h.cp.url}: the control plane's certificate (${fp}) is not signed by a CA of the default trust store (DEPTH_ZERO_SELF_SIGNED_CERT); trust it with --ca-file DATA_DIR/tls.crt`)
  t.match(untrusted.err, /\(CP_ERR_TLS\)\n$/)

  const wrongCa = await runCli(['key', 'list', '--ca-file', join(dir, 'other.crt')], env)
  t.match(wrongCa, { code: 1, err: /is not signed by the CA of --ca-file .*\(CP_ERR_TLS\)/ })

  const wrongPin = await runCli(['key', 'list', '--cp-fingerprint', `sha256:${'ab'.repeat(32)}`], env)
  t.match(wrongPin, { code: 1, err: `the control plane's certificate is ${fp}, not the pinned sha256:${'ab'.repeat(32)} (--cp-fingerprint)` })
  t.match(wrongPin.err, /\(CP_ERR_TLS\)\n$/)

  const badPin = await runCli(['key', 'list', '--cp-fingerprint', 'sha256:abc'], env)
  t.match(badPin, { code: 2, err: /--cp-fingerprint must be sha256: and 64 hex digits.*\(CP_ERR_USAGE\)/ })
  const noCa = await runCli(['key', 'list', '--ca-file', join(dir, 'missing.crt')], env)
  t.match(noCa, { code: 1, err: /CA file .*missing\.crt: no such file \(CP_ERR_TLS_CERT\)/ })
  const notPem = await runCli(['key', 'list', '--ca-file', tokenFile], env)
  t.match(notPem, { code: 1, err: /does not hold a PEM certificate \(CP_ERR_TLS_CERT\)/ })
  const plainWithPin = await runCli(['key', 'list', '--cp', h.cp.url.replace('https:', 'http:'), '--cp-fingerprint', fp], env)
  t.match(plainWithPin, { code: 2, err: /verify TLS; the control plane URL http:\/\/127\.0\.0\.1:\d+ is plain http:\/\/ \(CP_ERR_USAGE\)/ })
})

t.test('plain HTTP to the TLS port, and TLS to a plain HTTP port, each say which it was', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  const plain = new ControlPlaneClient(h.cp.url.replace('https:', 'http:'), h.adminToken)
  await t.rejects(plain.get('/v1/keys'), { code: 'CP_ERR_TLS', message: `the control plane at ${plain.baseUrl} serves HTTPS: use ${h.cp.url} (with --ca-file or --cp-fingerprint)` })

  const where = await listening(t, createServer((_req, res) => res.end('{}')))
  const tlsToPlain = new ControlPlaneClient(`https://${where}`, 'tok')
  await t.rejects(tlsToPlain.get('/healthz'), { code: 'CP_ERR_TLS', message: `https://${where}: ${where} does not speak TLS; if the control plane runs with --insecure-http, use an http:// URL` })
})

t.test('a certificate for other names is refused as such, one that expired as such', async (t) => {
  const elsewhere = await selfSignedCertificate({ sans: ['kms.example.com'], now: Date.now(), validityDays: 1 })
  const where = await listening(t, createHttpsServer({ cert: elsewhere.cert, key: elsewhere.key }, (_req, res) => res.end('{}')) as unknown as Server)
  const c = new ControlPlaneClient(`https://${where}`, 'tok', { trust: { ca: elsewhere.cert } })
  await t.rejects(c.get('/healthz'), { code: 'CP_ERR_TLS', message: /is not for 127\.0\.0\.1: it names DNS:kms\.example\.com; connect by one of those names, or give the control plane --tls-san 127\.0\.0\.1/ })

  const old = await selfSignedCertificate({ sans: ['127.0.0.1'], now: Date.now() - 10 * 86_400_000, validityDays: 2 })
  const oldAt = await listening(t, createHttpsServer({ cert: old.cert, key: old.key }, (_req, res) => res.end('{}')) as unknown as Server)
  const o = new ControlPlaneClient(`https://${oldAt}`, 'tok', { trust: { ca: old.cert } })
  await t.rejects(o.get('/healthz'), { code: 'CP_ERR_TLS', message: /expired on .*; renew it/ })

  const early = await selfSignedCertificate({ sans: ['127.0.0.1'], now: Date.now() + 10 * 86_400_000, validityDays: 2 })
  const earlyAt = await listening(t, createHttpsServer({ cert: early.cert, key: early.key }, (_req, res) => res.end('{}')) as unknown as Server)
  const e = new ControlPlaneClient(`https://${earlyAt}`, 'tok', { trust: { ca: early.cert } })
  await t.rejects(e.get('/healthz'), { code: 'CP_ERR_TLS', message: /is valid only from .*: check this machine's clock/ })
})

t.test('each reason a connection fails has its own code: refused, a name that does not resolve, no answer in time', async (t) => {
  const closed = createServer()
  const where = await listening(t, closed)
  await new Promise((r) => closed.close(r))
  await t.rejects(new ControlPlaneClient(`https://${where}`, 'tok').get('/healthz'), { code: 'CP_ERR_UNREACHABLE', message: `cannot reach the control plane at https://${where}: connection refused (is it running and listening on ${where}?)` })
  await t.rejects(new ControlPlaneClient('https://no-such-host.invalid:7400', 'tok').get('/healthz'), { code: 'CP_ERR_DNS', message: /the host name no-such-host\.invalid does not resolve/ })
  const silent = await listening(t, createServer(() => {}))
  await t.rejects(new ControlPlaneClient(`http://${silent}`, 'tok', { timeoutMs: 30 }).get('/never'), { code: 'CP_ERR_TIMEOUT', message: `the control plane at http://${silent} did not answer within 30 ms` })
})

t.test('a pin wins over a CA file; trust comes from flags before the environment', async (t) => {
  const read = async (path: string): Promise<Buffer> => Buffer.from(path === 'env.pem' ? '-----BEGIN CERTIFICATE-----env' : '-----BEGIN CERTIFICATE-----flag')
  const pin = `sha256:${'0'.repeat(64)}`
  t.same(await loadTrust({ caFile: 'flag.pem', cpFingerprint: pin }, {}, read), { fingerprint: pin })
  t.same(await loadTrust({}, { KEYMESH_CA_FILE: 'env.pem', KEYMESH_CP_FINGERPRINT: pin }, read), { fingerprint: pin })
  t.same(String((await loadTrust({ caFile: 'flag.pem' }, { KEYMESH_CA_FILE: 'env.pem' }, read)).ca), '-----BEGIN CERTIFICATE-----flag')
  t.same(await loadTrust({}, {}, read), {}, 'neither: the default trust store')
})
