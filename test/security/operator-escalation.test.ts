// Finding: the `operator` role could create a join token for any service and grant any
// service rights on any key, so an operator token alone could enrol an agent as a
// service it chose, grant that service decrypt, and read everything — while only token
// management was reserved to `admin`. The attack, step by step, with an operator token:
// each step that would confer use of a key is refused, audited, and changes nothing.
import t from 'tap'
import { startTestControlPlane } from '../kit/cp.js'

t.test('an operator token cannot mint a service identity or grant itself decrypt', async (t) => {
  const tcp = await startTestControlPlane(t)
  const { api } = tcp
  t.equal((await api('POST', '/v1/keys', { name: 'payroll', type: 'aead' })).status, 201)
  const minted = await api('POST', '/v1/tokens', { name: 'ops', role: 'operator' })
  t.equal(minted.status, 201)
  const operator = minted.body.token as string

  const join = await api('POST', '/v1/join-tokens', { service: 'mallory' }, operator)
  t.equal(join.status, 403, 'no join token for a service of the operator\'s choosing')
  t.equal(join.body.error.code, 'CP_ERR_FORBIDDEN')
  t.notOk('token' in join.body, 'no token in the refusal')

  const grant = await api('POST', '/v1/keys/payroll/grants', { service: 'mallory', rights: ['decrypt'] }, operator)
  t.equal(grant.status, 403, 'no grant of decrypt')
  t.equal(grant.body.error.code, 'CP_ERR_FORBIDDEN')

  const grants = await api('GET', '/v1/keys/payroll/grants', undefined, operator)
  t.equal(grants.status, 200, 'the operator still reads grants')
  t.same(grants.body.grants, [], 'and none was made')

  const [entry] = await tcp.cp.ctx.audit.tail(tcp.cp.ctx.store, 1)
  t.match(entry, { action: 'key.grant', outcome: 'deny', reason: /grants and join tokens are admin-only/ }, 'the refusal is audited with its reason')

  // What stays the operator's: the key lifecycle and intentions.
  t.equal((await api('POST', '/v1/keys/payroll/rotate', undefined, operator)).status, 200)
  t.equal((await api('POST', '/v1/intentions', { src: 'web', dst: 'api' }, operator)).status, 201)
})
