// A real control plane for tests: temporary data directory, port 0 on loopback,
// a fake clock the test moves, the scheduler driven by hand, and logs captured
// in memory (so tests can assert that no secret reached them).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'

import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../control-plane/src/index.js'
import { lifecyclePolicy } from '../../control-plane/src/index.js'
import { ADMIN_TOKEN_FILE, IDENTITY_PUB_FILE } from '../../control-plane/src/index.js'
import { FakeClock } from './fake-clock.js'

export interface TestControlPlane {
  readonly cp: ControlPlane
  readonly clock: FakeClock
  readonly dataDir: string
  readonly adminToken: string
  readonly identityPub: string
  /** Every log line written so far, as JSON text. */
  readonly logs: string[]
  /** fetch() against the admin API with the admin token (or `token`). */
  api(method: string, path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any }>
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
}

export async function startTestControlPlane(t: Tap, options: TestControlPlaneOptions = {}): Promise<TestControlPlane> {
  const { adminToken: givenToken, ...cpOptions } = options
  const dataDir = options.dataDir ?? t.testdir()
  const clock = options.clock instanceof FakeClock ? options.clock : new FakeClock()
  const logs: string[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk))
      cb()
    },
  })
  const cp = await startControlPlane({
    host: '127.0.0.1',
    port: 0,
    dataDir,
    logger: pino({ level: 'debug' }, sink),
    runScheduler: false,
    settings: { lifecycle: { ...lifecyclePolicy({ allowShortWindows: true }) } },
    ...cpOptions,
    clock,
  })
  t.teardown(() => cp.close())
  const adminToken = givenToken ?? readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim()
  const identityPub = readFileSync(join(dataDir, IDENTITY_PUB_FILE), 'utf8').trim()
  const api: TestControlPlane['api'] = async (method, path, body, token = adminToken) => {
    const headers: Record<string, string> = {}
    if (token !== null) headers['authorization'] = `Bearer ${token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${cp.url}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    const text = await res.text()
    return { status: res.status, body: text ? JSON.parse(text) : undefined }
  }
  return { cp, clock, dataDir, adminToken, identityPub, logs, api }
}
