// The clock step of `npm run faults` (issue 17, "Monotonic time for intervals, guarded
// wall time for deadlines"): the real processes, not an injected clock, see their wall
// clock stepped while the load runs. libfaketime (Debian's `faketime`) is preloaded
// into the control plane and both agents, each reading its own offset file, with
// CLOCK_MONOTONIC left alone (FAKETIME_DONT_FAKE_MONOTONIC): that is what an NTP step or
// an operator's `date -s` does to a process. The steps:
//   1. the three processes restart under libfaketime at +0 (a step of its own, so the
//      restart's cut streams are not counted against the jumps)
//   2. a key version is scheduled for destruction with the shortest window (1 h)
//   3. agent A's clock steps 3 h back, agent B's and the control plane's 3 h ahead;
//      the load (streams, encrypts, a pair rotation every 3 s) goes on
//   4. checks: every process noticed its step (the agents' keymesh_agent_clock_jumps_total,
//      the control plane's clock.jump audit entry); the version scheduled for
//      destruction in 1 h is still there after 3 h of wall clock; both agents' new tunnels
//      moved to pair versions made after the step; nothing refused meanwhile
//   5. every clock back to +0 (a step of its own for each), the audit chain verifies
// Before issue 17, step 3 destroyed the version at the control plane's first
// scheduler pass, and held agent A's new tunnels on the pair version it had before.
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { metric, parseMetrics } from '../test/kit/metrics.js'
import { until } from '../test/kit/wait.js'
import { ensureDebianPackage } from './apt.js'
import { CLIENT, SERVER, type Mesh, type RestartableAgent } from './faults-mesh.js'
import { requestJson } from './tunnel-procs.js'

const LIBS = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1']
const HOUR = 3_600_000
const KEY = 'faults-clock'

/** libfaketime's library, installing Debian's `faketime` first when missing and we are root; a reason to skip otherwise. */
export function ensureFaketime(log: (line: string) => void): { lib: string } | { skip: string } {
  try {
    return { lib: ensureDebianPackage('faketime', () => LIBS.find((p) => existsSync(p)), log) }
  } catch (e) {
    return { skip: (e as Error).message }
  }
}

/** The clock step's outcome: a note for the log and what went wrong (empty when nothing did). */
export interface ClockOutcome {
  readonly note: string
  readonly problems: string[]
}

/** What step 1 leaves for the others: each process's offset file. */
export interface FakedClocks {
  readonly cp: string
  readonly A: string
  readonly B: string
}

/** Step 1: restarts the control plane and both agents with libfaketime preloaded, each clock at +0. */
export async function restartUnderFaketime(m: Mesh, lib: string, tmp: string): Promise<FakedClocks> {
  const files: FakedClocks = { cp: join(tmp, 'cp.faketime'), A: join(tmp, 'agent-a.faketime'), B: join(tmp, 'agent-b.faketime') }
  const env = (file: string): Record<string, string> => ({
    LD_PRELOAD: lib,
    FAKETIME_TIMESTAMP_FILE: file,
    // Timers run on CLOCK_MONOTONIC, as a stepped wall clock leaves it.
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
    // The offset file is read again at most once a second.
    FAKETIME_CACHE_DURATION: '1',
  })
  for (const f of Object.values(files)) writeFileSync(f, '+0\n')
  m.cpEnv = env(files.cp)
  await m.cp.stop()
  await m.startCp()
  for (const [agent, file] of [[m.A, files.A], [m.B, files.B]] as const) {
    agent.env = env(file)
    await agent.child.stop()
    agent.start()
  }
  await Promise.all([m.A.connected(), m.B.connected()])
  return files
}

async function agentJumps(a: RestartableAgent): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${a.apiPort}/metrics`)
  return metric(parseMetrics(await res.text()), 'keymesh_agent_clock_jumps_total')
}

async function cpJumps(m: Mesh): Promise<Array<{ details?: { stepMs?: number } }>> {
  const res = await fetch(`${m.cpUrl}/v1/audit/export?action=clock.jump`, { headers: { authorization: `Bearer ${m.adminToken}` } })
  if (!res.ok) throw new Error(`audit export: ${res.status} ${await res.text()}`)
  return (await res.text()).split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { details?: { stepMs?: number } })
}

async function pairVersion(m: Mesh): Promise<number> {
  const pairs = (await requestJson('GET', `${m.cpUrl}/v1/pairs`, undefined, m.adminToken)) as Array<{ services: string[]; primaryVersion: number }>
  const pair = pairs.find((p) => p.services.includes(CLIENT) && p.services.includes(SERVER))
  if (pair === undefined) throw new Error(`no pair ${CLIENT}/${SERVER} in the control plane's list`)
  return pair.primaryVersion
}

async function tunnelVersions(a: RestartableAgent): Promise<number[]> {
  const s = (await a.status()) as { pairs?: Array<{ tunnelKeyVersions?: number[] }> }
  return s.pairs?.flatMap((p) => p.tunnelKeyVersions ?? []) ?? []
}

async function versionState(m: Mesh, version: number): Promise<string> {
  const key = (await requestJson('GET', `${m.cpUrl}/v1/keys/${KEY}`, undefined, m.adminToken)) as { versions: Array<{ version: number; state: string }> }
  return key.versions.find((v) => v.version === version)?.state ?? 'missing'
}

/** Steps 2–4: the jumps under load, and what they must not do. */
export async function jumpClocks(m: Mesh, files: FakedClocks, refusedSince: () => number): Promise<ClockOutcome> {
  const problems: string[] = []
  await requestJson('POST', `${m.cpUrl}/v1/keys`, { name: KEY, type: 'aead' }, m.adminToken)
  await requestJson('POST', `${m.cpUrl}/v1/keys/${KEY}/rotate`, undefined, m.adminToken)
  await requestJson('POST', `${m.cpUrl}/v1/keys/${KEY}/versions/1/state`, { state: 'scheduled-destruction', windowMs: HOUR }, m.adminToken)
  const [jumpsA, jumpsB, jumpsCp] = [await agentJumps(m.A), await agentJumps(m.B), (await cpJumps(m)).length]
  const refused0 = refusedSince()

  writeFileSync(files.A, '-3h\n')
  writeFileSync(files.B, '+3h\n')
  writeFileSync(files.cp, '+3h\n')
  // The processes look every few seconds (platform/src/clock-watch.ts).
  const seen = await until(async () => {
    const [a, b, cp] = [await agentJumps(m.A), await agentJumps(m.B), await cpJumps(m)]
    return a > jumpsA && b > jumpsB && cp.length > jumpsCp ? cp : undefined
  }, 'every process notices its clock step', { ms: 60_000, everyMs: 500, retryErrors: true }).catch((e: unknown) => {
    problems.push(`a clock step went unnoticed: ${(e as Error).message}`)
    return undefined
  })
  const cpStep = seen?.at(-1)?.details?.stepMs
  if (seen !== undefined && (cpStep === undefined || Math.abs(cpStep - 3 * HOUR) > 60_000)) problems.push(`the control plane audited a step of ${cpStep} ms, not 3 h`)

  // New tunnels move to pair versions made after the step, on both sides.
  const atStep = await pairVersion(m)
  const moved = await until(async () => {
    const [a, b] = [await tunnelVersions(m.A), await tunnelVersions(m.B)]
    return Math.max(0, ...a) > atStep && Math.max(0, ...b) > atStep ? { a, b } : undefined
  }, `tunnels on a pair version after v${atStep}`, { ms: 30_000, everyMs: 250, retryErrors: true }).catch((e: unknown) => {
    problems.push(`after the steps the tunnels stayed on old pair versions: ${(e as Error).message}`)
    return undefined
  })
  // Several scheduler passes (one a second) on a wall clock 2 h past the version's destroyAt.
  await new Promise((r) => setTimeout(r, 5_000))
  const state = await versionState(m, 1)
  if (state !== 'scheduled-destruction') problems.push(`${KEY} v1, scheduled for destruction in 1 h, is ${state} after a 3 h step of the wall clock`)
  const refused = refusedSince() - refused0
  if (refused > 0) problems.push(`${refused} stream(s) or write(s) refused while the clocks were stepped`)

  for (const f of Object.values(files)) writeFileSync(f, '+0\n')
  await until(async () => ((await cpJumps(m)).length > jumpsCp + 1 ? true : undefined), 'the control plane notices the step back', { ms: 60_000, everyMs: 500, retryErrors: true }).catch((e: unknown) => {
    problems.push(`the step back went unnoticed: ${(e as Error).message}`)
  })
  const verify = (await requestJson('GET', `${m.cpUrl}/v1/audit/verify`, undefined, m.adminToken)) as { ok?: boolean }
  if (verify.ok !== true) problems.push(`the audit chain does not verify after the steps: ${JSON.stringify(verify).slice(0, 200)}`)
  const note = [
    `A −3 h, B and the control plane +3 h: noticed by ${seen === undefined ? 'not every process' : 'all three'}`,
    moved === undefined ? 'tunnels did not move on' : `tunnels moved past v${atStep} (A on ${moved.a.join(',')}, B on ${moved.b.join(',')})`,
    `${KEY} v1 (destroy in 1 h) ${state} after the +3 h step`,
    `${refused} refused meanwhile`,
    `audit chain ${verify.ok === true ? 'verifies' : 'BROKEN'} after both steps`,
  ].join('; ')
  return { note, problems }
}
