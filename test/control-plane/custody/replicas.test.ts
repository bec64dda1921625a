// Share custody on PostgreSQL: every replica starts sealed and is unsealed on its own;
// a rekey on one replica stops none, and the others unseal with the new shares.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { ADMIN_TOKEN_FILE, initCustody } from '../../../control-plane/src/index.js'
import { startTestControlPlane, type TestControlPlane } from '../../kit/cp.js'
import { captureLogger } from '../../kit/logs.js'
import { pgSchema } from '../../kit/pg.js'

const unseal = (h: TestControlPlane, share: string) => h.api('POST', '/v1/sys/unseal', { share }, null)

t.test('replicas on PostgreSQL unseal each on their own; a rekey on one re-wraps for all', async (t) => {
  const db = await pgSchema(t)
  if (!db) return
  const base = t.testdir()
  const made = await initCustody({ dataDir: join(base, 'init'), storeUrl: db.url, shares: 3, threshold: 2, logger: captureLogger().logger })
  const shares = made.shares as string[]
  const r1 = await startTestControlPlane(t, { dataDir: join(base, 'r1'), storeUrl: db.url, adminToken: 'kmo_none' })
  const r2 = await startTestControlPlane(t, { dataDir: join(base, 'r2'), storeUrl: db.url, adminToken: 'kmo_none', clock: r1.clock })
  t.ok(r1.cp.keyring.sealed && r2.cp.keyring.sealed, 'both start sealed')

  await unseal(r1, shares[0] as string)
  await unseal(r1, shares[1] as string)
  t.notOk(r1.cp.keyring.sealed, 'r1 is unsealed')
  t.ok(r2.cp.keyring.sealed, 'r2 is not: each replica is unsealed on its own')
  t.equal((await r2.api('GET', '/readyz', undefined, null)).status, 503)

  const token = readFileSync(join(base, 'r1', ADMIN_TOKEN_FILE), 'utf8').trim()
  const rekeyed = await r1.api('POST', '/v1/sys/rekey', { shares: 3, threshold: 2 }, token)
  t.equal(rekeyed.status, 200)
  await unseal(r2, shares[0] as string)
  t.match((await unseal(r2, shares[2] as string)).body, { error: { code: 'CP_ERR_UNSEAL_SHARES' } }, 'the old shares no longer unseal r2')
  await unseal(r2, rekeyed.body.shares[1])
  t.match((await unseal(r2, rekeyed.body.shares[2])).body, { sealed: false }, 'the new ones do')
  t.equal((await r2.api('POST', '/v1/keys', { name: 'orders', type: 'aead' }, token)).status, 201, 'r2 serves')
  t.equal((await r1.api('GET', '/v1/keys/orders', undefined, token)).status, 200, 'and r1 never stopped')
})
