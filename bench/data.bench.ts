// npm run bench:data [-- --quick] — the data API and drops (issue 5, "Performance").
//
// A control plane (test/kit/cp-child.ts) and one `keymesh agent --api` run as child
// processes; the load comes from this process (bench/data-load.ts):
//   1. encrypt and decrypt through the agent's API, one 1 KiB item per request,
//      CONC keep-alive clients: ops/s, p50/p99 latency
//   2. the same in batches of 100 items per request: items/s
//   (1 and 2 also sign with an ed25519 key and MAC with an hmac-sha256 key, 1 KiB messages)
//   3. `keymesh drop seal` and `drop open` of a 1 GiB file (--quick: 64 MiB; a sparse
//      file, read once beforehand so that both start from the page cache) as CLI
//      child processes: MB/s end to end (node start, KMS call, fsync and rename
//      included) and without the fixed cost of an empty drop, and peak RSS (VmHWM)
// Baselines in the same run, on the same machine load:
//   - node:crypto ChaCha20-Poly1305 MB/s on 64 KiB chunks, in this process
//   - a bare node:http echo server (test/kit/echo-child.ts, a child process) under the
//     same clients with the same 1 KiB-item body: req/s
// then ratios and the targets, PASS or MISS. MB = 10^6 bytes. CPU per
// process is shown beside each API rate, to tell which process limits it.
//   (2 also as binary bodies, application/octet-stream: agent/src/kms/binary-body.ts)
// With drops, Debian's `age` seals and opens the same file (then `sync`s it, as keymesh
// fsyncs; bench/data-age.ts installs age when missing and root) as their baseline.
// BENCH_DATA_BASELINE=DIR adds a control plane and an agent of another built checkout
// (DIR/dist/test/kit/cp-child.js, DIR/bin/keymesh.js; e.g. main before a change) under
// the same batched load (JSON bodies): before/after in one run, on one machine load.
// BENCH_DATA_ROUNDS=N runs the batched rows in N interleaved rounds and keeps each row's best.
// --batched-only measures the batched rows alone (no single calls, signatures or drops).
// BENCH_DATA_CONC=N changes the number of single-call clients (default 64);
// BENCH_DATA_PROF=DIR runs the agent and the control plane with --cpu-prof into DIR
// (profiling; the figures drop a little). Everything
// binds 127.0.0.1, stops by itself (a hard deadline kills every child) and removes
// its temp dir.
import { randomBytes, createCipheriv } from 'node:crypto'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

import { decodeBinaryAnswers, encodeBinaryBatch } from '../agent/src/index.js'
import { ageRun, ensureAge } from './data-age.js'
import { sparseFile, timedCli, type CliRun } from './data-drop.js'
import { httpLoad, type LoadResult } from './data-load.js'
import { startChildControlPlane } from '../test/kit/cp.js'
import { startChildEcho } from '../test/kit/echo.js'
import { GiveUp, until } from '../test/kit/wait.js'
import { bestOf, cpuMeter, fmt, measure, pct, percentile, ratio, table, verdict } from './measure.js'
import { AgentChild, freePort, installHardStop, requestJson } from './tunnel-procs.js'

const quick = process.argv.includes('--quick')
const batchedOnly = process.argv.includes('--batched-only')
const BASELINE = process.env['BENCH_DATA_BASELINE']
/** Interleaved rounds of the batched rows (best kept): BENCH_DATA_ROUNDS, default 3 with a baseline, else 1. */
const ROUNDS = Math.max(1, Number(process.env['BENCH_DATA_ROUNDS'] ?? (BASELINE !== undefined ? 3 : 1)))
const MIB = 1024 * 1024
const CFG = quick
  ? { warmMs: 300, measureMs: 1_500, dropBytes: 64 * MIB, deadlineMs: 240_000 }
  : { warmMs: 1_000, measureMs: 4_000, dropBytes: 1024 * MIB, deadlineMs: 400_000 }
const CONC = Number(process.env['BENCH_DATA_CONC'] ?? 64)
const BATCH = 100
const BATCH_CONC = 8
const ITEM = 1024
const KEY = 'bench-data'
const SIGN_KEY = 'bench-sign'
const MAC_KEY = 'bench-mac'
const SERVICE = 'bench'
const TARGET = { single: 5_000, batched: 50_000, batchedBinary: 80_000, cpuPerItemUs: 30, dropMBps: 300, rssMB: 100 }
const MB = 1e6
const PROF = process.env['BENCH_DATA_PROF']
const profArgs = PROF ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`] : []

const here = dirname(fileURLToPath(import.meta.url))
const bin = join(here, '..', '..', 'bin', 'keymesh.js')
const started = performance.now()
const tmp = mkdtempSync(join(tmpdir(), 'keymesh-bench-data-'))

installHardStop('bench:data', tmp, CFG.deadlineMs)

/** Raw ChaCha20-Poly1305 on 64 KiB chunks, MB/s. */
function rawAead(): number {
  const key = randomBytes(32)
  const nonce = Buffer.alloc(12)
  const chunk = randomBytes(64 * 1024)
  const r = bestOf(3, () => measure(() => {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
    c.update(chunk)
    c.final()
    c.getAuthTag()
  }, 400, 100))
  return (r.opsPerSec * chunk.length) / MB
}

const noFailedBinary = (body: Buffer): string | undefined => {
  const bad = decodeBinaryAnswers(body).find((r) => !r.ok)
  return bad !== undefined && !bad.ok ? `item failed: ${bad.error.code}` : undefined
}

const noFailedItems = (text: string): string | undefined => {
  const j = JSON.parse(text) as { items: Array<{ ok: boolean; error?: { code: string } }> }
  const bad = j.items.find((i) => !i.ok)
  return bad ? `item failed: ${bad.error?.code}` : undefined
}

const children: Array<{ stop(): Promise<void> }> = []
const rows: Array<Array<string | number>> = []
const targets: Array<Array<string | number>> = []
type Measured = LoadResult & { cpu: Record<string, number> }
/** CPU µs per operation from a process's % of a core and the rate (the CPU of the warm-up is in the %, so it is approximate). */
const perOp = (cpu: number | undefined, opsPerSec: number): string => (cpu === undefined || !(opsPerSec > 0) ? '-' : ((cpu / 100) * 1e6 / opsPerSec).toFixed(1))
const loadRow = (what: string, r: Measured, unit: string): void => {
  if (r.requests === 0 && r.errors === 0 && Object.keys(r.cpu).length === 0) return // not measured (--batched-only)
  rows.push([
    what, `${fmt(r.opsPerSec)} ${unit}`, fmt(percentile(r.latencies, 50)), fmt(percentile(r.latencies, 99)),
    pct(r.cpu['bench']), pct(r.cpu['server']), pct(r.cpu['cp']), perOp(r.cpu['server'], r.opsPerSec), perOp(r.cpu['cp'], r.opsPerSec),
    r.errors === 0 ? '-' : `${r.errors} (${(r.firstError ?? '').slice(0, 60)})`,
  ])
}

try {
  console.log(`keymesh data benchmark — node ${process.version}, ${quick ? 'quick' : 'full'} run, ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  const busy = loadavg()[0] ?? 0
  if (busy > cpus().length * 0.75) console.log(`warning: load average ${busy.toFixed(2)} on ${cpus().length} cores: other work competes for the CPU, so the figures will be low and noisy`)

  // ---- set-up: control plane, key, grants, one agent with its API
  const cp = await startChildControlPlane({ dataDir: join(tmp, 'cp'), nodeArgs: profArgs, stderr: 'inherit' })
  children.push(cp)
  const url = cp.url
  const token = cp.adminToken() as string
  await requestJson('POST', `${url}/v1/keys`, { name: KEY, type: 'aead' }, token)
  await requestJson('POST', `${url}/v1/keys/${KEY}/grants`, { service: SERVICE, rights: ['encrypt', 'decrypt', 'generate-data-key'] }, token)
  await requestJson('POST', `${url}/v1/keys`, { name: SIGN_KEY, type: 'ed25519' }, token)
  await requestJson('POST', `${url}/v1/keys/${SIGN_KEY}/grants`, { service: SERVICE, rights: ['sign'] }, token)
  await requestJson('POST', `${url}/v1/keys`, { name: MAC_KEY, type: 'hmac-sha256' }, token)
  await requestJson('POST', `${url}/v1/keys/${MAC_KEY}/grants`, { service: SERVICE, rights: ['hmac'] }, token)
  const joinToken = ((await requestJson('POST', `${url}/v1/join-tokens`, { service: SERVICE }, token)) as { token: string }).token
  const [apiPort, tunnelPort] = [await freePort(), await freePort()]
  const agent = new AgentChild('agent', apiPort, bin, [
    '--cp', url, '--cp-key-file', join(tmp, 'cp', 'identity.pub'), '--service', SERVICE, '--join-token', joinToken,
    '--state-dir', join(tmp, 'agent'), '--tunnel-listen', `127.0.0.1:${tunnelPort}`, '--api', `127.0.0.1:${apiPort}`, '--log-level', 'warn',
  ], profArgs)
  children.push(agent)
  await until(async () => {
    if (!agent.running) throw new GiveUp(`agent exited: ${agent.log.slice(-5).join(' | ')}`)
    const s = (await agent.status()) as unknown as { ready: boolean; controlPlane?: { state: string } }
    return s.ready && s.controlPlane?.state === 'connected' ? true : undefined
  }, 'the agent connected', { ms: 30_000, everyMs: 100, retryErrors: true })
  const { child: echo, port: echoPort } = await startChildEcho()
  children.push(echo)
  console.log(`control plane pid ${cp.pid}, agent pid ${agent.pid} (API 127.0.0.1:${apiPort}), echo pid ${echo.pid}; load from pid ${process.pid}`)

  // ---- bodies: 1 KiB items, and ciphertexts of them for decrypt
  const plaintexts = Array.from({ length: 64 }, () => randomBytes(ITEM).toString('base64'))
  const single = plaintexts.map((p) => Buffer.from(JSON.stringify({ key: KEY, plaintext: p })))
  const batch = Buffer.from(JSON.stringify({ items: Array.from({ length: BATCH }, (_, i) => ({ key: KEY, plaintext: plaintexts[i % plaintexts.length] })) }))
  const made = (await requestJson('POST', `http://127.0.0.1:${apiPort}/v1/encrypt`, JSON.parse(batch.toString()), agent.apiToken())) as { items: Array<{ ciphertext: string }> }
  const cts = made.items.map((i) => i.ciphertext)
  const singleDec = cts.map((c) => Buffer.from(JSON.stringify({ ciphertext: c })))
  const batchDec = Buffer.from(JSON.stringify({ items: cts.map((c) => ({ ciphertext: c })) }))
  const binBatch = Buffer.from(encodeBinaryBatch(Array.from({ length: BATCH }, (_, i) => ({ key: KEY, data: Buffer.from(plaintexts[i % plaintexts.length] as string, 'base64') }))))
  const binBatchDec = Buffer.from(encodeBinaryBatch(cts.map((c) => ({ text: c }))))
  const singleOf = (key: string): Buffer[] => plaintexts.map((p) => Buffer.from(JSON.stringify({ key, message: p })))
  const batchOf = (key: string): Buffer => Buffer.from(JSON.stringify({ items: Array.from({ length: BATCH }, (_, i) => ({ key, message: plaintexts[i % plaintexts.length] })) }))
  const [singleSign, singleMac, batchSign, batchMac] = [singleOf(SIGN_KEY), singleOf(MAC_KEY), batchOf(SIGN_KEY), batchOf(MAC_KEY)]

  /** A control plane and an agent of the built checkout `dir`, with the same key and grant. */
  const startBaseline = async (dir: string): Promise<{ target: Target; batchDec: Buffer }> => {
    const bcp = await startChildControlPlane({ name: 'baseline control plane', entry: join(dir, 'dist', 'test', 'kit', 'cp-child.js'), dataDir: join(tmp, 'base-cp'), nodeArgs: profArgs, stderr: 'inherit' })
    children.push(bcp)
    const btoken = bcp.adminToken() as string
    await requestJson('POST', `${bcp.url}/v1/keys`, { name: KEY, type: 'aead' }, btoken)
    await requestJson('POST', `${bcp.url}/v1/keys/${KEY}/grants`, { service: SERVICE, rights: ['encrypt', 'decrypt'] }, btoken)
    const bjoin = ((await requestJson('POST', `${bcp.url}/v1/join-tokens`, { service: SERVICE }, btoken)) as { token: string }).token
    const [bApi, bTunnel] = [await freePort(), await freePort()]
    const bagent = new AgentChild('baseline agent', bApi, join(dir, 'bin', 'keymesh.js'), [
      '--cp', bcp.url, '--cp-key-file', join(tmp, 'base-cp', 'identity.pub'), '--service', SERVICE, '--join-token', bjoin,
      '--state-dir', join(tmp, 'base-agent'), '--tunnel-listen', `127.0.0.1:${bTunnel}`, '--api', `127.0.0.1:${bApi}`, '--log-level', 'warn',
    ], profArgs)
    children.push(bagent)
    await until(async () => {
      if (!bagent.running) throw new GiveUp(`baseline agent exited: ${bagent.log.slice(-5).join(' | ')}`)
      const s = (await bagent.status()) as unknown as { ready: boolean; controlPlane?: { state: string } }
      return s.ready && s.controlPlane?.state === 'connected' ? true : undefined
    }, 'the baseline agent connected', { ms: 30_000, everyMs: 100, retryErrors: true })
    // Its own ciphertexts to decrypt: the baseline's key has other material than the main one's.
    const sealed = (await requestJson('POST', `http://127.0.0.1:${bApi}/v1/encrypt`, JSON.parse(batch.toString()), bagent.apiToken())) as { items: Array<{ ciphertext: string }> }
    const dec = Buffer.from(JSON.stringify({ items: sealed.items.map((i) => ({ ciphertext: i.ciphertext })) }))
    return { target: { port: bApi, pid: bagent.pid, cpPid: bcp.pid, token: bagent.apiToken() }, batchDec: dec }
  }

  process.stdout.write('measuring: baselines')
  const aeadMBps = rawAead()
  // CPU of each process over the whole run (warm-up included), % of one core: shows which one is saturated.
  type Target = { port: number; pid: number; cpPid: number; token: string | undefined }
  const main: Target = { port: apiPort, pid: agent.pid, cpPid: cp.pid, token: agent.apiToken() }
  const echoTarget: Target = { port: echoPort, pid: echo.pid, cpPid: cp.pid, token: undefined }
  const run = async (port: number, path: string, body: (i: number) => Buffer, concurrency: number, opsPerRequest = 1, check?: (t: string) => string | undefined, o: { target?: Target; binary?: boolean } = {}): Promise<Measured> => {
    const target = o.target ?? (port === apiPort ? main : echoTarget)
    const meter = cpuMeter({ bench: process.pid, server: target.pid, cp: target.cpPid })
    const r = await httpLoad({
      port: target.port, path, body, concurrency, warmMs: CFG.warmMs, measureMs: CFG.measureMs, opsPerRequest,
      ...(o.binary === true ? { contentType: 'application/octet-stream', checkBody: noFailedBinary } : check ? { check } : {}),
      ...(target.token !== undefined ? { token: target.token } : {}),
    })
    return { ...r, cpu: meter() }
  }
  const skipped: Measured = { opsPerSec: 0, requests: 0, latencies: [], errors: 0, firstError: undefined, cpu: {} }
  const echoSingle = await run(echoPort, '/echo', (i) => single[i % single.length] as Buffer, CONC)
  const echoBatch = await run(echoPort, '/echo', () => batch, BATCH_CONC, BATCH)
  if (!batchedOnly) process.stdout.write(', single calls')
  const enc1 = batchedOnly ? skipped : await run(apiPort, '/v1/encrypt', (i) => single[i % single.length] as Buffer, CONC)
  const dec1 = batchedOnly ? skipped : await run(apiPort, '/v1/decrypt', (i) => singleDec[i % singleDec.length] as Buffer, CONC)
  const sign1 = batchedOnly ? skipped : await run(apiPort, '/v1/sign', (i) => singleSign[i % singleSign.length] as Buffer, CONC)
  const mac1 = batchedOnly ? skipped : await run(apiPort, '/v1/hmac', (i) => singleMac[i % singleMac.length] as Buffer, CONC)
  // The batched rows (and the baseline's) run in ROUNDS interleaved rounds, each row keeping
  // its fastest round: on a shared machine, rows measured minutes apart see different loads,
  // and the first row measured carries the JIT's warm-up.
  let baseTarget: { target: Target; batchDec: Buffer } | undefined
  if (BASELINE !== undefined) {
    process.stdout.write(', baseline set-up')
    baseTarget = await startBaseline(BASELINE)
  }
  const best = (a: Measured | undefined, b: Measured): Measured => (a === undefined || b.opsPerSec > a.opsPerSec ? b : a)
  let encB: Measured | undefined
  let encBin: Measured | undefined
  let decB: Measured | undefined
  let decBin: Measured | undefined
  let base: { encB: Measured; decB: Measured } | undefined
  for (let round = 0; round < ROUNDS; round++) {
    process.stdout.write(`, batches (round ${round + 1} of ${ROUNDS})`)
    encB = best(encB, await run(apiPort, '/v1/encrypt', () => batch, BATCH_CONC, BATCH, noFailedItems))
    encBin = best(encBin, await run(apiPort, '/v1/encrypt', () => binBatch, BATCH_CONC, BATCH, undefined, { binary: true }))
    decB = best(decB, await run(apiPort, '/v1/decrypt', () => batchDec, BATCH_CONC, BATCH, noFailedItems))
    decBin = best(decBin, await run(apiPort, '/v1/decrypt', () => binBatchDec, BATCH_CONC, BATCH, undefined, { binary: true }))
    if (baseTarget !== undefined) {
      const { target: t, batchDec: bDec } = baseTarget
      base = {
        encB: best(base?.encB, await run(t.port, '/v1/encrypt', () => batch, BATCH_CONC, BATCH, noFailedItems, { target: t })),
        decB: best(base?.decB, await run(t.port, '/v1/decrypt', () => bDec, BATCH_CONC, BATCH, noFailedItems, { target: t })),
      }
    }
  }
  if (encB === undefined || encBin === undefined || decB === undefined || decBin === undefined) throw new Error('no batched round ran')
  const signB = batchedOnly ? skipped : await run(apiPort, '/v1/sign', () => batchSign, BATCH_CONC, BATCH, noFailedItems)
  const macB = batchedOnly ? skipped : await run(apiPort, '/v1/hmac', () => batchMac, BATCH_CONC, BATCH, noFailedItems)

  if (!batchedOnly) process.stdout.write(`, drops (${CFG.dropBytes / MIB} MiB)`)
  const api = `127.0.0.1:${apiPort}`
  // age, sealing and opening the same input (with sync after each, as keymesh fsyncs): issue 18's baseline for drops.
  let ageBins: { age: string; keygen: string } | undefined
  let noAge: string | undefined
  if (!batchedOnly) {
    try {
      ageBins = ensureAge((l) => console.log(`\n${l}`))
    } catch (e) {
      noAge = (e as Error).message
    }
  }
  let ageBig: { seal: CliRun; open: CliRun } | undefined
  const dropRun = async (size: number, tag: string): Promise<{ seal: CliRun; open: CliRun }> => {
    const input = join(tmp, `${tag}.in`)
    const sealed = join(tmp, `${tag}.drop`)
    const opened = join(tmp, `${tag}.out`)
    await sparseFile(input, size)
    const seal = await timedCli(bin, ['drop', 'seal', '--api', api, '--state-dir', agent.stateDir, '--key', KEY, '--to', SERVICE, input, '-o', sealed], CFG.deadlineMs)
    if (seal.code !== 0) throw new Error(`drop seal exited ${seal.code}: ${seal.stderr}`)
    if (size > 0 && ageBins !== undefined) ageBig = await ageRun(ageBins, tmp, input, CFG.deadlineMs)
    rmSync(input)
    const open = await timedCli(bin, ['drop', 'open', '--api', api, '--state-dir', agent.stateDir, sealed, '-o', opened], CFG.deadlineMs)
    if (open.code !== 0) throw new Error(`drop open exited ${open.code}: ${open.stderr}`)
    if (statSync(opened).size !== size) throw new Error(`drop open wrote ${statSync(opened).size} bytes, not ${size}`)
    rmSync(sealed)
    rmSync(opened)
    return { seal, open }
  }
  const noDrop: CliRun = { secs: NaN, peakRss: NaN, code: 0, stderr: '' } as CliRun
  const empty = batchedOnly ? { seal: noDrop, open: noDrop } : await dropRun(0, 'empty')
  const big = batchedOnly ? { seal: noDrop, open: noDrop } : await dropRun(CFG.dropBytes, 'big')
  console.log(' — done\n')

  // ---- report
  console.log(`1. Through the agent's API (single: ${CONC} keep-alive clients, one ${ITEM} B item per request; batched: ${BATCH_CONC} clients, ${BATCH} items per request), ${CFG.measureMs / 1000} s after ${CFG.warmMs / 1000} s warm-up`)
  loadRow('bare HTTP echo, single-item body', echoSingle, 'req/s')
  loadRow('agent encrypt, single', enc1, 'ops/s')
  loadRow('agent decrypt, single', dec1, 'ops/s')
  loadRow('agent sign (ed25519), single', sign1, 'ops/s')
  loadRow('agent hmac (hmac-sha256), single', mac1, 'ops/s')
  loadRow(`bare HTTP echo, ${BATCH}-item body`, echoBatch, 'items/s')
  loadRow(`agent encrypt, batches of ${BATCH}`, encB, 'items/s')
  loadRow(`agent encrypt, batches of ${BATCH}, binary body`, encBin, 'items/s')
  loadRow(`agent decrypt, batches of ${BATCH}`, decB, 'items/s')
  loadRow(`agent decrypt, batches of ${BATCH}, binary body`, decBin, 'items/s')
  if (base !== undefined) {
    loadRow(`baseline encrypt, batches of ${BATCH}`, base.encB, 'items/s')
    loadRow(`baseline decrypt, batches of ${BATCH}`, base.decB, 'items/s')
  }
  loadRow(`agent sign (ed25519), batches of ${BATCH}`, signB, 'items/s')
  loadRow(`agent hmac (hmac-sha256), batches of ${BATCH}`, macB, 'items/s')
  console.log(table(['what', 'rate', 'p50 ms', 'p99 ms', 'CPU bench', 'CPU server', 'CPU cp', 'µs/op server', 'µs/op cp', 'errors'], rows))
  console.log(`   CPU: % of one core (${cpus().length} cores) during the run; 'server' is the agent, or the echo server for the echo rows;`)
  console.log('   µs/op: CPU time per operation (item) of that process, what the rate needs of it whatever the machine load')

  const mbps = (bytes: number, r: CliRun, fixed: CliRun): { e2e: number; net: number } => ({
    e2e: bytes / MB / r.secs,
    net: bytes / MB / Math.max(1e-3, r.secs - fixed.secs),
  })
  const s = mbps(CFG.dropBytes, big.seal, empty.seal)
  const o = mbps(CFG.dropBytes, big.open, empty.open)
  if (!batchedOnly) console.log(`\n2. Drops: keymesh drop seal|open of a ${CFG.dropBytes / MIB} MiB file, CLI child processes, output fsync'd and renamed; 'net' leaves out the fixed cost of an empty drop (node start, KMS call)`)
  if (!batchedOnly) console.log(table(['what', 'seconds', 'MB/s end to end', 'MB/s net', 'peak RSS MiB'], [
    ['empty drop seal (fixed cost)', empty.seal.secs, '-', '-', empty.seal.peakRss / MIB],
    ['empty drop open (fixed cost)', empty.open.secs, '-', '-', empty.open.peakRss / MIB],
    ['drop seal', big.seal.secs, s.e2e, s.net, big.seal.peakRss / MIB],
    ['drop open', big.open.secs, o.e2e, o.net, big.open.peakRss / MIB],
    ['baseline: raw ChaCha20-Poly1305, 64 KiB chunks, in process', '-', aeadMBps, '-', '-'],
    ...(ageBig === undefined ? [] : [
      ['baseline: age -r, then sync', ageBig.seal.secs, CFG.dropBytes / MB / ageBig.seal.secs, '-', ageBig.seal.peakRss / MIB],
      ['baseline: age -d, then sync', ageBig.open.secs, CFG.dropBytes / MB / ageBig.open.secs, '-', ageBig.open.peakRss / MIB],
    ]),
  ]))
  if (!batchedOnly && noAge !== undefined) console.log(`   age not run: ${noAge}`)

  console.log('\n3. Ratios and the targets of issues 5 and 18')
  targets.push(
    ['agent encrypt single / bare HTTP echo', ratio(enc1.opsPerSec, echoSingle.opsPerSec), '-', '-'],
    ['agent encrypt batched / bare HTTP echo batched', ratio(encB.opsPerSec, echoBatch.opsPerSec), '-', '-'],
    ['drop seal net / raw AEAD', ratio(s.net, aeadMBps), '-', '-'],
    ...(ageBig === undefined ? [] : [
      ['drop seal / age -r + sync (end to end)', ratio(ageBig.seal.secs, big.seal.secs), '>= 1.0', verdict(ageBig.seal.secs >= big.seal.secs)],
      ['drop open / age -d + sync (end to end)', ratio(ageBig.open.secs, big.open.secs), '>= 1.0', verdict(ageBig.open.secs >= big.open.secs)],
    ]),
    ['drop open net / raw AEAD', ratio(o.net, aeadMBps), '-', '-'],
    ['encrypt, single', `${fmt(enc1.opsPerSec)} ops/s`, `>= ${TARGET.single}`, verdict(enc1.opsPerSec >= TARGET.single && enc1.errors === 0)],
    ['decrypt, single', `${fmt(dec1.opsPerSec)} ops/s`, `>= ${TARGET.single}`, verdict(dec1.opsPerSec >= TARGET.single && dec1.errors === 0)],
    ['encrypt, batched', `${fmt(encB.opsPerSec)} items/s`, `>= ${TARGET.batched}`, verdict(encB.opsPerSec >= TARGET.batched && encB.errors === 0)],
    ['encrypt, batched, binary body', `${fmt(encBin.opsPerSec)} items/s`, `>= ${TARGET.batchedBinary}`, verdict(encBin.opsPerSec >= TARGET.batchedBinary && encBin.errors === 0)],
    ...[['JSON', encB], ['binary', encBin]].map(([what, r]) => {
      const m = r as Measured
      const us = (((m.cpu['server'] ?? 0) + (m.cpu['cp'] ?? 0)) / 100) * 1e6 / m.opsPerSec
      return [`CPU per batched encrypt item, agent + control plane (${what as string})`, `${fmt(us)} µs`, `<= ${TARGET.cpuPerItemUs}`, verdict(us <= TARGET.cpuPerItemUs)]
    }),
    ...(base === undefined ? [] : [
      ['agent encrypt batched JSON / baseline', ratio(encB.opsPerSec, base.encB.opsPerSec), '-', '-'],
      ['agent encrypt batched binary / baseline JSON', ratio(encBin.opsPerSec, base.encB.opsPerSec), '-', '-'],
      ['agent decrypt batched JSON / baseline', ratio(decB.opsPerSec, base.decB.opsPerSec), '-', '-'],
    ]),
    ['decrypt, batched', `${fmt(decB.opsPerSec)} items/s`, `>= ${TARGET.batched}`, verdict(decB.opsPerSec >= TARGET.batched && decB.errors === 0)],
    ['drop seal (end to end)', `${fmt(s.e2e)} MB/s`, `>= ${TARGET.dropMBps}`, verdict(s.e2e >= TARGET.dropMBps)],
    ['drop open (end to end)', `${fmt(o.e2e)} MB/s`, `>= ${TARGET.dropMBps}`, verdict(o.e2e >= TARGET.dropMBps)],
    ['drop seal peak RSS', `${fmt(big.seal.peakRss / MIB)} MiB`, `< ${TARGET.rssMB} MB`, verdict(big.seal.peakRss < TARGET.rssMB * MB)],
    ['drop open peak RSS', `${fmt(big.open.peakRss / MIB)} MiB`, `< ${TARGET.rssMB} MB`, verdict(big.open.peakRss < TARGET.rssMB * MB)],
  )
  console.log(table(['what', 'measured', 'target', 'verdict'], batchedOnly ? targets.filter((r) => !/single|drop/.test(String(r[0]))) : targets))
  if (quick) console.log(`   (quick run: a ${CFG.dropBytes / MIB} MiB drop; the issue's target is for 1 GiB)`)
  const measured = [enc1, dec1, encB, encBin, decB, decBin, sign1, mac1, signB, macB, ...(base ? [base.encB, base.decB] : [])]
  const errs = measured.reduce((n, r) => n + r.errors, 0)
  if (errs > 0) {
    console.log(`   ${errs} request(s) failed; first: ${measured.find((r) => r.firstError)?.firstError}`)
    process.exitCode = 1
  }
  if (agent.logLines > 0) console.log(`   the agent wrote ${agent.logLines} log line(s) at level warn; last: ${agent.log[agent.log.length - 1] ?? ''}`)
} catch (e) {
  console.error(`\nbench:data failed: ${(e as Error).stack ?? String(e)}`)
  process.exitCode = 1
} finally {
  for (const c of children.reverse()) await c.stop().catch(() => undefined)
  rmSync(tmp, { recursive: true, force: true })
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  process.exit(process.exitCode ?? 0)
}
