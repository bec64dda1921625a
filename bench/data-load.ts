// HTTP load for the benches: `concurrency` keep-alive clients, each sending its next
// request as soon as the previous answer is read, for a warm-up and then a counted
// window. bench/data.bench.ts loads the agent's data API and the bare echo baseline
// with it, so both see the same client; bench/ha.bench.ts the replicas' admin API
// (with a token, clients spread round-robin over the replicas' ports). Bodies are
// prepared buffers, so the client's own JSON work stays out of what is measured.
import http from 'node:http'
import { performance } from 'node:perf_hooks'

export interface LoadOptions {
  /** One port, or several: client i talks to ports[i % ports.length]. */
  readonly port: number | readonly number[]
  readonly method?: 'GET' | 'POST'
  readonly path: string
  /** The i-th request's body (called once per request; return a prepared Buffer); none for a GET. */
  readonly body?: (i: number) => Buffer
  /** A bearer token (the admin API). */
  readonly token?: string
  readonly concurrency: number
  readonly warmMs: number
  readonly measureMs: number
  /** Operations one request counts for (items in a batch); default 1. */
  readonly opsPerRequest?: number
  /** Checks a 2xx answer's text (e.g. that no batch item failed); returns an error text or undefined. */
  readonly check?: (text: string) => string | undefined
  /** The body's content type; default application/json. */
  readonly contentType?: string
  /** Checks a 2xx answer's bytes (a binary answer), like `check`. */
  readonly checkBody?: (body: Buffer) => string | undefined
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

function send(agent: http.Agent, port: number, o: LoadOptions, body: Buffer | undefined): Promise<{ status: number; body: Buffer }> {
  const headers: Record<string, string | number> = {}
  if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`
  if (body) {
    headers['content-type'] = o.contentType ?? 'application/json'
    headers['content-length'] = body.length
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: o.path, method: o.method ?? 'POST', agent, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

export async function httpLoad(o: LoadOptions): Promise<LoadResult> {
  const ports = typeof o.port === 'number' ? [o.port] : o.port
  const agents = ports.map(() => new http.Agent({ keepAlive: true, maxSockets: o.concurrency }))
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
  const worker = async (w: number): Promise<void> => {
    const k = w % ports.length
    for (;;) {
      const t0 = performance.now()
      if (t0 >= until) return
      let r: { status: number; body: Buffer }
      try {
        r = await send(agents[k] as http.Agent, ports[k] as number, o, o.body?.(next++))
      } catch (e) {
        fail((e as Error).message)
        if (errors > 1000) return
        continue
      }
      const t1 = performance.now()
      const bad = r.status < 200 || r.status > 299
        ? `HTTP ${r.status} ${r.body.toString('utf8', 0, 200)}`
        : o.checkBody !== undefined ? o.checkBody(r.body) : o.check?.(r.body.toString('utf8'))
      if (bad !== undefined) fail(bad)
      else if (t0 >= from && t1 <= until) {
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
  return { opsPerSec: (requests * (o.opsPerRequest ?? 1) * 1000) / o.measureMs, requests, latencies, errors, firstError }
}
