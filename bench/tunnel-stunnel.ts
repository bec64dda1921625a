// The stunnel path of bench/tunnel.bench.ts: the yardstick a sidecar tunnel is judged
// against (issue 13). Two stunnel processes of the same shape as the agents: A
// (client = yes) accepts plain TCP and speaks TLS to B, which accepts TLS and connects
// plain TCP to the target. Both ends are forced to TLS 1.3 with
// TLS_CHACHA20_POLY1305_SHA256, the AEAD keymesh's records use; B's certificate is a
// self-signed P-256 one made here (the control plane's own maker), which A verifies
// on every connection as keymesh verifies its peer. Nagle is off on every socket, as
// the agents have it. One service section per route, so the bench's load server and
// Redis go through the same two processes.
//
// stunnel is Debian's `stunnel4`. When it is missing and this process is root, the
// bench installs it with apt-get (saying so); otherwise it says how, and the path is
// not measured.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { selfSignedCertificate } from '../control-plane/src/index.js'
import { trackChild } from '../test/kit/child.js'
import { GiveUp, until, withTimeout } from '../test/kit/wait.js'
import { commandPath, ensureDebianPackage } from './apt.js'
import { freePort } from './tunnel-procs.js'
import type { Path } from './tunnel-paths.js'

const CIPHER = 'TLS_CHACHA20_POLY1305_SHA256'

/** The stunnel binary, installing Debian's stunnel4 first when it is missing and we are root; throws saying how otherwise. */
export function ensureStunnel(log: (line: string) => void): string {
  return ensureDebianPackage('stunnel4', () => commandPath('stunnel4') ?? commandPath('stunnel'), log)
}

/** One route through the pair: A listens on `port` and B connects to `target`. */
interface Route {
  readonly name: string
  readonly port: number
  readonly inner: number
  readonly target: number
}

class StunnelChild {
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  readonly log: string[] = []

  constructor(readonly name: string, bin: string, config: string) {
    this.proc = spawn(bin, [config], { stdio: ['ignore', 'ignore', 'pipe'] })
    this.exited = trackChild(this.proc)
    this.proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.log.push(...d.split('\n').filter((l) => l !== ''))
      if (this.log.length > 20) this.log.splice(0, this.log.length - 20)
    })
  }

  get pid(): number {
    return this.proc.pid as number
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** Sockets the process holds (every thread's: they share the fd table). */
  sockets(): number {
    let n = 0
    for (const fd of readdirSync(`/proc/${this.pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${this.pid}/fd/${fd}`).startsWith('socket:')) n++
      } catch {
        // closed meanwhile
      }
    }
    return n
  }

  async stop(): Promise<void> {
    if (!this.running) return
    this.proc.kill('SIGTERM')
    await withTimeout(this.exited, 5_000, `${this.name} shutdown`).catch(() => this.proc.kill('SIGKILL'))
  }
}

const config = (sections: string[]): string =>
  [
    'foreground = yes',
    'pid =',
    'debug = err',
    'syslog = no',
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
    ...sections,
    '',
  ].join('\n')

const tls13 = ['sslVersionMin = TLSv1.3', 'sslVersionMax = TLSv1.3', `ciphersuites = ${CIPHER}`]

export interface StunnelPath extends Path {
  /** Where a client reaches Redis through the pair, when a Redis port was given. */
  readonly redisPort?: number
}

/**
 * Starts the stunnel pair with a route to `serverPort` (the path's port) and, given
 * `redisTarget`, a second route to it (`redisPort`). Resolves once both listen.
 */
export async function stunnelPath(bin: string, tmp: string, serverPort: number, redisTarget?: number): Promise<StunnelPath> {
  const tls = await selfSignedCertificate({ sans: ['localhost', '127.0.0.1'], now: Date.now(), validityDays: 2 })
  const certFile = join(tmp, 'stunnel-cert.pem')
  const keyFile = join(tmp, 'stunnel-key.pem')
  writeFileSync(certFile, tls.cert, { mode: 0o600 })
  writeFileSync(keyFile, tls.key, { mode: 0o600 })
  const routes: Route[] = [{ name: 'load', port: await freePort(), inner: await freePort(), target: serverPort }]
  if (redisTarget !== undefined) routes.push({ name: 'redis', port: await freePort(), inner: await freePort(), target: redisTarget })
  const bConf = join(tmp, 'stunnel-b.conf')
  const aConf = join(tmp, 'stunnel-a.conf')
  writeFileSync(bConf, config(routes.flatMap((r) => [
    `[${r.name}]`, `accept = 127.0.0.1:${r.inner}`, `connect = 127.0.0.1:${r.target}`, `cert = ${certFile}`, `key = ${keyFile}`, ...tls13,
  ])))
  writeFileSync(aConf, config(routes.flatMap((r) => [
    `[${r.name}]`, 'client = yes', `accept = 127.0.0.1:${r.port}`, `connect = 127.0.0.1:${r.inner}`,
    'verifyPeer = yes', `CAfile = ${certFile}`, 'checkHost = localhost', ...tls13,
  ])))
  const b = new StunnelChild('stunnel B', bin, bConf)
  const a = new StunnelChild('stunnel A', bin, aConf)
  const both = [a, b]
  try {
    for (const r of routes) {
      for (const [c, port] of [[b, r.inner], [a, r.port]] as const) {
        await until(async () => {
          if (!c.running) throw new GiveUp(`${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}): ${c.log.join(' | ')}`)
          return listening(port) ? true : undefined
        }, `${c.name} listening on ${port}`, { ms: 10_000, everyMs: 50 })
      }
    }
  } catch (e) {
    await Promise.all(both.map((c) => c.stop()))
    throw e
  }
  // Listeners (and anything else idle) held at rest: each relayed connection adds two sockets.
  const base = { A: a.sockets(), B: b.sockets() }
  return {
    name: 'stunnel',
    port: (routes[0] as Route).port,
    ...(routes[1] ? { redisPort: routes[1].port } : {}),
    hops: { A: a.pid, B: b.pid },
    open: async () => ({ A: Math.max(0, (a.sockets() - base.A) / 2), B: Math.max(0, (b.sockets() - base.B) / 2) }),
    stop: async () => {
      await Promise.all(both.map((c) => c.stop()))
    },
  }
}

/** Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp: no probe connection to leave behind). */
function listening(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => {
    const f = l.trim().split(/\s+/)
    return f[1] === local && f[3] === '0A'
  })
}
