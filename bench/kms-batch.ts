// npm run build && node dist/bench/kms-batch.js [--seconds N] [--calls N] [--items N] [--bytes N] [--rows batched,single]
//
// KMS encrypt throughput through one agent session, on loopback: the control
// plane alone in a child process (test/kit/cp-child.ts, real SQLite with
// synchronous=FULL, real clock), one simulated agent here (test/kit/fake-agent.ts:
// real Noise XK, real records, real JSON). Two rows, measured in the same run:
//
//   batched — calls of --items (default 100) encrypts of --bytes (default 1 KiB),
//             each split with planKmsBatches into kms.batch messages, --calls
//             (default 20: 2,000 items, just under the control plane's 2,048
//             per agent) calls in flight: the issue's ≥ 50,000 items/s target;
//   single  — the same items as one kms.request each, as many in flight
//             (the issue's ≥ 5,000/s target for single calls).
//
// Prints items/s and the control plane's CPU while measured (100% = one core,
// from /proc/<pid>/stat). Both processes share this machine's cores, so the
// single row is the baseline to read the batched one against. Everything stops
// by itself: the child exits when its stdin closes, and a deadline ends the run.
// KMS_BENCH_CP_ARGS passes node flags to the control plane (e.g. --cpu-prof).
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { planKmsBatches, type KmsBatchItem } from '../protocol/src/index.js'
import { startChildControlPlane } from '../test/kit/cp.js'
import { FakeAgent } from '../test/kit/fake-agent.js'
import { cpuSeconds } from './measure.js'
import { installHardStop } from './tunnel-procs.js'

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const SECONDS = arg('seconds', 5)
const CALLS = arg('calls', 20)
const ITEMS = arg('items', 100)
const BYTES = arg('bytes', 1024)
const ROWS = process.argv.includes('--rows') ? String(process.argv[process.argv.indexOf('--rows') + 1]).split(',') : ['batched', 'single']

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keymesh-kms-bench-'))
  installHardStop('bench:kms-batch', dataDir, (SECONDS * 2 + 60) * 1000)
  const nodeArgs = (process.env['KMS_BENCH_CP_ARGS'] ?? '').split(' ').filter((a) => a !== '')
  const child = await startChildControlPlane({ dataDir, nodeArgs, stderr: 'inherit' })
  try {
    const { url, pid } = child
    const token = child.adminToken() as string
    const api = async (method: string, path: string, body: unknown): Promise<any> => {
      const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status}`)
      return res.json()
    }
    await api('POST', '/v1/keys', { name: 'bench', type: 'aead' })
    await api('POST', '/v1/keys/bench/grants', { service: 'app', rights: ['encrypt'] })
    const { token: joinToken } = await api('POST', '/v1/join-tokens', { service: 'app' })
    const agent = new FakeAgent({ url, cpKey: child.identityPub(), service: 'app', joinToken })
    await agent.welcome()
    await agent.keyset() // the control plane answers nothing before its first key set is out

    const plaintext = new Uint8Array(BYTES).fill(0x5a)
    const item = (): Omit<KmsBatchItem, 'id'> => ({ op: 'encrypt', key: 'bench', plaintext })
    const batchCall = async (): Promise<number> => {
      const items = Array.from({ length: ITEMS }, () => ({ ...item(), id: agent.nextKmsId() }))
      const replies = await Promise.all(planKmsBatches(items).map((group) => agent.requestBatch(group)))
      return replies.reduce((n, r) => n + r.items.filter((i) => i.ok).length, 0)
    }
    const singleCall = async (): Promise<number> => {
      const replies = await Promise.all(Array.from({ length: ITEMS }, () => agent.request(item())))
      return replies.filter((r) => r.ok).length
    }

    const run = async (call: () => Promise<number>, seconds: number): Promise<{ itemsPerSec: number; cpu: number; agentCpu: number }> => {
      let ok = 0
      let stop = false
      const t0 = performance.now()
      const c0 = cpuSeconds(pid)
      const a0 = process.cpuUsage()
      const worker = async (): Promise<void> => {
        while (!stop) {
          const answered = await call() // not `ok += await …`: that would read `ok` before the await
          ok += answered
          agent.messages.length = 0 // the fake agent keeps every message; drop them as we go
        }
      }
      const workers = Array.from({ length: CALLS }, worker)
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
      stop = true
      await Promise.all(workers)
      const elapsed = (performance.now() - t0) / 1000
      const cpu = ((cpuSeconds(pid) - c0) / elapsed) * 100
      const a = process.cpuUsage(a0)
      return { itemsPerSec: ok / elapsed, cpu, agentCpu: ((a.user + a.system) / 1e6 / elapsed) * 100 }
    }

    const none = { itemsPerSec: NaN, cpu: NaN, agentCpu: NaN }
    const batched = ROWS.includes('batched') ? (await run(batchCall, 1), await run(batchCall, SECONDS)) : none
    const single = ROWS.includes('single') ? (await run(singleCall, 1), await run(singleCall, SECONDS)) : none
    const perMessage = planKmsBatches(Array.from({ length: ITEMS }, (_, i) => ({ ...item(), id: i + 1 }))).map((g) => g.length)
    console.log(`machine: ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${SECONDS} s per row, ${CALLS} calls of ${ITEMS} x ${BYTES} B in flight`)
    const row = (name: string, r: typeof none, how: string): void => {
      if (!Number.isNaN(r.itemsPerSec)) console.log(`${name} ${Math.round(r.itemsPerSec).toLocaleString('en')} items/s (${how}; control plane CPU ${r.cpu.toFixed(0)}%, agent ${r.agentCpu.toFixed(0)}%)`)
    }
    row('batched:', batched, `kms.batch messages of ${perMessage.join('+')} items`)
    row('single: ', single, 'one kms.request each')
    if (!Number.isNaN(batched.itemsPerSec / single.itemsPerSec)) console.log(`ratio:   ${(batched.itemsPerSec / single.itemsPerSec).toFixed(2)}x`)
    await agent.close()
  } finally {
    await child.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

await main()
