// npm run bench:attack [-- --quick] — legitimate work while one source attacks the two
// pre-authenticated WebSocket listeners (issue 12, item 1), on loopback.
//
// A control plane child and two `keymesh agent` children (bench/tunnel-paths.ts), with
// the echo server in this process. The attacker (bench/attack-child.ts) is a child of
// its own, connecting from 127.0.0.2: it holds 1,000 idle WebSockets (reopening each
// as soon as it is closed or refused) and runs 32 loops that each open a WebSocket,
// send a random message 1 and wait for the close, as fast as they can. Against the
// tunnel listener of agent B its message 1 carries a valid preamble (pair, version,
// services, agent A's id), so B does the Diffie-Hellman for each one it admits.
// Measured, each beside the same measurement without the attack, in this run:
//   1. a new tunnel through A to B (connect + first byte echoed), one at a time, p50/p99,
//      and B's CPU (100% = one core) meanwhile;
//   2. an enrolled agent (test/kit/fake-agent.ts) reconnecting to the control plane
//      (connect to welcome), one at a time, p50/p99, and the control plane's CPU;
//   3. both again with the message-1 loops alone (no idle sockets taking the
//      source's share), so that every message 1 the limits admit costs a DH;
//   4. what the attacker achieved (connections, held, refused by code) and the
//      responders' pre-authentication refusal counters.
// Everything binds 127.0.0.1 / 127.0.0.2, stops by itself (a hard deadline kills every
// child) and removes its temp dir.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { encodeTunnelPreamble, nodeSuite } from '../protocol/src/index.js'
import { FakeAgent } from '../test/kit/fake-agent.js'
import { metric, parseMetrics } from '../test/kit/metrics.js'
import { JsonChild } from '../test/kit/child.js'
import { withTimeout } from '../test/kit/wait.js'
import { cpuMeter, fmt, openFileLimit, percentile, table } from './measure.js'
import { LoadServer, newConnections } from './tunnel-load.js'
import { CLIENT_SERVICE, SERVER_SERVICE, keymeshPath, type KeymeshPath } from './tunnel-paths.js'
import { installHardStop, requestJson } from './tunnel-procs.js'

const quick = process.argv.includes('--quick')
const CFG = quick ? { opens: 50, reconnects: 30, rampMs: 1_000, deadlineMs: 150_000 } : { opens: 200, reconnects: 100, rampMs: 2_000, deadlineMs: 240_000 }
const IDLE = 1_000
const FLOODERS = 32

if (openFileLimit() < 2 * IDLE + 512) {
  console.error(`open-file limit ${openFileLimit()} is too low for ${IDLE} idle sockets: raise it with ulimit -n`)
  process.exit(1)
}

const here = dirname(fileURLToPath(import.meta.url))
const started = performance.now()
const tmp = mkdtempSync(join(tmpdir(), 'keymesh-bench-attack-'))
installHardStop('bench:attack', tmp, CFG.deadlineMs)

interface AttackStats { attempts: number; held: number; refused: Record<string, number>; sent: number; failed: number }
interface Run { p50: number; p99: number; n: number; cpu: number }

function summary(sorted: number[], cpu: number): Run {
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length, cpu }
}

async function tunnelOpens(path: KeymeshPath): Promise<Run> {
  const meter = cpuMeter({ B: path.hops['B'] as number })
  const times = await newConnections(path.port, 5, CFG.opens)
  return summary(times, meter()['B'] ?? NaN)
}

async function reconnects(path: KeymeshPath, cpPid: number, staticKey: ReturnType<typeof nodeSuite.x25519Generate>, cpKey: string): Promise<Run> {
  const meter = cpuMeter({ cp: cpPid })
  const times: number[] = []
  for (let i = 0; i < CFG.reconnects; i++) {
    const t0 = performance.now()
    const a = new FakeAgent({ url: path.cpUrl, cpKey, service: 'bench-probe', staticKey })
    await withTimeout(a.welcome(), 15_000, 'reconnect')
    times.push(performance.now() - t0)
    await a.close()
  }
  return summary(times.sort((x, y) => x - y), meter()['cp'] ?? NaN)
}

/** Starts the attacker against `url`, lets it ramp up, runs `work`, and returns what the attacker did meanwhile. */
async function underAttack<T>(url: string, preambleHex: string, idle: number, work: () => Promise<T>): Promise<{ result: T; attack: AttackStats; seconds: number; attackerCpu: number }> {
  const child = new JsonChild('attacker', [join(here, 'attack-child.js'), url, String(idle), String(FLOODERS), preambleHex])
  try {
    await child.next<{ ready: boolean }>()
    await sleep(CFG.rampMs)
    const before = (await child.ask<{ stats: AttackStats }>('stats')).stats
    const t0 = performance.now()
    const meter = cpuMeter({ attacker: child.pid })
    const result = await work()
    const attackerCpu = meter()['attacker'] ?? NaN
    const seconds = (performance.now() - t0) / 1000
    const after = (await child.ask<{ stats: AttackStats }>('stats')).stats
    const refused: Record<string, number> = {}
    for (const [k, v] of Object.entries(after.refused)) refused[k] = (v as number) - (before.refused[k] ?? 0)
    return { result, seconds, attackerCpu, attack: { attempts: after.attempts - before.attempts, held: after.held - before.held, sent: after.sent - before.sent, failed: after.failed - before.failed, refused } }
  } finally {
    await child.stop()
  }
}

async function refusalCounters(url: string, name: string): Promise<string> {
  const series = parseMetrics(await (await fetch(url)).text())
  const codes = [...new Set(series.filter((s) => s.name === name).map((s) => s.labels['code'] as string))]
  return codes.map((c) => `${c} ${metric(series, name, { code: c })}`).join(', ') || '(none)'
}

const server = new LoadServer()
let path: KeymeshPath | undefined
try {
  console.log(`bench:attack${quick ? ' --quick' : ''}: ${cpus().length} cores, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
  const serverPort = await server.listen()
  path = await keymeshPath(here, tmp, serverPort, 'warn')
  const cpPid = path.cp.pid
  const cpKey = readFileSync(join(tmp, 'cp', 'identity.pub'), 'utf8').trim()
  // An agent of a service with no intention, enrolled once; the bench reconnects it.
  const { token } = (await requestJson('POST', `${path.cpUrl}/v1/join-tokens`, { service: 'bench-probe' }, path.adminToken)) as { token: string }
  const probeKey = nodeSuite.x25519Generate()
  const first = new FakeAgent({ url: path.cpUrl, cpKey, service: 'bench-probe', staticKey: probeKey, joinToken: token })
  await withTimeout(first.welcome(), 15_000, 'enrolment')
  await first.close()

  const aStatus = (await path.agents.A.status()) as unknown as { agentId: string; pairs: Array<{ pairId: string; currentVersion: number }> }
  const pair = aStatus.pairs[0] as { pairId: string; currentVersion: number }
  const preamble = encodeTunnelPreamble({ pairId: pair.pairId, keyVersion: pair.currentVersion, fromService: CLIENT_SERVICE, toService: SERVER_SERVICE, fromAgent: aStatus.agentId })
  const tunnelUrl = `ws://127.0.0.1:${path.tunnelPorts.B}/v1/tunnel`
  const agentUrl = `${path.cpUrl.replace('http', 'ws')}/v1/agent`

  console.log(`baseline: ${CFG.opens} tunnel opens, ${CFG.reconnects} agent reconnects, no attack`)
  const baseOpen = await tunnelOpens(path)
  const baseReconnect = await reconnects(path, cpPid, probeKey, cpKey)
  console.log(`attack on agent B's tunnel listener (${IDLE} idle + ${FLOODERS} message-1 loops from 127.0.0.2)`)
  const openAttack = await underAttack(tunnelUrl, Buffer.from(preamble).toString('hex'), IDLE, () => tunnelOpens(path as KeymeshPath))
  console.log(`the same with the ${FLOODERS} message-1 loops alone (every admitted one costs B a DH)`)
  const openFlood = await underAttack(tunnelUrl, Buffer.from(preamble).toString('hex'), 0, () => tunnelOpens(path as KeymeshPath))
  console.log(`attack on the control plane's /v1/agent (${IDLE} idle + ${FLOODERS} message-1 loops from 127.0.0.2)`)
  const reconnectAttack = await underAttack(agentUrl, '', IDLE, () => reconnects(path as KeymeshPath, cpPid, probeKey, cpKey))
  console.log(`the same with the ${FLOODERS} message-1 loops alone`)
  const reconnectFlood = await underAttack(agentUrl, '', 0, () => reconnects(path as KeymeshPath, cpPid, probeKey, cpKey))

  const ms = (n: number): string => `${fmt(n)} ms`
  const pct = (n: number): string => `${n.toFixed(0)}%`
  console.log('')
  console.log(
    table(
      ['legitimate work', 'n', 'p50 base', 'p50 attack', 'p99 base', 'p99 attack', 'p99 ratio', 'responder CPU base', 'responder CPU attack'],
      [
        ['tunnel open via A -> B', baseOpen.n, ms(baseOpen.p50), ms(openAttack.result.p50), ms(baseOpen.p99), ms(openAttack.result.p99), `${(openAttack.result.p99 / baseOpen.p99).toFixed(2)}x`, pct(baseOpen.cpu), pct(openAttack.result.cpu)],
        ['  message-1 flood alone', openFlood.result.n, '', ms(openFlood.result.p50), '', ms(openFlood.result.p99), `${(openFlood.result.p99 / baseOpen.p99).toFixed(2)}x`, '', pct(openFlood.result.cpu)],
        ['agent reconnect to CP', baseReconnect.n, ms(baseReconnect.p50), ms(reconnectAttack.result.p50), ms(baseReconnect.p99), ms(reconnectAttack.result.p99), `${(reconnectAttack.result.p99 / baseReconnect.p99).toFixed(2)}x`, pct(baseReconnect.cpu), pct(reconnectAttack.result.cpu)],
        ['  message-1 flood alone', reconnectFlood.result.n, '', ms(reconnectFlood.result.p50), '', ms(reconnectFlood.result.p99), `${(reconnectFlood.result.p99 / baseReconnect.p99).toFixed(2)}x`, '', pct(reconnectFlood.result.cpu)],
      ],
    ),
  )
  console.log('')
  for (const [name, a] of [['tunnel listener', openAttack], ['tunnel listener, flood alone', openFlood], ['agent endpoint', reconnectAttack], ['agent endpoint, flood alone', reconnectFlood]] as const) {
    const rate = (n: number): string => `${fmt(n / a.seconds)}/s`
    const refused = Object.entries(a.attack.refused).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${rate(v)}`).join(', ')
    console.log(`attacker (CPU ${a.attackerCpu.toFixed(0)}%) vs ${name} over ${a.seconds.toFixed(1)} s: ${rate(a.attack.attempts)} connections, ${rate(a.attack.held)} upgraded, ${rate(a.attack.sent)} message 1s sent; refused: ${refused || 'none'}`)
  }
  console.log(`agent B refusal counter: ${await refusalCounters(`http://127.0.0.1:${path.agents.B.apiPort}/metrics`, 'keymesh_agent_tunnel_preauth_refusals_total')}`)
  console.log(`control plane refusal counter: ${await refusalCounters(`${path.cpUrl}/metrics`, 'keymesh_cp_agent_preauth_refusals_total')}`)
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
} finally {
  await path?.stop()
  await server.close()
  rmSync(tmp, { recursive: true, force: true })
}
process.exit(0)
