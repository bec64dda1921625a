// Agents: connected or not, last seen, address, the key set the control plane gives
// them, tunnels open, their last usage report; revoke one (after a preview of the
// pair keys it rotates).
import { get, query } from './api.js'
import { badge, h, table, when } from './dom.js'
import { drawn, type Page } from './page.js'
import { actionButton, confirmChange, pagedList, type PageOf } from './widgets.js'

interface AgentRow {
  readonly id: string
  readonly service: string
  readonly lastSeenAt: number | null
  readonly revokedAt: number | null
  readonly endpoint: string | null
  readonly connected: boolean
  readonly tunnels: number
  readonly keySet: readonly { pairId: string; version: number }[]
  readonly lastUsageBatch: number | null
}

const LIMIT = 50

export async function agentsPage(root: HTMLElement): Promise<Page> {
  const search = h('input', { type: 'search', placeholder: 'id, service or address contains…', 'aria-label': 'search agents' })
  const revoked = h('input', { type: 'checkbox', 'aria-label': 'include revoked agents' })
  const body = h('div', {})
  root.replaceChildren(
    h('h2', {}, 'Agents'),
    h('div', { class: 'filters' }, search, h('label', {}, revoked, ' include revoked')),
    h('p', { class: 'muted' }, 'Each agent\'s usage spool depth is on the agent itself: keymesh agent status.'),
    body,
  )
  const list = await pagedList(body, [search, revoked], LIMIT,
    (offset) => get<PageOf<AgentRow>>(`/ui/api/agents${query({ q: search.value.trim().toLowerCase(), includeRevoked: revoked.checked || undefined, offset, limit: LIMIT })}`),
    (items, redraw) => table(['agent', 'service', 'session', 'last seen', 'address', 'key set', 'tunnels', 'last usage report', ''], items.map((a) => [
        h('code', {}, a.id),
        a.service,
        a.revokedAt !== null ? badge('revoked', 'bad') : a.connected ? badge('connected', 'ok') : badge('not connected', 'warn'),
        when(a.lastSeenAt),
        a.endpoint ?? '—',
        a.keySet.length === 0 ? '—' : a.keySet.map((p) => `${p.pairId} v${p.version}`).join(', '),
        String(a.tunnels),
        a.lastUsageBatch === null ? 'none yet' : `batch #${a.lastUsageBatch}`,
        a.revokedAt !== null
          ? ''
          : actionButton('Revoke', 'agents.revoke', () => void confirmChange({
            title: `Revoke agent ${a.id} (${a.service})`,
            method: 'POST',
            path: `/v1/agents/${encodeURIComponent(a.id)}/revoke`,
            done: (r) => `revoked ${a.id}; rotated ${(r as { rotatedPairs: string[] }).rotatedPairs.join(', ') || 'no pair keys'}`,
          }).then(redraw), { 'data-action': `revoke-${a.id}` }),
      ]), { class: 'agents' }),
    () => drawn(root))
  return { refresh: list.draw }
}
