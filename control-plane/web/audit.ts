// The audit log: filter by actor, action, target, outcome and time; newest first,
// a page at a time; new entries that match the filter appear at the top as they are
// written (the live feed); verify the chain from the page; export what the filter
// selects as JSON lines.
import { get, query } from './api.js'
import { badge, h, when } from './dom.js'
import { drawn, type AuditEntry, type FeedBatch, type Page } from './page.js'
import { actionButton, errorText, notice } from './widgets.js'

const LIMIT = 100
const MAX_SHOWN = 500

interface Filter {
  actor: string
  action: string
  target: string
  outcome: string
  from: string
  to: string
}

const OUTCOME_KIND: Readonly<Record<string, 'ok' | 'bad' | 'warn' | 'muted'>> = { ok: 'ok', allow: 'ok', deny: 'bad', error: 'warn' }

function row(e: AuditEntry): HTMLTableRowElement {
  return h('tr', { 'data-seq': e.seq },
    h('td', {}, String(e.seq)),
    h('td', {}, when(e.at)),
    h('td', {}, e.actor),
    h('td', {}, h('code', {}, e.action)),
    h('td', {}, e.target),
    h('td', {}, badge(e.outcome, OUTCOME_KIND[e.outcome] ?? 'muted')),
    h('td', {}, e.reason),
  )
}

/** The filter's fields as the API takes them; times as typed (ISO 8601 or milliseconds). */
function params(f: Filter): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(f)) if (v.trim() !== '') out[k] = v.trim()
  return out
}

function matches(e: AuditEntry, f: Filter): boolean {
  const p = params(f)
  return (p['actor'] === undefined || e.actor === p['actor']) && (p['action'] === undefined || e.action === p['action']) &&
    (p['target'] === undefined || e.target === p['target']) && (p['outcome'] === undefined || e.outcome === p['outcome']) &&
    p['from'] === undefined && p['to'] === undefined
}

export async function auditPage(root: HTMLElement): Promise<Page> {
  const filter: Filter = { actor: '', action: '', target: '', outcome: '', from: '', to: '' }
  const inputs = (['actor', 'action', 'target', 'from', 'to'] as const).map((k) => {
    const input = h('input', { type: 'text', name: k, placeholder: k === 'from' || k === 'to' ? `${k} (ISO time)` : k, 'aria-label': k })
    input.addEventListener('change', () => {
      filter[k] = input.value
      void draw()
    })
    return input
  })
  const outcome = h('select', { name: 'outcome', 'aria-label': 'outcome' }, ...['', 'ok', 'allow', 'deny', 'error'].map((o) => h('option', { value: o }, o === '' ? 'any outcome' : o)))
  outcome.addEventListener('change', () => {
    filter.outcome = outcome.value
    void draw()
  })
  const live = h('input', { type: 'checkbox', checked: true, 'aria-label': 'live tail' })
  const tbody = h('tbody', {})
  const more = h('div', { class: 'pager' })
  const verdict = h('div', { id: 'verify-result' })
  const exportLink = h('a', { class: 'button', download: 'keymesh-audit.jsonl', href: '/v1/audit/export' }, 'Export (JSON lines)')
  let next: number | null = null

  const verify = actionButton('Verify the chain', 'audit.verify', async () => {
    verdict.replaceChildren(h('span', { class: 'muted' }, 'Verifying…'))
    try {
      const v = await get<{ ok: boolean; count: number; firstBadSeq?: number; reason?: string; macs?: string; head?: { seq: number; hash: string } }>('/v1/audit/verify')
      verdict.replaceChildren(v.ok
        ? h('span', {}, badge('intact', 'ok'), ` ${v.count} entries, head #${v.head?.seq} ${v.head?.hash.slice(0, 16) ?? ''}`)
        : h('span', {}, badge('BROKEN', 'bad'), ` first bad entry #${v.firstBadSeq}: ${v.reason}`))
    } catch (e) {
      notice(`verify: ${errorText(e)}`, 'bad')
    }
  }, { 'data-action': 'verify' })

  const loadMore = async (): Promise<void> => {
    if (next === null) return
    const page = await get<{ entries: AuditEntry[]; next: number | null }>(`/ui/api/audit${query({ ...params(filter), beforeSeq: next, limit: LIMIT })}`)
    tbody.append(...page.entries.map(row))
    next = page.next
    drawMore()
  }
  const drawMore = (): void => {
    more.replaceChildren(next === null ? h('span', { class: 'muted' }, 'start of the log') : h('button', { type: 'button', onClick: () => void loadMore() }, 'older ›'))
  }
  const draw = async (): Promise<void> => {
    const page = await get<{ entries: AuditEntry[]; next: number | null }>(`/ui/api/audit${query({ ...params(filter), limit: LIMIT })}`)
    tbody.replaceChildren(...page.entries.map(row))
    next = page.next
    exportLink.setAttribute('href', `/v1/audit/export${query(params(filter))}`)
    drawMore()
    drawn(root)
  }

  root.replaceChildren(
    h('h2', {}, 'Audit log'),
    h('div', { class: 'filters' }, ...inputs, outcome, h('label', {}, live, ' live')),
    h('div', { class: 'buttons' }, verify, exportLink),
    verdict,
    h('table', { class: 'audit' },
      h('thead', {}, h('tr', {}, ...['#', 'time', 'actor', 'action', 'target', 'outcome', 'reason'].map((t) => h('th', {}, t)))),
      tbody,
    ),
    more,
  )
  await draw()
  return {
    refresh: draw,
    onAudit: (batch: FeedBatch) => {
      if (!live.checked) return
      if (batch.skipped > 0) {
        void draw()
        return
      }
      const fresh = batch.entries.filter((e) => matches(e, filter) && tbody.querySelector(`tr[data-seq="${e.seq}"]`) === null)
      tbody.prepend(...fresh.reverse().map(row))
      while (tbody.rows.length > MAX_SHOWN) tbody.deleteRow(-1)
      drawn(root)
    },
  }
}
