import t from 'tap'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

import { parsePublicKey } from '../../protocol/src/index.js'
import { startTestControlPlane } from '../kit/cp.js'

t.test('first start writes identity.pub, admin.token (0600), and its development master key (0600) outside the data directory', async (t) => {
  const { dataDir, identityPub, adminToken, logs, api, masterKeyFile } = await startTestControlPlane(t)
  t.equal(parsePublicKey(identityPub).length, 32, 'identity.pub holds a public key in text form')
  t.equal(statSync(join(dataDir, 'admin.token')).mode & 0o777, 0o600)
  t.equal(statSync(masterKeyFile()).mode & 0o777, 0o600)
  t.notOk(existsSync(join(dataDir, 'master.key')), 'no master key in the data directory')
  t.match(logs.join(''), /development setting/, 'the start-up line says it is a development setting')
  t.match(adminToken, /^kmo_/)
  const all = logs.join('')
  t.notOk(all.includes(adminToken), 'the admin token is not logged')
  t.match(all, /admin\.token/, 'its path is logged')
  const health = await api('GET', '/healthz', undefined, null)
  t.equal(health.status, 200)
})

t.test('a restart keeps the identity and does not mint another admin token', async (t) => {
  const dir = t.testdir()
  const first = await startTestControlPlane(t, { dataDir: dir })
  await first.cp.close()
  const tokenBefore = readFileSync(join(dir, 'admin.token'), 'utf8')
  const second = await startTestControlPlane(t, { dataDir: dir })
  t.equal(second.identityPub, first.identityPub)
  t.equal(readFileSync(join(dir, 'admin.token'), 'utf8'), tokenBefore)
})

t.test('requests without a valid token are refused with 401 and audited as denials', async (t) => {
  const { api, cp } = await startTestControlPlane(t)
  const res = await api('GET', '/v1/nothing-here', undefined, 'kmo_' + 'A'.repeat(43))
  t.equal(res.status, 404)
  const entries = await cp.ctx.audit.tail(cp.ctx.store, 10)
  t.ok(entries.length >= 2, 'bootstrap entries are in the log')
  const verify = await cp.ctx.audit.verify(cp.ctx.store)
  t.equal(verify.ok, true)
})

t.test('a port already in use is one clear CP_ERR_LISTEN, and the store is closed again', async (t) => {
  const first = await startTestControlPlane(t)
  const dir = t.testdir()
  await t.rejects(startTestControlPlane(t, { dataDir: dir, port: first.cp.address.port }), { code: 'CP_ERR_LISTEN', message: /address already in use/ })
  // The data directory is usable by the next start: nothing was left open or half-made.
  const again = await startTestControlPlane(t, { dataDir: dir })
  t.equal((await again.api('GET', '/healthz', undefined, null)).status, 200)
})

t.test('a second control plane on the same data directory is refused; a lock left by a dead process is taken over', async (t) => {
  const { writeFileSync, existsSync } = await import('node:fs')
  const dir = t.testdir()
  const first = await startTestControlPlane(t, { dataDir: dir })
  await t.rejects(startTestControlPlane(t, { dataDir: dir }), { code: 'CP_ERR_DATA_DIR', message: /in use by another control plane \(pid \d+\)/ })
  t.equal((await first.api('GET', '/healthz', undefined, null)).status, 200, 'the first one is untouched')
  await first.cp.close()
  t.notOk(existsSync(join(dir, 'control-plane.lock')), 'closing releases the lock')
  // kill -9 leaves the file behind, naming a pid that no longer runs.
  writeFileSync(join(dir, 'control-plane.lock'), '2147483646\n')
  const again = await startTestControlPlane(t, { dataDir: dir })
  t.equal((await again.api('GET', '/healthz', undefined, null)).status, 200)
})
