// kill -9 loses no acknowledged change: a real control plane runs in a child
// process, rotations stream at it with several in flight, and it is killed with
// SIGKILL right after the Nth acknowledgement, with no warning and requests still
// in flight. The store and the audit chain are then opened straight from the
// files (read-only, as `audit verify --data-dir` does) and must show every
// acknowledged rotation, contiguous versions, a primary on the last one, and an
// intact chain with one key.rotate entry per version after the first.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { main } from '../../cli/index.js'
import { createAuditLog } from '../../control-plane/src/audit.js'
import { openSqliteStore } from '../../control-plane/src/store/sqlite-store.js'
import { adminApi, startChildControlPlane, type ChildControlPlane } from '../kit/cp.js'

const IN_FLIGHT = 6

type Child = ChildControlPlane

/**
 * Rotates `key` with IN_FLIGHT requests outstanding at all times; on the `killAfter`th
 * 2xx answer, SIGKILLs the child at once. Resolves with the acknowledged versions
 * once every request has settled (answered or failed).
 */
async function rotateUntilKilled(child: Child, token: string, key: string, killAfter: number): Promise<{ acked: number[]; failed: number }> {
  const acked: number[] = []
  let failed = 0
  let killed = false
  const worker = async (): Promise<void> => {
    while (!killed) {
      try {
        const res = await adminApi(child.url, token)('POST', `/v1/keys/${key}/rotate`)
        if (res.status !== 200) throw new Error(`rotate answered ${res.status}: ${JSON.stringify(res.body)}`)
        acked.push(res.body.version as number)
        if (acked.length >= killAfter && !killed) {
          killed = true
          child.proc.kill('SIGKILL')
        }
      } catch (err) {
        if (!killed) throw err
        failed++
      }
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return { acked, failed }
}

for (const killAfter of [1, 9, 31]) {
  t.test(`SIGKILL after ${killAfter} acknowledged rotations loses none of them`, async (t) => {
    const dataDir = t.testdir()
    // Through the CLI's main, exactly as `keymesh control-plane` runs.
    const child = await startChildControlPlane({ t, dataDir, cli: true })
    const admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim()
    const api = adminApi(child.url, admin)
    t.equal((await api('POST', '/v1/keys', { name: 'orders', type: 'aead' })).status, 201)
    const minted = await api('POST', '/v1/tokens', { name: 'rotator', role: 'operator' })
    t.equal(minted.status, 201)

    const { acked } = await rotateUntilKilled(child, minted.body.token as string, 'orders', killAfter)
    await child.exited
    t.equal(child.proc.signalCode, 'SIGKILL', 'the child died by SIGKILL, not by a clean shutdown')
    t.ok(acked.length >= killAfter)

    const store = await openSqliteStore({ dir: dataDir, readOnly: true })
    t.teardown(() => store.close())
    const { key, versions, token, rotations } = await store.read(async (r) => ({
      key: await r.getKey('orders'),
      versions: await r.listKeyVersions({ keyName: 'orders' }),
      token: await r.getOperatorToken(minted.body.id as string),
      rotations: await r.listAuditEntries({ action: 'key.rotate', target: 'key:orders', outcome: 'ok', limit: 10_000 }),
    }))
    const numbers = versions.map((v) => v.version)
    const last = numbers.length
    t.same(numbers, Array.from({ length: last }, (_, i) => i + 1), 'versions are contiguous from 1')
    t.ok(last >= 1 + acked.length, `all ${acked.length} acknowledged rotations are there (last version ${last})`)
    t.same(acked.filter((v) => !numbers.includes(v)), [], 'every acknowledged version exists')
    t.equal(key?.primaryVersion, last, 'the primary is the last version: no half-applied rotation')
    t.ok(versions.every((v) => v.sealedMaterial !== null && v.sealedMaterial.length > 0), 'every version has its sealed material')
    t.ok(token, 'the token created before the crash survived')

    const audited = rotations.map((e) => (JSON.parse(e.detailsJson) as { keyVersion: number }).keyVersion).sort((a, b) => a - b)
    t.same(audited, numbers.slice(1), 'one key.rotate entry for every version after the first, and none for a lost one')
    t.match(await createAuditLog().verify(store), { ok: true }, 'the audit chain verifies')

    let out = ''
    const code = await main(['audit', 'verify', '--data-dir', dataDir, '--json'], { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true }, env: {} })
    t.equal(code, 0, 'keymesh audit verify --data-dir agrees')
    t.match(JSON.parse(out), { ok: true })
  })
}
