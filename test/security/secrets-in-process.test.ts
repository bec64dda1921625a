// Findings: `--join-token T` put a secret in argv, readable by every user of the machine
// (ps, /proc/PID/cmdline), with no word of warning; KEYMESH_MASTER_KEY stayed in the
// control plane's environment for its whole life, inherited by anything it spawns.
// The defences: a warning that names the safe alternatives, and both variables gone
// from the environment as soon as they are read. (The kernel's copy of the initial
// environment, /proc/PID/environ, is readable only by the same user and root and is
// not rewritten; the README says to prefer the file options.)
import t, { type Test as Tap } from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { main } from '../../cli/index.js'
import { runControlPlaneCli } from '../kit/cli.js'
import { startTestControlPlane } from '../kit/cp.js'

/** Starts `keymesh agent` in-process against a test control plane; resolves once it runs. */
async function startAgentCli(t: Tap, argv: string[], env: Record<string, string>) {
  const h = await startTestControlPlane(t)
  const token = (await h.api('POST', '/v1/join-tokens', { service: 'web' })).body.token as string
  let err = ''
  let stop!: (signal: string) => void
  let started!: () => void
  const up = new Promise<void>((r) => { started = r })
  const fullEnv: Record<string, string> = { KEYMESH_CP_KEY: h.identityPub, KEYMESH_LOG_LEVEL: 'silent', ...env }
  for (const [k, v] of Object.entries(fullEnv)) if (v === '$TOKEN') fullEnv[k] = token
  // main() asks for the stop signal only once the agent has started: that is the cue.
  const io = {
    stdout: { write: () => true },
    stderr: { write: (s: string) => (err += s) },
    env: fullEnv,
    get stopSignal(): Promise<string> {
      started()
      return new Promise<string>((r) => { stop = r })
    },
  }
  const args = argv.map((a) => (a === '$TOKEN' ? token : a))
  const run = main(['agent', '--cp', h.cp.url, '--service', 'web', '--state-dir', t.testdir(), '--tunnel-listen', '127.0.0.1:0', ...args], io)
  await Promise.race([up, run.then(() => { throw new Error(`agent exited early: ${err}`) })])
  return { token, env: fullEnv, err: () => err, stop: async () => { stop('SIGTERM'); return run } }
}

t.test('--join-token on the command line draws a warning that names the safe ways', async (t) => {
  const a = await startAgentCli(t, ['--join-token', '$TOKEN'], {})
  t.match(a.err(), /warning: --join-token puts the token in argv[\s\S]*--join-token-file FILE or KEYMESH_JOIN_TOKEN/)
  t.notOk(a.err().includes(a.token), 'the warning does not repeat the token')
  t.equal(await a.stop(), 0)
})

t.test('KEYMESH_JOIN_TOKEN draws no warning and is removed from the environment once read', async (t) => {
  const a = await startAgentCli(t, [], { KEYMESH_JOIN_TOKEN: '$TOKEN' })
  t.equal(a.err(), '')
  t.notOk('KEYMESH_JOIN_TOKEN' in a.env, 'the variable is gone')
  t.equal(await a.stop(), 0)
})

t.test('KEYMESH_MASTER_KEY is removed from the environment once read', async (t) => {
  const dir = join(t.testdir(), 'cp')
  const env: Record<string, string> = { KEYMESH_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') }
  const cp = await runControlPlaneCli(dir, env)
  t.equal(cp.err().replace(/^keymesh: control plane at .*\n/m, ''), '', 'nothing but the line saying where it listens')
  t.notOk(cp.finished(), 'the control plane runs on the key from the environment')
  t.notOk('KEYMESH_MASTER_KEY' in env, 'and the variable is gone from its environment')
  t.notOk(existsSync(join(dir, 'master.key')), 'no key file was written in its place')
  t.equal(await cp.stop(), 0)
})
