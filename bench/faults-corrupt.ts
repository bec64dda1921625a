// The corruption steps of `npm run faults`: damaged state files must make a process
// refuse to start, or start and answer correctly, never answer wrongly.
//   agent   with the agent killed (-9), each of its state files in turn is damaged
//           (bytes in its middle overwritten, or the file cut to half) and the agent
//           started: it exits (refused), or it comes up and an encrypt/decrypt round
//           trip must give back the plaintext; then the files are put back as they were
//   store   the control plane killed (-9), a run of bytes in the middle of keymesh.db
//           overwritten, and started: it refuses to start (its message is shown), or it
//           comes up and every acknowledged ciphertext decrypts to its plaintext or
//           fails (a wrong plaintext is the failure counted); `audit verify` is shown
import { cpSync, existsSync, openSync, readdirSync, rmSync, statSync, truncateSync, writeSync, closeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'

import type { Mesh, RestartableAgent } from './faults-mesh.js'
import { requestJson } from './tunnel-procs.js'

export interface CorruptionResult {
  readonly what: string
  /** 'refused to start', 'started, answered correctly', 'started, WRONG ANSWER', 'started, calls failed'. */
  readonly outcome: string
  readonly detail: string
  readonly wrong: boolean
}

/** Overwrites `n` bytes in the middle of `file` with random ones. */
export function scribble(file: string, n = 64): void {
  const size = statSync(file).size
  const at = Math.max(0, Math.floor(size / 2) - Math.floor(n / 2))
  const fd = openSync(file, 'r+')
  try {
    writeSync(fd, randomBytes(Math.min(n, Math.max(1, size))), 0, Math.min(n, Math.max(1, size)), at)
  } finally {
    closeSync(fd)
  }
}

/** Starts `agent` and sees whether it stays up and answers: undefined when it exits first. */
async function startAndProbe(agent: RestartableAgent, key: string): Promise<{ exited: string } | { answer: 'right' | 'wrong' | string }> {
  agent.start()
  try {
    await agent.connected()
  } catch (e) {
    if (!agent.child.running) return { exited: agent.lastLog(1).slice(0, 300) }
    return { answer: `running, not ready: ${agent.lastLog(1).slice(0, 200) || (e as Error).message.slice(0, 200)}` }
  }
  const api = `http://127.0.0.1:${agent.apiPort}`
  const token = agent.child.apiToken()
  const plaintext = randomBytes(32).toString('base64')
  try {
    const sealed = (await requestJson('POST', `${api}/v1/encrypt`, { key, plaintext }, token)) as { ciphertext: string }
    const opened = (await requestJson('POST', `${api}/v1/decrypt`, { ciphertext: sealed.ciphertext }, token)) as { plaintext: string }
    return { answer: opened.plaintext === plaintext ? 'right' : 'wrong' }
  } catch (e) {
    return { answer: (e as Error).message.slice(0, 200) }
  }
}

export async function corruptAgentState(agent: RestartableAgent, key: string, backupDir: string): Promise<CorruptionResult[]> {
  await agent.kill()
  rmSync(backupDir, { recursive: true, force: true })
  cpSync(agent.stateDir, backupDir, { recursive: true })
  const files = readdirSync(agent.stateDir).filter((f) => !f.endsWith('.lock') && f !== 'api.token' && statSync(join(agent.stateDir, f)).isFile() && statSync(join(agent.stateDir, f)).size > 0)
  const out: CorruptionResult[] = []
  // Bytes overwritten in every file; the usage spool also cut short, as a torn append leaves it.
  const damages = files.sort().flatMap((file) => (file === 'usage.spool' ? (['scribbled', 'cut to half'] as const) : (['scribbled'] as const)).map((how) => ({ file, how })))
  for (const { file, how } of damages) {
    const path = join(agent.stateDir, file)
    if (how === 'scribbled') scribble(path)
    else truncateSync(path, Math.floor(statSync(path).size / 2))
    const r = await startAndProbe(agent, key)
    const what = `agent ${file} ${how}`
    if ('exited' in r) out.push({ what, outcome: 'refused to start', detail: r.exited, wrong: false })
    else if (r.answer === 'right') out.push({ what, outcome: 'started, answered correctly', detail: '', wrong: false })
    else if (r.answer === 'wrong') out.push({ what, outcome: 'started, WRONG ANSWER', detail: 'a decrypt gave another plaintext', wrong: true })
    else out.push({ what, outcome: 'started, calls failed', detail: r.answer, wrong: false })
    await agent.kill()
    rmSync(agent.stateDir, { recursive: true, force: true })
    cpSync(backupDir, agent.stateDir, { recursive: true })
  }
  agent.start()
  await agent.connected()
  return out
}

/**
 * Damages keymesh.db of a killed control plane and starts it again. `verify` decrypts
 * every acknowledged ciphertext and returns how many came back wrong and how many failed.
 */
export async function corruptStore(mesh: Mesh, verify: () => Promise<{ wrong: number; failed: number; codes: Record<string, number> }>): Promise<CorruptionResult> {
  await mesh.killCp()
  const db = join(mesh.cp.dataDir, 'keymesh.db')
  // The WAL holds the newest pages; folded into the file at the next start, it could
  // cover the damage. Removing it loses only what it held, which this step does not count.
  for (const f of ['keymesh.db-wal', 'keymesh.db-shm']) if (existsSync(join(mesh.cp.dataDir, f))) rmSync(join(mesh.cp.dataDir, f))
  scribble(db, 4096)
  try {
    await mesh.startCp()
  } catch (e) {
    // The child's stderr is in the message: its log line or the error it died of.
    const lines = (e as Error).message.split('\n')
    const why = lines.find((l) => /_ERR_|malformed|corrupt|not a database/i.test(l)) ?? lines[lines.length - 1] ?? ''
    return { what: 'control plane keymesh.db scribbled (4 KiB)', outcome: 'refused to start', detail: why.trim().slice(0, 300), wrong: false }
  }
  let detail = ''
  let wrong = false
  try {
    // The decrypts go through agent B, which reconnects after its backoff.
    await mesh.B.connected()
  } catch (e) {
    detail = `agent B did not reconnect: ${(e as Error).message.slice(0, 200)}; `
  }
  try {
    const r = await verify()
    wrong = r.wrong > 0
    detail += `decrypts: ${r.wrong} wrong, ${r.failed} failed (${Object.entries(r.codes).map(([k, n]) => `${k} ×${n}`).join(', ') || 'none'})`
  } catch (e) {
    detail += `decrypts failed: ${(e as Error).message.slice(0, 200)}`
  }
  try {
    const v = (await requestJson('GET', `${mesh.cpUrl}/v1/audit/verify`, undefined, mesh.adminToken)) as { ok: boolean; reason?: string; firstBadSeq?: number }
    detail += `; audit verify: ${v.ok ? 'ok' : `broken at ${v.firstBadSeq ?? '?'} (${v.reason ?? ''})`}`
  } catch (e) {
    detail += `; audit verify failed: ${(e as Error).message.slice(0, 150)}`
  }
  return { what: 'control plane keymesh.db scribbled (4 KiB)', outcome: wrong ? 'started, WRONG ANSWER' : 'started', detail, wrong }
}
