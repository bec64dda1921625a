// Admin-API load for bench/ha.bench.ts: `concurrency` keep-alive clients with the
// admin token, spread round-robin over the replicas' ports, each sending its next
// request as soon as the previous answer is read, for a warm-up and then a
// counted window. (bench/data-load.ts is the same client for the agents' API,
// which takes no token and one port.)
import http from 'node:http'
import { performance } from 'node:perf_hooks'

import type { LoadResult } from './data-load.js'

export interface AdminLoadOptions {
  /** The replicas' ports; client i talks to ports[i % ports.length]. */
  readonly ports: readonly number[]
  readonly method: 'GET' | 'POST'
  readonly path: string
  /** The i-th request's JSON body (POST). */
  readonly body?: (i: number) => Buffer
  readonly token: string
  readonly concurrency: number
  readonly warmMs: number
  readonly measureMs: number
}

function send(agent: http.Agent, port: number, o: AdminLoadOptions, body: Buffer | undefined): Promise<{ status: number; text: string }> {
  const headers: Record<string, string | number> = { authorization: `Bearer ${o.token}` }
  if (body) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = body.length
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: o.path, method: o.method, agent, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

export async function adminLoad(o: AdminLoadOptions): Promise<LoadResult> {
  const agents = o.ports.map(() => new http.Agent({ keepAlive: true, maxSockets: o.concurrency }))
  const start = performance.now()
  const from = start + o.warmMs
  const until = from + o.measureMs
  const latencies: number[] = []
  let requests = 0
  let errors = 0
  let firstError: string | undefined
  let next = 0
  const worker = async (w: number): Promise<void> => {
    const k = w % o.ports.length
    for (;;) {
      const t0 = performance.now()
      if (t0 >= until) return
      let r: { status: number; text: string }
      try {
        r = await send(agents[k] as http.Agent, o.ports[k] as number, o, o.body?.(next++))
      } catch (e) {
        errors++
        firstError ??= (e as Error).message
        if (errors > 1000) return
        continue
      }
      const t1 = performance.now()
      if (r.status < 200 || r.status > 299) {
        errors++
        firstError ??= `HTTP ${r.status} ${r.text.slice(0, 200)}`
      } else if (t0 >= from && t1 <= until) {
        requests++
        latencies.push(t1 - t0)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)))
  } finally {
    for (const a of agents) a.destroy()
  }
  latencies.sort((a, b) => a - b)
  return { opsPerSec: (requests * 1000) / o.measureMs, requests, latencies, errors, firstError }
}
