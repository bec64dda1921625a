// Where the service graph puts its services. Pure: names and rules in, points out.
//
// Calls between services mostly flow one way (clients → front ends → back ends →
// stores), so the graph is drawn in layers from left to right: a service's layer is
// the longest chain of rules leading to it (rules that close a cycle are left out of
// that count), and within a layer services are ordered by where their callers are
// (a few barycenter sweeps), which uncrosses most arrows. When that would be too
// wide or too tall to read (a ring of rules, hundreds of services), they go on a
// circle instead, in the order a breadth-first walk meets them, so that neighbours
// sit side by side.

export interface Point { readonly x: number; readonly y: number }

export interface Layout {
  readonly at: ReadonlyMap<string, Point>
  readonly width: number
  readonly height: number
  /** Where a service's name goes: below its circle (layers) or outward (circle). */
  readonly label: 'below' | 'outward'
  readonly center: Point
}

const COLUMN = 180
const ROW = 72
const MARGIN = 70
const MAX_LAYERS = 10
const MAX_PER_LAYER = 24

export function layout(names: readonly string[], rules: readonly { src: string; dst: string }[]): Layout {
  const layers = layered(names, rules)
  if (layers !== null && layers.length <= MAX_LAYERS && Math.max(0, ...layers.map((l) => l.length)) <= MAX_PER_LAYER) return place(layers)
  return circle(walkOrder(names, rules))
}

/** Layers by longest path over the rules that close no cycle, or null for no services. */
function layered(names: readonly string[], rules: readonly { src: string; dst: string }[]): string[][] | null {
  if (names.length === 0) return null
  const known = new Set(names)
  const out = new Map<string, string[]>(names.map((n) => [n, []]))
  for (const r of rules) if (known.has(r.src) && known.has(r.dst) && r.src !== r.dst) out.get(r.src)?.push(r.dst)
  // Depth-first in name order: an edge to a service still on the stack closes a cycle.
  const state = new Map<string, 'open' | 'done'>()
  const forward = new Map<string, string[]>(names.map((n) => [n, []]))
  const order: string[] = []
  const visit = (n: string): void => {
    state.set(n, 'open')
    for (const m of out.get(n) ?? []) {
      if (state.get(m) === 'open') continue
      forward.get(n)?.push(m)
      if (!state.has(m)) visit(m)
    }
    state.set(n, 'done')
    order.push(n)
  }
  for (const n of [...names].sort()) if (!state.has(n)) visit(n)
  // Reverse post-order is a topological order of the forward edges.
  const layer = new Map<string, number>(names.map((n) => [n, 0]))
  for (const n of order.reverse()) for (const m of forward.get(n) ?? []) layer.set(m, Math.max(layer.get(m) ?? 0, (layer.get(n) ?? 0) + 1))
  const count = Math.max(...layer.values()) + 1
  const layers: string[][] = Array.from({ length: count }, () => [])
  for (const n of [...names].sort()) layers[layer.get(n) ?? 0]?.push(n)
  // Barycenter sweeps: down by callers, up by callees.
  const into = new Map<string, string[]>(names.map((n) => [n, []]))
  for (const [n, ms] of forward) for (const m of ms) into.get(m)?.push(n)
  const position = new Map<string, number>()
  const remember = (): void => layers.forEach((l) => l.forEach((n, i) => position.set(n, i)))
  const sortBy = (l: string[], neighbours: (n: string) => readonly string[]): void => {
    const weight = new Map(l.map((n, i) => {
      const ps = neighbours(n).map((m) => position.get(m)).filter((p): p is number => p !== undefined)
      return [n, ps.length === 0 ? i : ps.reduce((a, b) => a + b, 0) / ps.length]
    }))
    l.sort((a, b) => (weight.get(a) ?? 0) - (weight.get(b) ?? 0))
  }
  remember()
  for (let sweep = 0; sweep < 4; sweep++) {
    for (const l of layers.slice(1)) {
      sortBy(l, (n) => into.get(n) ?? [])
      remember()
    }
    for (const l of layers.slice(0, -1).reverse()) {
      sortBy(l, (n) => forward.get(n) ?? [])
      remember()
    }
  }
  return layers
}

function place(layers: readonly string[][]): Layout {
  const tallest = Math.max(...layers.map((l) => l.length))
  const width = Math.max(480, 2 * MARGIN + (layers.length - 1) * COLUMN)
  const height = Math.max(320, 2 * MARGIN + (tallest - 1) * ROW)
  const at = new Map<string, Point>()
  const left = (width - (layers.length - 1) * COLUMN) / 2
  layers.forEach((l, i) => {
    const top = (height - (l.length - 1) * ROW) / 2
    l.forEach((n, j) => at.set(n, { x: left + i * COLUMN, y: top + j * ROW }))
  })
  return { at, width, height, label: 'below', center: { x: width / 2, y: height / 2 } }
}

/** Breadth-first from each unmet service in name order, over rules either way. */
function walkOrder(names: readonly string[], rules: readonly { src: string; dst: string }[]): string[] {
  const near = new Map<string, Set<string>>(names.map((n) => [n, new Set()]))
  for (const r of rules) {
    near.get(r.src)?.add(r.dst)
    near.get(r.dst)?.add(r.src)
  }
  const seen = new Set<string>()
  const order: string[] = []
  for (const start of [...names].sort()) {
    if (seen.has(start)) continue
    const queue = [start]
    seen.add(start)
    while (queue.length > 0) {
      const n = queue.shift() as string
      order.push(n)
      for (const m of [...(near.get(n) ?? [])].sort()) {
        if (!seen.has(m)) {
          seen.add(m)
          queue.push(m)
        }
      }
    }
  }
  return order
}

function circle(names: readonly string[]): Layout {
  const n = Math.max(names.length, 1)
  const radius = Math.max(120, (n * 26) / (2 * Math.PI))
  const size = 2 * radius + 240
  const at = new Map<string, Point>()
  names.forEach((name, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2
    at.set(name, { x: size / 2 + radius * Math.cos(a), y: size / 2 + radius * Math.sin(a) })
  })
  return { at, width: size, height: size, label: 'outward', center: { x: size / 2, y: size / 2 } }
}
