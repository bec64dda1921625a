// What the control plane's and the agent's probes have in common: the text a
// scrape of /metrics answers, metrics that read existing state when scraped, a
// bound on label values that come from outside, and the /readyz answer.
//
// Each control plane and each agent owns its own prom-client Registry, never
// prom-client's global one: tests run several of both in one process, and each
// must show only its own series. The default process metrics (CPU, memory, event
// loop delay, GC) are the exception: their collectors start process-wide monitors
// that are never stopped (an event-loop delay sampler, a GC observer), so there is
// one set per process, in a registry of its own, created at the first scrape and
// shown by every instance's /metrics (they describe the same process).
import { createRequire } from 'node:module'
import type * as PromClient from 'prom-client'
import type { Counter, Gauge, Registry } from 'prom-client'

// prom-client is loaded on first use, not when this module is: the platform
// entry is imported by every command of the CLI, most of which never serve
// metrics. It is CommonJS, so require() returns the same module instance as
// the servers' own `import … from 'prom-client'`.
const require = createRequire(import.meta.url)
let loaded: typeof PromClient | undefined
function prom(): typeof PromClient {
  return (loaded ??= require('prom-client') as typeof PromClient)
}

export const METRIC_PREFIX = 'keymesh_'

/** What GET /metrics answers: Prometheus text format 0.0.4 and its content type. */
export interface MetricsText {
  readonly contentType: string
  readonly body: string
}

let processRegistry: Registry | undefined

/** The process metrics (prefixed `keymesh_`), then `registry`'s own. */
export async function metricsText(registry: Registry): Promise<MetricsText> {
  if (processRegistry === undefined) {
    const { Registry, collectDefaultMetrics } = prom()
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry, prefix: METRIC_PREFIX })
  }
  const [proc, own] = await Promise.all([processRegistry.metrics(), registry.metrics()])
  return { contentType: registry.contentType, body: `${proc}\n${own}` }
}

/** One series of a metric read from state: its label values and its value. */
export type Sample<L extends string> = readonly [labels: Readonly<Record<L, string>>, value: number]

interface FromState<L extends string> {
  readonly registry: Registry
  readonly name: string
  readonly help: string
  readonly labelNames?: readonly L[]
  /** Called at each scrape; must be cheap and must not throw. */
  readonly read: () => Iterable<Sample<L>> | number
}

/**
 * A counter whose values are read from existing state at each scrape (a running
 * total the code keeps anyway), so nothing is added to the path that counts.
 * `read` must return totals that never go down.
 */
export function counterFromState<L extends string>(o: FromState<L>): Counter<L> {
  const { Counter } = prom()
  return new Counter<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames ?? [],
    registers: [o.registry],
    collect() {
      this.reset()
      const r = o.read()
      if (typeof r === 'number') this.inc(r)
      else for (const [labels, value] of r) this.inc(labels as Record<L, string>, value)
    },
  })
}

/** A gauge whose values are read from existing state at each scrape. */
export function gaugeFromState<L extends string>(o: FromState<L>): Gauge<L> {
  const { Gauge } = prom()
  return new Gauge<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames ?? [],
    registers: [o.registry],
    collect() {
      this.reset()
      const r = o.read()
      if (typeof r === 'number') this.set(r)
      else for (const [labels, value] of r) this.set(labels as Record<L, string>, value)
    },
  })
}

/**
 * Keeps the distinct values of one label bounded: the first `max` values seen pass
 * as they are, any further new value is shown as `overflow`. For labels whose
 * values a caller chooses (key names), so that no caller can grow the number of
 * series, and the memory they take, without limit.
 */
export class LabelCap {
  readonly #seen = new Set<string>()
  readonly #max: number
  readonly #overflow: string

  constructor(max: number, overflow = '(other)') {
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError('a label cap must be a whole number from 0')
    this.#max = max
    this.#overflow = overflow
  }

  /**
   * The label for `v`. With `admit` false, a value not seen before is not given a
   * place of its own (it shows as the overflow value): for names a caller may
   * invent, such as the key of a refused call, which need not exist.
   */
  value(v: string, admit = true): string {
    if (this.#seen.has(v)) return v
    if (!admit || this.#seen.size >= this.#max) return this.#overflow
    this.#seen.add(v)
    return v
  }
}

/**
 * Ready to serve, or not with a one-line reason (no secret, no connection string)
 * and, where one applies, the stable error code of the cause.
 */
export type Readiness = { readonly ready: true } | { readonly ready: false; readonly reason: string; readonly code?: string }

/** GET /readyz: 200 `{"status":"ready"}`, or 503 `{"status":"not-ready","reason":…[,"code":…]}`. */
export function readinessAnswer(r: Readiness): { status: number; body: { status: string; reason?: string; code?: string } } {
  if (r.ready) return { status: 200, body: { status: 'ready' } }
  return { status: 503, body: { status: 'not-ready', reason: r.reason, ...(r.code !== undefined ? { code: r.code } : {}) } }
}
