// The PostgreSQL store when the database goes away and comes back, through a
// proxy the test controls (test/kit/pg.ts): clear CP_ERR_STORE errors while
// it is gone, nothing half-written, and recovery with no help from outside.
import t from 'tap'

import { openPgStore } from '../../../control-plane/src/store/index.js'
import { pgProxy, pgSchema } from '../../kit/pg.js'
import { rejectsCode, write } from './contract.js'
import { bytes } from './fixtures.js'

async function setUp(t: Parameters<typeof pgSchema>[0]) {
  const db = await pgSchema(t)
  if (!db) return null
  const proxy = await pgProxy(t)
  const store = await openPgStore({ url: proxy.via(db.url), poolSize: 2, connectTimeoutMs: 2000 })
  t.teardown(() => store.close())
  return { proxy, store }
}

t.test('a pooled connection that died silently is replaced before the transaction starts', async (t) => {
  const env = await setUp(t)
  if (!env) return
  const { proxy, store } = env
  await store.read((r) => r.getMeta('warm'))
  const before = proxy.accepted
  proxy.staleAll()
  await write(store, (tx) => tx.putMeta('after', bytes(1)))
  t.ok(proxy.accepted > before, 'a new connection was opened')
  t.same(await store.read((r) => r.getMeta('after')), bytes(1))
})

t.test('while the database is down, calls fail with CP_ERR_STORE; once it is back, they work', async (t) => {
  const env = await setUp(t)
  if (!env) return
  const { proxy, store } = env
  await write(store, (tx) => tx.putMeta('before', bytes(1)))
  await proxy.cut()
  const where = new RegExp(`database unreachable at postgres://[^ ]*127\\.0\\.0\\.1:${proxy.port}/test: `)
  await rejectsCode(t, write(store, (tx) => tx.putMeta('during', bytes(2))), 'CP_ERR_STORE', where)
  await rejectsCode(t, store.read((r) => r.getMeta('before')), 'CP_ERR_STORE', where)
  await proxy.restore()
  await write(store, (tx) => tx.putMeta('after', bytes(3)))
  t.same(await store.read(async (r) => [await r.getMeta('before'), await r.getMeta('during'), await r.getMeta('after')]),
    [bytes(1), null, bytes(3)])
})

t.test('a connection lost at COMMIT fails the transaction and commits nothing', async (t) => {
  const env = await setUp(t)
  if (!env) return
  const { proxy, store } = env
  await rejectsCode(t, write(store, async (tx) => {
    await tx.putMeta('lost', bytes(1))
    proxy.staleAll()
  }), 'CP_ERR_STORE', /database unreachable/)
  t.equal(await store.read((r) => r.getMeta('lost')), null)
})
