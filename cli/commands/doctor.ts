// `keymesh doctor`: checks a control plane from where the operator stands, and its
// data directory when it is local, and says what to fix. Each check is ok, warn, fail
// or skip; the exit code is 1 when any failed. Nothing here changes anything.
//
// Checks: reachable (/healthz), transport (plain HTTP or https: `transportCheck` is the
// hook for the admin API's TLS, which may add certificate checks), ready (/readyz: the
// store answers), clock skew (the answer's Date header), token (a read with the
// operator token), and with --data-dir: no master key left in it (custody keeps it
// elsewhere), the admin token's permissions, free disk, and that a pinned key file
// (--cp-key-file) matches the control plane's identity.
import { readFileSync, statfsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Argv, CommandModule } from 'yargs'

import { ADMIN_TOKEN_FILE, IDENTITY_PUB_FILE, MASTER_KEY_FILE } from '../../control-plane/src/index.js'
import { readTokenFile, resolveClientConfig, type Env } from '../client.js'
import { clientFlags, print, run, type CliContext, type GlobalArgs } from '../context.js'
import { controlPlaneFetch, loadTrust } from '../transport.js'
import type { Column } from '../output.js'

interface DoctorArgs extends GlobalArgs { dataDir?: string; cpKeyFile?: string }

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip'
export interface Check { readonly check: string; readonly status: CheckStatus; readonly detail: string; readonly fix?: string }

/** More than this between the control plane's clock and ours is worth a warning (Date has 1 s resolution). */
const MAX_SKEW_MS = 5_000
/** Free space under which the store's disk is a warning. */
const MIN_FREE_BYTES = 100 * 1024 * 1024
const TIMEOUT_MS = 5_000
const COLUMNS: readonly Column[] = ['status', 'check', 'detail', 'fix']

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/

/** The transport of the admin API. The TLS work may extend this (certificate, pin, expiry). */
export function transportCheck(url: URL): Check {
  if (url.protocol === 'https:') return { check: 'transport', status: 'ok', detail: 'https' }
  if (LOOPBACK.test(url.hostname)) return { check: 'transport', status: 'ok', detail: 'plain HTTP on loopback' }
  return { check: 'transport', status: 'warn', detail: `plain HTTP to ${url.hostname}: tokens cross the network in clear`, fix: 'serve the admin API over TLS, or reach it through a loopback tunnel' }
}

/** How the CLI reaches the control plane: its trust (--ca-file, --cp-fingerprint) applied, as every other command. */
export async function controlPlaneSender(args: GlobalArgs, env: Env): Promise<typeof fetch> {
  return controlPlaneFetch(await loadTrust(clientFlags(args), env))
}

export async function get(url: string, token?: string, send: typeof fetch = fetch): Promise<Response> {
  return send(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'manual' })
}

async function remoteChecks(ctx: CliContext, args: DoctorArgs, now: () => number): Promise<Check[]> {
  let base: URL
  let tokenFile: string | undefined
  let send: typeof fetch
  try {
    const config = resolveClientConfig({ cp: args.cp, tokenFile: args.tokenFile }, ctx.env)
    base = new URL(config.baseUrl)
    tokenFile = config.tokenFile
    send = await controlPlaneSender(args, ctx.env)
  } catch (err) {
    return [{ check: 'reachable', status: 'skip', detail: (err as Error).message }]
  }
  const checks: Check[] = [transportCheck(base)]
  const root = base.href.replace(/\/+$/, '')
  let health: Response
  const started = now()
  try {
    health = await get(`${root}/healthz`, undefined, send)
  } catch (err) {
    return [{ check: 'reachable', status: 'fail', detail: `no answer from ${root} within ${TIMEOUT_MS} ms: ${(err as Error).message}`, fix: 'start the control plane, or check --cp / KEYMESH_CP and the firewall' }, ...checks]
  }
  const rtt = now() - started
  checks.unshift(health.ok
    ? { check: 'reachable', status: 'ok', detail: `${root}/healthz answered in ${rtt} ms` }
    : { check: 'reachable', status: 'fail', detail: `${root}/healthz answered HTTP ${health.status}`, fix: 'is --cp the control plane\'s admin address?' })
  const date = Date.parse(health.headers.get('date') ?? '')
  if (Number.isNaN(date)) checks.push({ check: 'clock', status: 'skip', detail: 'the answer had no Date header' })
  else {
    const skew = date - (started + rtt / 2)
    checks.push(Math.abs(skew) > MAX_SKEW_MS + rtt
      ? { check: 'clock', status: 'warn', detail: `control plane clock is ${Math.round(skew / 1000)} s off this host's`, fix: 'run NTP (chrony, systemd-timesyncd) on both hosts: expiries and rotations follow the clock' }
      : { check: 'clock', status: 'ok', detail: `within ${Math.round(MAX_SKEW_MS / 1000)} s` })
  }
  const ready = await get(`${root}/readyz`, undefined, send).catch(() => null)
  checks.push(ready?.ok === true
    ? { check: 'store', status: 'ok', detail: '/readyz: ready' }
    : { check: 'store', status: 'fail', detail: ready === null ? '/readyz did not answer' : `/readyz answered HTTP ${ready.status}: ${(await ready.text()).slice(0, 200)}`, fix: 'see the control plane\'s log: its store does not answer' })
  if (tokenFile === undefined) checks.push({ check: 'token', status: 'skip', detail: 'no --token-file or KEYMESH_TOKEN_FILE' })
  else {
    try {
      const res = await get(`${root}/v1/intentions`, await readTokenFile(tokenFile), send)
      checks.push(res.status === 401
        ? { check: 'token', status: 'fail', detail: `${tokenFile}: not recognised (revoked, expired or for another installation)`, fix: 'ask an admin for a new token (keymesh token create)' }
        : { check: 'token', status: 'ok', detail: `${tokenFile}: accepted` })
    } catch (err) {
      checks.push({ check: 'token', status: 'fail', detail: (err as Error).message, fix: 'point --token-file at a file holding one operator token' })
    }
  }
  return checks
}

/** Checks of a control plane's data directory on this host. */
export function dataDirChecks(dir: string, cpKeyFile: string | undefined): Check[] {
  const checks: Check[] = []
  try {
    if (!statSync(dir).isDirectory()) return [{ check: 'data-dir', status: 'fail', detail: `${dir} is not a directory` }]
  } catch {
    return [{ check: 'data-dir', status: 'fail', detail: `${dir} does not exist or cannot be read`, fix: 'check --data-dir' }]
  }
  checks.push(masterKeyCheck(dir))
  const token = join(dir, ADMIN_TOKEN_FILE)
  const mode = modeOf(token)
  checks.push(mode === undefined
    ? { check: `permissions ${ADMIN_TOKEN_FILE}`, status: 'skip', detail: `${token} is absent` }
    : (mode & 0o077) === 0
      ? { check: `permissions ${ADMIN_TOKEN_FILE}`, status: 'ok', detail: `${token} is ${mode.toString(8)}` }
      : { check: `permissions ${ADMIN_TOKEN_FILE}`, status: 'fail', detail: `${token} is ${mode.toString(8)}: others may read a secret`, fix: `chmod 600 ${token}` })
  try {
    const fs = statfsSync(dir)
    const free = fs.bavail * fs.bsize
    checks.push(free < MIN_FREE_BYTES
      ? { check: 'disk', status: 'warn', detail: `${Math.floor(free / 1048576)} MiB free under ${dir}`, fix: 'free space: a full disk stops every change (and its audit entry)' }
      : { check: 'disk', status: 'ok', detail: `${Math.floor(free / 1048576)} MiB free` })
  } catch {
    checks.push({ check: 'disk', status: 'skip', detail: 'free space unknown' })
  }
  if (cpKeyFile !== undefined) {
    try {
      const pinned = readFileSync(cpKeyFile, 'utf8').trim()
      const actual = readFileSync(join(dir, IDENTITY_PUB_FILE), 'utf8').trim()
      checks.push(pinned === actual
        ? { check: 'pinned key', status: 'ok', detail: `${cpKeyFile} matches ${IDENTITY_PUB_FILE}` }
        : { check: 'pinned key', status: 'fail', detail: `${cpKeyFile} differs from ${join(dir, IDENTITY_PUB_FILE)}: agents pinning it cannot connect`, fix: `copy ${join(dir, IDENTITY_PUB_FILE)} to the agents' --cp-key-file` })
    } catch (err) {
      checks.push({ check: 'pinned key', status: 'fail', detail: (err as Error).message.split('\n')[0] ?? 'cannot be read' })
    }
  }
  return checks
}

function modeOf(path: string): number | undefined {
  try {
    return statSync(path).mode & 0o777
  } catch {
    return undefined
  }
}

/**
 * The master key is never in the data directory since key custody (docs/operations.md):
 * a DIR/master.key is an installation from before custody that has not started since
 * (the next start moves it out), or a copy left behind, which still opens the store.
 */
function masterKeyCheck(dir: string): Check {
  const path = join(dir, MASTER_KEY_FILE)
  const mode = modeOf(path)
  if (mode === undefined) return { check: 'master key', status: 'ok', detail: 'not in the data directory (custody keeps it elsewhere)' }
  const loose = (mode & 0o077) !== 0
  return {
    check: 'master key',
    status: loose ? 'fail' : 'warn',
    detail: `${path} (mode ${mode.toString(8)}${loose ? ': others may read it' : ''}) is a master key in the data directory: whoever copies the directory can open the store`,
    fix: `${loose ? `chmod 600 ${path}; then ` : ''}if this installation is from before key custody, start the control plane once (it moves the key out) or run keymesh control-plane init --data-dir ${dir} --from-key-file ${path} --shares 5 --threshold 3; if it already has custody, the file is a stray copy: destroy it (shred -u ${path})`,
  }
}

export function doctorCommand(ctx: CliContext): CommandModule<GlobalArgs, DoctorArgs> {
  return {
    command: 'doctor',
    describe: 'Check a control plane: reachable, transport, store, clock, token; with --data-dir its files and disk. Prints what to fix',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('data-dir', { type: 'string', describe: 'The control plane\'s data directory, when it is on this host' })
        .option('cp-key-file', { type: 'string', describe: 'A pinned control-plane key file to compare with DIR/identity.pub' })
        .example('$0 doctor --cp http://127.0.0.1:7400 --token-file admin.token', 'check from here')
        .example('$0 doctor --data-dir ./keymesh-data --json', 'and the local files, as JSON') as unknown as Argv<DoctorArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const checks = [...(args.cp !== undefined || ctx.env['KEYMESH_CP'] !== undefined ? await remoteChecks(ctx, args, Date.now) : []), ...(args.dataDir !== undefined ? dataDirChecks(args.dataDir, args.cpKeyFile) : [])]
        if (checks.length === 0) checks.push({ check: 'nothing', status: 'skip', detail: 'name a control plane (--cp) or a data directory (--data-dir)' })
        if (args.json) print(ctx, args, checks)
        else print(ctx, args, checks.map((c) => ({ ...c, fix: c.fix ?? '' })), COLUMNS)
        return checks.some((c) => c.status === 'fail') ? 1 : 0
      }),
  }
}
