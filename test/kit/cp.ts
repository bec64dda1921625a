// A real control plane for tests and benches, in two forms with the same options
// (data directory, store, master key):
//   - startTestControlPlane: in this process, port 0 on loopback, a temporary data
//     directory, a fake clock the test moves, the scheduler driven by hand, and logs
//     captured in memory (so tests can assert that no secret reached them);
//   - startChildControlPlane: in a child process (cp-child.ts), to kill it with
//     SIGKILL or to measure it apart from the load, with the child's commands
//     (stats, pushes, and with `faults` the clock jump and the rotation traps).
// Both give an admin API client of the same shape (adminApi).
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../control-plane/src/index.js'
import { lifecyclePolicy } from '../../control-plane/src/index.js'
import { ADMIN_TOKEN_FILE, IDENTITY_PUB_FILE, devKeyPath, setupServerTls } from '../../control-plane/src/index.js'
import { controlPlaneFetch } from '../../cli/index.js'
import { systemClock } from '../../platform/src/index.js'
import { JsonChild } from './child.js'
import type { CpChildOptions } from './cp-child.js'
import { FakeClock } from './fake-clock.js'
import { captureLogger } from './logs.js'

/**
 * Where a test control plane on `dataDir` keeps its development master key: beside the
 * data directory (never in it), never in the real user's config directory.
 */
export function testKeyDir(dataDir: string): string {
  return join(dirname(dataDir), '.keymesh-keys')
}

export type AdminApi = (method: string, path: string, body?: unknown, token?: string | null) => Promise<{ status: number; body: any }>

/** fetch() against the admin API at `url` with `token` (or, per call, another token, or none with null); `ca` for an https one. */
export function adminApi(url: string, token: string, ca?: string): AdminApi {
  const fetch = ca === undefined ? globalThis.fetch : controlPlaneFetch({ ca })
  return async (method, path, body, as = token) => {
    const headers: Record<string, string> = {}
    if (as !== null) headers['authorization'] = `Bearer ${as}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    const text = await res.text()
    return { status: res.status, body: text ? JSON.parse(text) : undefined }
  }
}

export interface TestControlPlane {
  readonly cp: ControlPlane
  readonly clock: FakeClock
  readonly dataDir: string
  readonly adminToken: string
  /** '' when it started sealed. */
  readonly identityPub: string
  /** Every log line written so far, as JSON text. */
  readonly logs: string[]
  /** fetch() against the admin API with the admin token (or `token`). */
  readonly api: AdminApi
  /** With `madeTls`: DIR/tls.crt, the CA file clients trust it with. */
  readonly caFile: string | undefined
  /** Its development master key file (custody "file"), where the control plane made it. */
  masterKeyFile(): string
}

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
}

export interface TestControlPlaneOptions extends Partial<ControlPlaneOptions> {
  readonly dataDir?: string
  /**
   * The admin token to use when this control plane writes none: a replica joining
   * a shared store (`storeUrl`) uses the first replica's.
   */
  readonly adminToken?: string
  /**
   * Serve HTTPS with a certificate made as `keymesh control-plane` makes it (for
   * 127.0.0.1, localhost and ::1), written to DIR/tls.crt and DIR/tls.key. Its validity
   * runs on the real clock, which is the one TLS clients check.
   */
  readonly madeTls?: boolean
}

/** What startTestControlPlane sets unless the test's settings say otherwise (0: never). */
export const TEST_SCHEDULES_OFF = Object.freeze({ integrityCheckIntervalMs: 0, auditVerifyIntervalMs: 0 })

export async function startTestControlPlane(t: Tap, options: TestControlPlaneOptions = {}): Promise<TestControlPlane> {
  const { adminToken: givenToken, madeTls, ...cpOptions } = options
  const dataDir = options.dataDir ?? t.testdir()
  const tls = madeTls ? await setupServerTls({ dataDir, host: '127.0.0.1', clock: systemClock, logger: captureLogger().logger }) : undefined
  const clock = options.clock instanceof FakeClock ? options.clock : new FakeClock()
  const { logger, logs } = captureLogger()
  const cp = await startControlPlane({
    host: '127.0.0.1',
    port: 0,
    dataDir,
    logger,
    runScheduler: false,
    keyDir: testKeyDir(dataDir),
    ...cpOptions,
    // The scheduled integrity check and audit verification are off unless a test
    // turns them on: their passes would run whenever a test moves the clock far.
    settings: { ...TEST_SCHEDULES_OFF, ...(cpOptions.settings ?? { lifecycle: lifecyclePolicy({ allowShortWindows: true }) }) },
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    clock,
  })
  t.teardown(() => cp.close())
  const adminToken = givenToken ?? readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim()
  // A control plane that started sealed (share custody) writes it at unseal.
  const identityPub = cp.keyring.sealed ? '' : readFileSync(join(dataDir, IDENTITY_PUB_FILE), 'utf8').trim()
  const masterKeyFile = (): string => devKeyPath(testKeyDir(dataDir), cp.keyring.status().installation as string)
  return { cp, clock, dataDir, adminToken, identityPub, logs, api: adminApi(cp.url, adminToken, tls?.cert), caFile: tls?.certPath, masterKeyFile }
}

export interface ChildControlPlaneOptions extends CpChildOptions {
  /** Names the child in errors (default "control plane"). */
  readonly name?: string
  /** A test: its teardown stops the child (gracefully; SIGKILL after 10 s). */
  readonly t?: Pick<Tap, 'teardown'>
  /** node flags before the script (--expose-gc, --cpu-prof …). */
  readonly nodeArgs?: readonly string[]
  /** 'inherit' shows the child's logs (a bench); by default they are kept for error messages. */
  readonly stderr?: 'inherit' | 'capture'
  /** How long to wait for its greeting and answers (default 60 s; a bench on a busy machine may need more). */
  readonly lineMs?: number
  /** More environment for the child (libfaketime's LD_PRELOAD and FAKETIME_* in `npm run faults`, say). */
  readonly env?: Readonly<Record<string, string>>
  /** The child script: by default this checkout's cp-child; a bench passes another build's (a baseline). */
  readonly entry?: string
}

/** A control plane in a child process: a JsonChild (ask, next, stop, kill) with its URL and files. */
export class ChildControlPlane extends JsonChild {
  readonly dataDir: string
  /** The base URL, known once the child listens (startChildControlPlane resolves then). */
  url = ''

  constructor(name: string, args: readonly string[], o: ChildControlPlaneOptions) {
    const env: NodeJS.ProcessEnv = { ...process.env, ...o.env, KEYMESH_CONFIG_HOME: testKeyDir(o.dataDir) }
    delete env['NODE_OPTIONS'] // tap's coverage hooks have nothing to record from a process killed with -9
    super(name, args, { env, ...(o.stderr ? { stderr: o.stderr } : {}), ...(o.lineMs !== undefined ? { lineMs: o.lineMs } : {}) })
    this.dataDir = o.dataDir
  }

  /** The admin token, written by the replica that initialised the store (undefined in one that joined it). */
  adminToken(): string | undefined {
    const file = join(this.dataDir, ADMIN_TOKEN_FILE)
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined
  }

  identityPub(): string {
    return readFileSync(join(this.dataDir, IDENTITY_PUB_FILE), 'utf8').trim()
  }
}

const compiled = !import.meta.url.endsWith('.ts')
const childEntry = fileURLToPath(new URL(compiled ? './cp-child.js' : './cp-child.ts', import.meta.url))
// Run from sources, the TypeScript loader is one of this process's --import flags; the child needs it too.
const loader = compiled ? [] : process.execArgv.filter((a) => a.includes('@tapjs/typescript'))

/** Starts cp-child.ts and resolves once it listens (its greeting, or with `cli` the CLI's listening line). */
export async function startChildControlPlane(o: ChildControlPlaneOptions): Promise<ChildControlPlane> {
  const { name = 'control plane', t, nodeArgs = [], stderr: _stderr, lineMs: _lineMs, env: _env, entry = childEntry, ...childOptions } = o
  const child = new ChildControlPlane(name, [...loader, ...nodeArgs, entry, JSON.stringify(childOptions)], o)
  t?.teardown(() => child.stop(10_000))
  try {
    const ready = await child.next<{ url: string }>((m) => typeof m['url'] === 'string' && (m['msg'] === undefined || m['msg'] === 'control plane listening'))
    child.url = ready.url
  } catch (e) {
    await child.kill()
    throw new Error(`${name} did not start: ${(e as Error).message}`)
  }
  return child
}
