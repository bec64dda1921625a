// The service graph: services as nodes, rules (intentions) as arrows — allow in
// blue, deny in red, a removal in its grace dashed — each with its pair key's
// version and open tunnels. Selecting an arrow shows the pair key (version, age,
// next rotation, versions still accepted), its recent audit entries, and offers to
// rotate it or remove the rule, each after a preview of what it affects.
import { get, query } from './api.js'
import { badge, h, relative, s, span, table, when } from './dom.js'
import { layout, type Point } from './layout.js'
import { drawn, type Page } from './page.js'
import { actionButton, confirmChange } from './widgets.js'

interface PairFacts {
  readonly pairId: string
  readonly state: 'live' | 'destroyed'
  readonly version: number
  readonly versionCreatedAt: number
  readonly nextRotationAt: number | null
  readonly previous: readonly { version: number; notAfter: number | null }[]
  readonly tunnels: number
}

interface Edge {
  readonly src: string
  readonly dst: string
  readonly effect: 'allow' | 'deny'
  readonly createdAt: number
  readonly removesAt: number | null
  readonly pair: PairFacts | null
}

interface Graph {
  readonly now: number
  readonly nodes: readonly { name: string; agents: number; connected: number }[]
  readonly edges: readonly Edge[]
  readonly wildcards: readonly { src: string; dst: string; effect: string; removesAt: number | null }[]
  readonly implied: readonly { services: readonly [string, string]; pair: PairFacts }[]
}

const NODE_R = 14
/** Above this many arrows, their labels would hide the graph: they move to the tooltips and the panel. */
const MAX_LABELLED = 40

/** A bent arrow from a to b, stopping short of both circles; `a → b` and `b → a` bend apart. */
function arrow(a: Point, b: Point): { d: string; mid: Point } {
  const dx = b.x - a.x
  const dy = b.y - a.y
  const len = Math.hypot(dx, dy) || 1
  const ux = dx / len
  const uy = dy / len
  const start = { x: a.x + ux * (NODE_R + 2), y: a.y + uy * (NODE_R + 2) }
  const end = { x: b.x - ux * (NODE_R + 6), y: b.y - uy * (NODE_R + 6) }
  const bend = Math.min(40, len * 0.12)
  const c = { x: (a.x + b.x) / 2 - uy * bend, y: (a.y + b.y) / 2 + ux * bend }
  const mid = { x: 0.25 * start.x + 0.5 * c.x + 0.25 * end.x, y: 0.25 * start.y + 0.5 * c.y + 0.25 * end.y }
  return { d: `M${start.x.toFixed(1)},${start.y.toFixed(1)} Q${c.x.toFixed(1)},${c.y.toFixed(1)} ${end.x.toFixed(1)},${end.y.toFixed(1)}`, mid }
}

const edgeKey = (e: { src: string; dst: string }): string => `${e.src}->${e.dst}`

export async function graphPage(root: HTMLElement): Promise<Page> {
  let selected: string | null = null
  let data: Graph | null = null
  const panel = h('aside', { class: 'panel', id: 'edge-panel' })
  const picture = h('div', { class: 'graph' })
  const lists = h('div', {})
  const legend = h('p', { class: 'muted legend' }, 'Blue arrow: allow; red dotted: deny; dashed: removed, working until its grace ends. ',
    'On an arrow: its pair key\'s version · tunnels open. Green service: an agent connected; amber: none of its agents is.')
  root.replaceChildren(h('h2', {}, 'Service graph'), h('div', { class: 'graph-layout' }, h('div', {}, picture, legend), panel), lists)

  const drawPanel = async (): Promise<void> => {
    const e = data?.edges.find((x) => edgeKey(x) === selected)
    if (!data || !e) {
      panel.replaceChildren(h('p', { class: 'muted' }, 'Select an arrow to see its pair key and act on it.'))
      return
    }
    const now = data.now
    const p = e.pair
    const audit = p ? await get<{ entries: { seq: number; at: number; action: string; actor: string; reason: string }[] }>(`/ui/api/audit${query({ target: `pair:${p.pairId}`, limit: 5 })}`) : { entries: [] }
    panel.replaceChildren(
      h('h3', {}, `${e.src} → ${e.dst}`),
      h('p', {}, badge(e.effect, e.effect === 'allow' ? 'ok' : 'bad'), ` since ${when(e.createdAt)}`, e.removesAt !== null ? h('span', {}, ' ', badge(`removed ${relative(e.removesAt, now)}`, 'warn')) : null),
      p === null
        ? h('p', { class: 'muted' }, 'No pair key (a deny, or a pair with no allow in force).')
        : h('dl', { class: 'pair' },
          h('dt', {}, 'pair key'), h('dd', {}, h('code', {}, p.pairId), ' ', p.state === 'live' ? badge('live', 'ok') : badge('destroyed', 'muted')),
          h('dt', {}, 'version'), h('dd', { 'data-field': 'version' }, `v${p.version}`),
          h('dt', {}, 'age'), h('dd', {}, span(now - p.versionCreatedAt)),
          h('dt', {}, 'next rotation'), h('dd', {}, p.nextRotationAt === null ? 'none scheduled' : `${when(p.nextRotationAt)} (${relative(p.nextRotationAt, now)})`),
          h('dt', {}, 'still accepted'), h('dd', {}, p.previous.length === 0 ? '—' : p.previous.map((v) => `v${v.version} until ${when(v.notAfter)}`).join(', ')),
          h('dt', {}, 'tunnels open'), h('dd', { 'data-field': 'tunnels' }, String(p.tunnels)),
        ),
      h('div', { class: 'buttons' },
        p !== null && p.state === 'live'
          ? actionButton('Rotate pair key', 'pair.rotate', () => void confirmChange({
            title: `Rotate the pair key of ${p.pairId}`,
            method: 'POST',
            path: `/v1/pairs/${encodeURIComponent(e.src)}/${encodeURIComponent(e.dst)}/rotate`,
            done: (r) => `${p.pairId} rotated to v${(r as { version: number }).version}`,
          }).then(() => redraw()), { 'data-action': 'rotate' })
          : null,
        actionButton('Remove rule', 'intention.remove', () => void confirmChange({
          title: `Remove ${e.effect} ${e.src} → ${e.dst}`,
          method: 'DELETE',
          path: `/v1/intentions/${encodeURIComponent(e.src)}/${encodeURIComponent(e.dst)}`,
          done: (r) => ((r as { removed: boolean }).removed ? `removed ${e.src} → ${e.dst}` : `${e.src} → ${e.dst} keeps working through its grace, then goes`),
        }).then(() => redraw()), { 'data-action': 'remove' }),
      ),
      h('h4', {}, 'Recent audit entries'),
      audit.entries.length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : h('ul', { class: 'pair-audit' }, ...audit.entries.map((x) => h('li', { 'data-seq': x.seq }, `#${x.seq} ${when(x.at)} ${x.action} by ${x.actor}: ${x.reason}`))),
    )
  }

  const drawGraph = (g: Graph): void => {
    const { at, width, height, label, center } = layout(g.nodes.map((n) => n.name), g.edges)
    const labelled = g.edges.length <= MAX_LABELLED
    const svg = s('svg', { viewBox: `0 0 ${width.toFixed(0)} ${height.toFixed(0)}`, role: 'img', 'aria-label': `${g.nodes.length} services, ${g.edges.length} rules` },
      s('defs', {},
        s('marker', { id: 'arrow-allow', viewBox: '0 0 10 10', refX: 8, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 12, markerHeight: 12, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'head allow' })),
        s('marker', { id: 'arrow-deny', viewBox: '0 0 10 10', refX: 8, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 12, markerHeight: 12, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'head deny' })),
      ),
    )
    for (const e of g.edges) {
      const a = at.get(e.src)
      const b = at.get(e.dst)
      if (!a || !b) continue
      const { d, mid } = arrow(a, b)
      const key = edgeKey(e)
      const label = e.pair && e.effect === 'allow' ? `v${e.pair.version} · ${e.pair.tunnels}⇄` : e.effect
      const classes = ['edge', e.effect, e.removesAt !== null ? 'removing' : '', key === selected ? 'selected' : ''].filter(Boolean).join(' ')
      const group = s('g', { class: classes, 'data-edge': key, ...(e.pair ? { 'data-pair': e.pair.pairId } : {}), tabindex: 0, role: 'button' },
        s('title', {}, `${e.effect} ${e.src} → ${e.dst}${e.pair ? `: ${e.pair.pairId} v${e.pair.version}, ${e.pair.tunnels} tunnel(s)` : ''}`),
        s('path', { d, class: 'hit' }),
        s('path', { d, class: 'line', 'marker-end': `url(#arrow-${e.effect})` }),
        labelled ? s('text', { x: mid.x.toFixed(1), y: (mid.y - 4).toFixed(1), class: 'edge-label', 'text-anchor': 'middle' }, label) : null,
      )
      const pick = (): void => {
        selected = key
        for (const el of svg.querySelectorAll('.edge.selected')) el.classList.remove('selected')
        group.classList.add('selected')
        void drawPanel()
      }
      group.addEventListener('click', pick)
      group.addEventListener('keydown', (ev) => {
        if ((ev as KeyboardEvent).key === 'Enter') pick()
      })
      svg.append(group)
    }
    for (const n of g.nodes) {
      const p = at.get(n.name) as Point
      const right = p.x >= center.x
      const name = label === 'below'
        ? s('text', { x: p.x.toFixed(1), y: (p.y + NODE_R + 15).toFixed(1), 'text-anchor': 'middle' }, n.name)
        : s('text', { x: (p.x + (right ? NODE_R + 4 : -NODE_R - 4)).toFixed(1), y: (p.y + 4).toFixed(1), 'text-anchor': right ? 'start' : 'end' }, n.name)
      svg.append(s('g', { class: `node${n.connected > 0 ? ' up' : n.agents > 0 ? ' down' : ''}`, 'data-service': n.name },
        s('title', {}, `${n.name}: ${n.connected} of ${n.agents} agent(s) connected`),
        s('circle', { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: NODE_R }),
        name,
      ))
    }
    picture.replaceChildren(svg)
  }

  const redraw = async (): Promise<void> => {
    data = await get<Graph>('/ui/api/graph')
    drawGraph(data)
    lists.replaceChildren(
      h('h3', {}, 'Rules for any service'),
      data.wildcards.length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : table(['rule', 'removal'], data.wildcards.map((w) => [`${w.effect} ${w.src} → ${w.dst}`, w.removesAt === null ? '—' : when(w.removesAt)])),
      h('h3', {}, 'Pair keys made by those rules'),
      data.implied.length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : table(['pair', 'version', 'age', 'tunnels'], data.implied.map((x) => [x.pair.pairId, `v${x.pair.version}`, span((data as Graph).now - x.pair.versionCreatedAt), String(x.pair.tunnels)])),
    )
    await drawPanel()
    drawn(root)
  }
  await redraw()
  return { refresh: redraw }
}
