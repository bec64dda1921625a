import { createServer } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import type { AddressInfo, Server } from 'node:net'
import t from 'tap'

import { selfSignedCertificate } from '../../control-plane/src/index.js'
import { TlsRefusal, connectTls, normalizeFingerprint, speaksTls } from '../../platform/src/index.js'

const HEX = 'ab'.repeat(32)

t.test('a fingerprint is read as openssl and the control plane print it, and nothing else', async (t) => {
  t.equal(normalizeFingerprint(`sha256:${HEX}`), `sha256:${HEX}`)
  t.equal(normalizeFingerprint(` SHA256:${HEX.toUpperCase().match(/../g)?.join(':')} `), `sha256:${HEX}`)
  t.equal(normalizeFingerprint(HEX), `sha256:${HEX}`)
  t.equal(normalizeFingerprint(`sha1:${HEX}`), undefined)
  t.equal(normalizeFingerprint(`sha256:${HEX}00`), undefined)
  t.equal(normalizeFingerprint('sha256:zz'), undefined)
})

async function listen(t: { teardown(fn: () => unknown): void }, server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  return (server.address() as AddressInfo).port
}

const dial = (trust: Parameters<typeof connectTls>[0], port: number): Promise<Error | null> =>
  new Promise((resolve) => connectTls(trust, { host: '127.0.0.1', port }, (err, socket) => {
    socket?.destroy()
    resolve(err)
  }))

t.test('connectTls hands the socket over only when the certificate passes; speaksTls tells TLS ports apart', async (t) => {
  const cert = await selfSignedCertificate({ sans: ['127.0.0.1'], now: Date.now(), validityDays: 1 })
  let written = 0
  const tlsPort = await listen(t, createTlsServer(cert, (s) => s.on('data', (d) => (written += d.length)).on('error', () => {})))
  t.equal(await dial({ ca: cert.cert }, tlsPort), null)
  const wrong = await dial({ fingerprint: `sha256:${HEX}` }, tlsPort)
  t.type(wrong, TlsRefusal)
  t.match(wrong, { kind: 'fingerprint', expected: `sha256:${HEX}`, actual: /^sha256:[0-9a-f]{64}$/ })
  t.match(await dial({}, tlsPort), { kind: 'unknown-ca' })
  t.equal(written, 0, 'nothing was written to the server')

  const plainPort = await listen(t, createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')))
  t.match(await dial({}, plainPort), { kind: 'not-tls', message: /does not speak TLS/ })
  t.equal(await speaksTls({ host: '127.0.0.1', port: tlsPort }, 5_000), true)
  t.equal(await speaksTls({ host: '127.0.0.1', port: plainPort }, 5_000), false)
  const silentPort = await listen(t, createServer(() => {}))
  t.equal(await speaksTls({ host: '127.0.0.1', port: silentPort }, 50), false, 'no answer within the limit')
})
