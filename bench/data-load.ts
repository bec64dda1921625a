// HTTP load for bench/data.bench.ts: `concurrency` keep-alive clients, each sending
// its next request as soon as the previous answer is read, for a warm-up and then
// a counted window. Used for the agent's data API and for the bare echo baseline,
// so both see the same client. Bodies are prepared buffers, so the client's own
// JSON work stays out of what is measured.
import http from 'node:http'
import { performance } from 'node:perf_hooks'

export interface LoadOptions {
  readonly port: number
  readonly path: string
  /** The i-th request's body (called once per request; return a prepared Buffer). */
  readonly body: (i: number) => Buffer
  readonly concurrency: number
  readonly warmMs: number
  readonly measureMs: number
  /** Operations one request counts for (items in a batch); default 1. */
  readonly opsPerRequest?: number
  /** Checks a 2xx answer's text (e.g. that no batch item failed); returns an error text or undefined. */
  readonly check?: (text: string) => string | undefined
}

export interface LoadResult {
  /** Operations per second in the counted window. */
  readonly opsPerSec: number
  readonly requests: number
  /** Latencies (ms) of the requests answered in the window, sorted. */
  readonly latencies: number[]
  readonly errors: number
  readonly firstError: string | undefined
}

function post(agent: http.Agent, port: number, path: string, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

export async function httpLoad(o: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency })
  const start = performance.now()
  const from = start + o.warmMs
  const until = from + o.measureMs
  const latencies: number[] = []
  let requests = 0
  let errors = 0
  let firstError: string | undefined
  let next = 0
  const fail = (why: string): void => {
    errors++
    firstError ??= why
  }
  const worker = async (): Promise<void> => {
    for (;;) {
      const t0 = performance.now()
      if (t0 >= until) return
      let r: { status: number; text: string }
      try {
        r = await post(agent, o.port, o.path, o.body(next++))
      } catch (e) {
        fail((e as Error).message)
        if (errors > 1000) return
        continue
      }
      const t1 = performance.now()
      const bad = r.status < 200 || r.status > 299 ? `HTTP ${r.status} ${r.text.slice(0, 200)}` : o.check?.(r.text)
      if (bad !== undefined) fail(bad)
      else if (t0 >= from && t1 <= until) {
        requests++
        latencies.push(t1 - t0)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker))
  } finally {
    agent.destroy()
  }
  latencies.sort((a, b) => a - b)
  return { opsPerSec: (requests * (o.opsPerRequest ?? 1) * 1000) / o.measureMs, requests, latencies, errors, firstError }
}
