// Building the page: elements are made with createElement and filled with
// textContent, never from HTML strings, so nothing the control plane returns (a
// service name, an audit reason) can become markup or script.

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>

function apply(el: Element, attrs: Attrs): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (typeof value === 'function') el.addEventListener(name.slice(2).toLowerCase(), value)
    else if (value === true) el.setAttribute(name, '')
    else el.setAttribute(name, String(value))
  }
}

function append(el: Element, children: readonly Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c)
  }
}

/** An HTML element: `h('button', { class: 'x', onClick: f }, 'label')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  apply(el, attrs)
  append(el, children)
  return el
}

const SVG_NS = 'http://www.w3.org/2000/svg'

/** An SVG element. */
export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag)
  apply(el, attrs)
  append(el, children)
  return el
}

export function clear(el: Element): void {
  el.replaceChildren()
}

/** A local date and time, to the second. */
export function when(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—'
  const d = new Date(ms)
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

/** A duration in words: `45 s`, `12 min`, `3 h`, `2 d`. */
export function span(ms: number): string {
  const a = Math.abs(ms)
  if (a < 60_000) return `${Math.round(a / 1000)} s`
  if (a < 3_600_000) return `${Math.round(a / 60_000)} min`
  if (a < 172_800_000) return `${Math.round(a / 3_600_000)} h`
  return `${Math.round(a / 86_400_000)} d`
}

/** `5 min ago` / `in 2 h`, measured from the control plane's `now`. */
export function relative(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined) return '—'
  return ms <= now ? `${span(now - ms)} ago` : `in ${span(ms - now)}`
}

/** A table with a header row; rows are arrays of cells. */
export function table(head: readonly string[], rows: readonly (readonly Child[])[], attrs: Attrs = {}): HTMLTableElement {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, ...head.map((t) => h('th', {}, t)))),
    h('tbody', {}, ...rows.map((cells) => h('tr', {}, ...cells.map((c) => h('td', {}, c))))),
  )
}

/** A small coloured label. */
export function badge(text: string, kind: 'ok' | 'warn' | 'bad' | 'muted' = 'muted'): HTMLSpanElement {
  return h('span', { class: `badge ${kind}` }, text)
}
