// A real request/response client through each path of bench/tunnel.bench.ts (issue
// 13): `redis-benchmark -t get,set -c 50` against the local Redis, its requests/s.
// Each path carries a second route to Redis (tunnel-paths.ts, tunnel-stunnel.ts), so
// the same client drives raw TCP, the relay, stunnel and keymesh.
import { spawn, spawnSync } from 'node:child_process'
import net from 'node:net'

import { trackChild } from '../test/kit/child.js'
import { withTimeout } from '../test/kit/wait.js'

export const REDIS_PORT = 6379
export const REDIS_CLIENTS = 50

/** Why Redis cannot be used here (no redis-benchmark, no server answering PING on 127.0.0.1:6379), or undefined when it can. */
export async function redisMissing(port = REDIS_PORT): Promise<string | undefined> {
  if (spawnSync('sh', ['-c', 'command -v redis-benchmark'], { stdio: 'ignore' }).status !== 0) {
    return 'redis-benchmark is not installed (Debian: apt-get install redis-tools redis-server)'
  }
  const pong = await new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(2_000, () => done(false))
    s.once('error', () => done(false))
    s.once('connect', () => s.write('PING\r\n'))
    s.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('+PONG')))
  })
  return pong ? undefined : `no Redis answers PING on 127.0.0.1:${port} (start one: redis-server --port ${port} --save '' --daemonize yes)`
}

/** Requests/s of GET and SET, `n` requests each from REDIS_CLIENTS connections to `port`. */
export async function redisBenchmark(port: number, n: number): Promise<{ get: number; set: number }> {
  const proc = spawn('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'get,set', '-c', String(REDIS_CLIENTS), '-n', String(n), '--csv'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = trackChild(proc)
  let out = ''
  let err = ''
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d))
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d))
  const code = await withTimeout(exited, 300_000, 'redis-benchmark').catch((e: Error) => {
    proc.kill('SIGKILL')
    throw e
  })
  const rps = (test: string): number => {
    const line = out.split('\n').find((l) => l.startsWith(`"${test}"`))
    return Number(line?.split(',')[1]?.replace(/"/g, '') ?? NaN)
  }
  const r = { get: rps('GET'), set: rps('SET') }
  if (code !== 0 || !Number.isFinite(r.get) || !Number.isFinite(r.set)) {
    throw new Error(`redis-benchmark through port ${port} failed (exit ${code}): ${(err || out).trim().split('\n').slice(-2).join(' ')}`)
  }
  return r
}
