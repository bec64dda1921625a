// Scratch probe: a control-plane child under encrypt calls from a FakeAgent, as fast
// as CONC in flight allow, printing its memory (after a forced GC) every STEP calls.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { adminApi, startChildControlPlane } from '../test/kit/cp.js'
import { FakeAgent } from '../test/kit/fake-agent.js'

const total = Number(process.argv[2] ?? 100_000)
const STEP = Number(process.env['STEP'] ?? 10_000)
const CONC = Number(process.env['CONC'] ?? 32)
const tmp = mkdtempSync(join(tmpdir(), 'cp-mem-'))
const dataDir = join(tmp, 'cp')
const cp = await startChildControlPlane({ dataDir, nodeArgs: ['--expose-gc', ...(process.env['CP_NODE_ARGS'] ?? '').split(' ').filter(Boolean)], stderr: 'inherit' })
try {
  const api = adminApi(cp.url, cp.adminToken() as string)
  await api('POST', '/v1/keys', { name: 'k', type: 'aead' })
  await api('POST', '/v1/keys/k/grants', { service: 'svc', rights: ['encrypt', 'decrypt'] })
  const token = (await api('POST', '/v1/join-tokens', { service: 'svc' })).body.token
  const a = new FakeAgent({ url: cp.url, cpKey: cp.identityPub(), service: 'svc', joinToken: token })
  await a.welcome()
  await a.keyset()
  const plaintext = new Uint8Array(1024).fill(7)
  const size = (f: string): number => { try { return statSync(f).size } catch { return 0 } }
  const mem = async (): Promise<string> => {
    const s = (await cp.ask<{ stats: { rss: number; heapUsed: number; external: number } }>('stats', 'stats')).stats
    const roll = readFileSync(`/proc/${cp.pid}/smaps_rollup`, 'utf8')
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(roll)?.[1] ?? NaN) / 1024
    const M = (n: number): string => (n / 1e6).toFixed(1)
    return `rss ${M(s.rss)} heap ${M(s.heapUsed)} ext ${M(s.external)} anon ${kb('Anonymous').toFixed(1)} file ${(kb('Rss') - kb('Anonymous')).toFixed(1)} db ${M(size(join(dataDir, 'keymesh.db')) + size(join(dataDir, 'keymesh.db-wal')))}`
  }
  console.log(`0 calls: ${await mem()}`)
  let done = 0
  let next = 0
  const t0 = Date.now()
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++
      const r = await a.request({ op: 'encrypt', key: 'k', plaintext, context: { n: String(next % 8) } })
      if (!r.ok) throw new Error(JSON.stringify(r.error))
      done++
      if (done % STEP === 0) console.log(`${done} calls (${((done * 1000) / (Date.now() - t0)).toFixed(0)}/s): ${await mem()}`)
    }
  }
  await Promise.all(Array.from({ length: CONC }, worker))
  await new Promise((r) => setTimeout(r, 2000))
  console.log(`idle 2 s: ${await mem()}`)
  await a.close()
} finally {
  await cp.stop()
  rmSync(tmp, { recursive: true, force: true })
}
