// Two replicas, in two processes, rotate the same pairs at the same instant: one
// rotation per pair, not two. First through the scheduler (both tick at once; the
// lease lets one of them run the pass), then with the lease bypassed (both run the
// rotation pass itself at once): the store serialises their write transactions
// across processes and each re-checks "still due?" inside its own, so the second
// finds nothing left to do.
import t from 'tap'

import { createAuditLog } from '../../control-plane/src/index.js'
import { openPgStore } from '../../control-plane/src/index.js'
import { DAY } from '../../platform/src/index.js'
import { pairId } from '../../protocol/src/index.js'
import { installation, leaseHolders, startCluster, type ChildReplica } from './replicas.js'

const PEERS = ['api', 'db', 'cache', 'queue']
const PAIRS = PEERS.map((p) => pairId('web', p))

t.test('two replicas rotating the same due pairs at the same instant rotate each pair once', async (t) => {
  const i = await installation(t)
  if (!i) return
  const c = await startCluster(t, i, ['a', 'b'])
  const [a, b] = c.replicas as [ChildReplica, ChildReplica]
  for (const dst of PEERS) t.equal((await c.handle(a).api('POST', '/v1/intentions', { src: 'web', dst })).status, 201, `web -> ${dst}`)
  const store = await openPgStore({ url: i.db.url, readOnly: true, poolSize: 1 })
  t.teardown(() => store.close())
  const versions = () => store.read(async (r) => Promise.all(PAIRS.map(async (p) => (await r.listKeyVersions({ keyName: p })).map((v) => v.version))))
  // A pass that finds a pair no longer due audits that it changed nothing; a rotation's entry names its version.
  const scheduled = async () =>
    (await store.read((r) => r.listAuditEntries({ action: 'pair.rotate', actor: 'system:scheduler', outcome: 'ok', limit: 1000 })))
      .map((e) => (JSON.parse(e.detailsJson) as { version?: number }).version)
      .filter((v) => v !== undefined)

  const both = async (cmd: string, key: string) => Promise.all([a.ask(cmd, key), b.ask(cmd, key)])
  await both(`jump ${DAY}`, 'now')
  await both('tick', 'ticked')
  t.same(await versions(), PAIRS.map(() => [1, 2]), 'scheduler passes at once: one new version per pair')
  t.same(await scheduled(), PAIRS.map(() => 2), 'one scheduled pair.rotate per pair')
  t.equal((await leaseHolders(i)).length, 1, 'one replica holds the lease')

  await both(`jump ${DAY}`, 'now')
  const [ra, rb] = (await both('pass', 'rotated')) as unknown as Array<{ rotated: number }>
  t.equal(ra!.rotated + rb!.rotated, PAIRS.length, `the two passes rotated ${ra!.rotated} and ${rb!.rotated}: each pair once`)
  t.same(await versions(), PAIRS.map(() => [1, 2, 3]), 'overlapping passes without the lease: still one new version per pair')
  t.same(await scheduled(), [...PAIRS.map(() => 2), ...PAIRS.map(() => 3)], 'one more pair.rotate per pair, none twice')
  t.match(await createAuditLog().verify(store), { ok: true }, 'the audit chain verifies: no fork')
})
