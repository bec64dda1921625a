import { statSync, writeFileSync, readFileSync } from 'node:fs'
import { X509Certificate, createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'

import { selfSignedCertificate, setupServerTls, tlsSans } from '../../../control-plane/src/http/tls.js'
import { checkServerTls } from '../../../control-plane/src/http/tls.js'
import { FakeClock, DAY } from '../../kit/fake-clock.js'
import { captureLogger } from '../../kit/logs.js'

const setup = (dataDir: string, over: Partial<Parameters<typeof setupServerTls>[0]> = {}) => {
  const { logger, logs } = captureLogger()
  const clock = over.clock ?? new FakeClock(Date.now())
  return { logs, run: () => setupServerTls({ dataDir, host: '127.0.0.1', clock, logger, ...over }) }
}

t.test('the first start makes a self-signed certificate in the data directory; later starts load it', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const first = setup(dir, { host: '10.1.2.3', sans: ['kms.example.com'] })
  const made = await first.run()
  t.equal(made.source, 'created')
  for (const f of ['tls.crt', 'tls.key']) t.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`)
  const x = new X509Certificate(readFileSync(join(dir, 'tls.crt')))
  t.equal(made.fingerprint, `sha256:${createHash('sha256').update(x.raw).digest('hex')}`, 'the fingerprint is the SHA-256 of the DER')
  t.equal(x.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.1.2.3, DNS:kms.example.com')
  t.ok(x.verify(x.publicKey), 'self-signed')
  t.notOk(x.ca, 'not a CA')
  t.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  const days = (Date.parse(x.validTo) - Date.now()) / DAY
  t.ok(days > 364 && days <= 365, `valid for a year (${days.toFixed(2)} days)`)
  t.match(first.logs.join('\n'), made.fingerprint, 'the fingerprint is logged')
  t.notMatch(first.logs.join('\n'), /PRIVATE KEY/, 'the key is not')

  const again = await setup(dir, { host: '10.1.2.3', sans: ['kms.example.com'] }).run()
  t.same([again.source, again.fingerprint], ['data-dir', made.fingerprint], 'the same certificate on the next start')
})

t.test('a made certificate that ends soon, or lacks a name now asked for, is warned about at start', async (t) => {
  const dir = t.testdir()
  const clock = new FakeClock(Date.now())
  await setup(dir, { clock, validityDays: 40 }).run()
  const quiet = setup(dir, { clock })
  await quiet.run()
  t.notMatch(quiet.logs.join('\n'), /expires soon|does not name/)
  clock.advance(15 * DAY)
  const soon = setup(dir, { clock, sans: ['kms.example.com', '::2'] })
  await soon.run()
  t.match(soon.logs.join('\n'), /expires soon: remove tls.crt and tls.key/)
  t.match(soon.logs.join('\n'), /does not name kms.example.com, ::2/)
  clock.advance(30 * DAY)
  const expired = setup(dir, { clock })
  await expired.run()
  t.match(expired.logs.join('\n'), /"level":50.*has expired and clients refuse it/)
})

t.test('the operator\'s certificate and key are served as given, and checked first', async (t) => {
  const dir = t.testdir()
  const a = await selfSignedCertificate({ sans: ['kms.example.com'], now: Date.now(), validityDays: 30 })
  const b = await selfSignedCertificate({ sans: ['kms.example.com'], now: Date.now(), validityDays: 30 })
  writeFileSync(join(dir, 'a.crt'), a.cert)
  writeFileSync(join(dir, 'a.key'), a.key)
  writeFileSync(join(dir, 'b.key'), b.key)
  writeFileSync(join(dir, 'junk'), 'not pem')
  const ok = await setup(join(dir, 'cp'), { certFile: join(dir, 'a.crt'), keyFile: join(dir, 'a.key') }).run()
  t.same([ok.source, ok.cert], ['files', a.cert])
  const refused = (certFile: string | undefined, keyFile: string | undefined) => setup(join(dir, 'cp'), { certFile, keyFile }).run().then(() => 'started', (e: { code?: string }) => e.code)
  t.equal(await refused(join(dir, 'a.crt'), join(dir, 'b.key')), 'CP_ERR_TLS_CERT', 'a key that is not the certificate\'s')
  t.equal(await refused(join(dir, 'missing.crt'), join(dir, 'a.key')), 'CP_ERR_TLS_CERT', 'a missing file')
  t.equal(await refused(join(dir, 'junk'), join(dir, 'a.key')), 'CP_ERR_TLS_CERT', 'a certificate file without a certificate')
  t.equal(await refused(join(dir, 'a.crt'), join(dir, 'junk')), 'CP_ERR_TLS_CERT', 'a key file without a key')
  t.equal(await refused(join(dir, 'a.crt'), undefined), 'CP_ERR_USAGE', '--tls-cert without --tls-key')
  t.throws(() => checkServerTls({ cert: a.cert, key: b.key }), { code: 'CP_ERR_TLS_CERT', message: /is not the private key of the certificate/ })
})

t.test('--tls-san takes DNS names and IP addresses only; the any-address is not a name', async (t) => {
  t.same(tlsSans('0.0.0.0', ['kms.internal', '[fd00::1]']), ['localhost', '127.0.0.1', '::1', 'kms.internal', 'fd00::1'])
  t.same(tlsSans('[::]', []), ['localhost', '127.0.0.1', '::1'])
  t.same(tlsSans('localhost', ['127.0.0.1']), ['localhost', '127.0.0.1', '::1'], 'each name once')
  t.throws(() => tlsSans('127.0.0.1', ['https://kms.internal/']), { code: 'CP_ERR_USAGE', message: /neither a DNS name nor an IP address/ })
})
