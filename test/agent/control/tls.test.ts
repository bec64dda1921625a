// Agents and a control plane serving TLS with its made certificate: the control
// session runs over wss:// when the certificate passes (its CA file or its pinned
// fingerprint), and a certificate that does not pass is AGENT_ERR_TLS, said as such.
import { readFileSync } from 'node:fs'
import t from 'tap'

import { startTestAgent } from '../../kit/agent.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { until } from '../../kit/wait.js'

t.test('agents enrol and keep their control session over TLS, trusting the CA file or the pinned fingerprint', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  t.equal((await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const api = await startTestAgent(t, h, { service: 'api' })
  const web = await startTestAgent(t, h, { service: 'web', cpTrust: { fingerprint: h.cp.tlsFingerprint as string } })
  for (const a of [api, web]) {
    // Started means welcomed; the key set arrives just after.
    await until(() => a.agent.status().ready, `${a.config.service} to be ready`)
    t.match(a.agent.status(), { ready: true, controlPlane: { state: 'connected', url: `${h.cp.url.replace('https:', 'wss:')}/v1/agent` } })
  }
  await until(() => web.agent.keyset.pairs().length === 1 && api.agent.keyset.pairs().length === 1, 'both agents to receive the pair over TLS')
  t.equal(h.cp.endpoint.connectedCount(), 2)
})

t.test('an agent whose pin is not the control plane\'s certificate fails with AGENT_ERR_TLS, naming both fingerprints', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  const first = await startTestAgent(t, h, { service: 'api' })
  await first.agent.close()
  const wrong = `sha256:${'ab'.repeat(32)}`
  // Enrolled already, so it starts on its cached key set and keeps trying the control plane.
  const again = await startTestAgent(t, h, { service: 'api', stateDir: first.stateDir, enroll: false, cpTrust: { fingerprint: wrong } })
  await until(() => again.agent.status().controlPlane.lastError === 'AGENT_ERR_TLS', 'the control session to fail on the certificate')
  t.equal(again.agent.status().controlPlane.state === 'connected', false)
  const line = again.logs.find((l) => l.includes('AGENT_ERR_TLS')) ?? ''
  t.match(line, /"level":50/, 'logged as an error')
  t.match(line, /TLS certificate was not accepted/)
  t.match(line, `not the pinned ${wrong}`)
  t.match(line, h.cp.tlsFingerprint as string)
  t.equal(h.cp.endpoint.connectedCount(), 0, 'nothing reached the agent endpoint')
})

t.test('an agent that trusts only the default store refuses the self-signed certificate', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  const first = await startTestAgent(t, h, { service: 'api' })
  await first.agent.close()
  const ca = readFileSync(h.caFile as string, 'utf8')
  t.match(ca, /BEGIN CERTIFICATE/)
  const again = await startTestAgent(t, h, { service: 'api', stateDir: first.stateDir, enroll: false, cpTrust: {} })
  await until(() => again.agent.status().controlPlane.lastError === 'AGENT_ERR_TLS', 'the control session to fail on the certificate')
  t.match(again.logs.join('\n'), /is not signed by a CA of the default trust store \(DEPTH_ZERO_SELF_SIGNED_CERT\)/)
})

t.test('an agent that dials the TLS port with plain ws:// is told the port serves TLS', async (t) => {
  const h = await startTestControlPlane(t, { madeTls: true })
  const first = await startTestAgent(t, h, { service: 'api' })
  await first.agent.close()
  const plain = h.cp.url.replace('https:', 'http:')
  const again = await startTestAgent(t, h, { service: 'api', stateDir: first.stateDir, enroll: false, cpUrls: [plain], cpTrust: undefined })
  await until(() => again.agent.status().controlPlane.lastError === 'AGENT_ERR_TLS', 'the agent to find out the port serves TLS')
  t.match(again.logs.join('\n'), `the control plane serves TLS on this port: use ${h.cp.url} with --ca-file or --cp-fingerprint`)
})
