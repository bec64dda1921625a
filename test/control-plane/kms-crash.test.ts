// kill -9 during batched KMS load leaves no acknowledged call without its audit entry
// (issue 18: "acknowledged means committed"). A real control plane runs in a child
// process; an agent keeps several kms.batch requests of encrypts in flight; the child
// is killed with SIGKILL right after the Nth batch comes back answered, with others
// still in flight. The store is then opened straight from its files (read-only) and
// every item of every acknowledged batch must be listed in a kms.encrypt audit entry
// of that agent, and the chain must verify.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { createAuditLog } from '../../control-plane/src/audit.js'
import { openSqliteStore } from '../../control-plane/src/store/sqlite-store.js'
import { adminApi, startChildControlPlane } from '../kit/cp.js'
import { FakeAgent } from '../kit/fake-agent.js'

const IN_FLIGHT = 4
const ITEMS = 25

for (const killAfter of [1, 12]) {
  t.test(`SIGKILL after ${killAfter} answered kms.batch requests: every acknowledged item has its audit line`, async (t) => {
    const dataDir = t.testdir()
    const child = await startChildControlPlane({ t, dataDir })
    const api = adminApi(child.url, readFileSync(join(dataDir, 'admin.token'), 'utf8').trim())
    t.equal((await api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).status, 201)
    t.equal((await api('POST', '/v1/keys/orders/grants', { service: 'app', rights: ['encrypt'] })).status, 200)
    const joinToken = (await api('POST', '/v1/join-tokens', { service: 'app' })).body.token as string
    const agent = new FakeAgent({ url: child.url, cpKey: child.identityPub(), service: 'app', joinToken })
    t.teardown(() => void agent.close().catch(() => {}))
    await agent.welcome()
    await agent.keyset()

    // "batchId:itemId" of every item answered ok in a batch whose reply came back before the kill.
    const acked = new Set<string>()
    let answered = 0
    let killed = false
    const worker = async (): Promise<void> => {
      while (!killed) {
        const items = Array.from({ length: ITEMS }, (_, i) => ({ op: 'encrypt' as const, key: 'orders', plaintext: new Uint8Array([i]) }))
        let reply: Awaited<ReturnType<FakeAgent['requestBatch']>>
        try {
          reply = await agent.requestBatch(items)
        } catch (err) {
          if (killed) return
          throw err
        }
        if (killed) return
        for (const item of reply.items) if (item.ok) acked.add(`${reply.id}:${item.id}`)
        if (++answered >= killAfter) {
          killed = true
          child.proc.kill('SIGKILL')
        }
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
    await child.exited
    t.equal(child.proc.signalCode, 'SIGKILL', 'the child died by SIGKILL')
    t.ok(acked.size >= killAfter * ITEMS, `${acked.size} items acknowledged`)

    const store = await openSqliteStore({ dir: dataDir, readOnly: true })
    t.teardown(() => store.close())
    const entries = await store.read((r) => r.listAuditEntries({ action: 'kms.encrypt', actor: `agent:${agent.agentId}`, limit: 100_000 }))
    const audited = new Set<string>()
    for (const e of entries) {
      const d = JSON.parse(e.detailsJson) as { columns: string[]; calls: unknown[][] }
      const [id, batch] = [d.columns.indexOf('requestId'), d.columns.indexOf('batchId')]
      for (const line of d.calls) audited.add(`${String(line[batch])}:${String(line[id])}`)
    }
    const missing = [...acked].filter((k) => !audited.has(k))
    t.same(missing.slice(0, 5), [], `every acknowledged item is in the audit log (${missing.length} missing of ${acked.size})`)
    t.match(await createAuditLog().verify(store), { ok: true }, 'the audit chain verifies')
  })
}
