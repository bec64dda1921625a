// Reading a Prometheus text exposition in tests: scrape a /metrics URL and look
// series up by name and labels.

export interface Series {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** Every sample line of a text exposition (comments skipped). */
export function parseMetrics(text: string): Series[] {
  const out: Series[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (m === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1')
    out.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return out
}

/** The sum of the series named `name` whose labels include `labels` (0 when none). */
export function metric(series: readonly Series[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  let sum = 0
  for (const s of series) {
    if (s.name !== name) continue
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value
  }
  return sum
}

/** Whether any series is named `name` (with those labels). */
export function hasSeries(series: readonly Series[], name: string, labels: Readonly<Record<string, string>> = {}): boolean {
  return series.some((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

/** GET `${base}/metrics`: its status, content type and parsed series. */
export async function scrape(base: string): Promise<{ status: number; contentType: string | null; text: string; series: Series[] }> {
  const res = await fetch(`${base}/metrics`)
  const text = await res.text()
  return { status: res.status, contentType: res.headers.get('content-type'), text, series: res.ok ? parseMetrics(text) : [] }
}
