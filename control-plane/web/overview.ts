// Overview: the replicas and their readiness, the store, sealed or not, agents and
// tunnels, the audit chain's head and last verification, and recent refusals.
import { get } from './api.js'
import { badge, h, relative, table, when } from './dom.js'
import { drawn, type Page } from './page.js'

interface Overview {
  readonly now: number
  readonly store: string
  readonly custody: { readonly sealed?: boolean; readonly kind?: string }
  /** This replica's scheduled verification (health/audit-watch.ts), null without one. */
  readonly auditChain: { status: 'pending' } | { status: 'ok'; verifiedSeq: number; verifiedAt: string } | { status: 'broken'; firstBadSeq: number; reason: string; foundAt: string } | null
  readonly replicas: readonly { id: string; url: string; self: boolean; seenAt: number; live: boolean; ready: boolean; reason: string | null; sealed: boolean; agentsConnected: number }[]
  readonly agents: { enrolled: number; connected: number }
  readonly tunnels: { open: number }
  readonly counts: { services: number; intentions: number; pairs: number; keys: number }
  readonly audit: {
    head: { seq: number; hash: string }
    lastVerified: { at: number; actor: string; ok: boolean; reason: string } | null
    checkpoint: { seq: number; at: number } | null
  }
  readonly refusals: readonly { seq: number; at: number; actor: string; action: string; target: string; reason: string }[]
}

const card = (title: string, value: string | number, sub?: string): HTMLElement =>
  h('div', { class: 'card' }, h('div', { class: 'card-title' }, title), h('div', { class: 'card-value' }, String(value)), sub ? h('div', { class: 'muted' }, sub) : null)

/** The scheduled verification's last reading: how far the chain was verified, and when. */
function chainWatch(c: Overview['auditChain'], headSeq: number, now: number): (HTMLElement | string)[] {
  if (c === null) return [badge('no scheduled verification', 'warn')]
  switch (c.status) {
    case 'pending':
      return [badge('verification pending', 'warn'), ' the first scheduled pass has not ended yet.']
    case 'ok':
      return [badge('intact', 'ok'), ` last verified ${relative(Date.parse(c.verifiedAt), now)} up to #${c.verifiedSeq}${c.verifiedSeq < headSeq ? ` (head #${headSeq})` : ''}.`]
    case 'broken':
      return [badge('BROKEN', 'bad'), ` found ${relative(Date.parse(c.foundAt), now)}: first bad entry #${c.firstBadSeq} (${c.reason}); run keymesh audit verify.`]
  }
}

export async function overviewPage(root: HTMLElement): Promise<Page> {
  const draw = async (): Promise<void> => {
    const o = await get<Overview>('/ui/api/overview')
    const sealed = o.custody.sealed === true
    root.replaceChildren(
      h('h2', {}, 'Overview'),
      h('div', { class: 'cards' },
        card('Store', o.store, sealed ? 'sealed' : 'unsealed'),
        card('Agents connected', `${o.agents.connected} / ${o.agents.enrolled}`, 'connected / enrolled'),
        card('Tunnels open', o.tunnels.open, 'as the agents report them'),
        card('Services', o.counts.services, `${o.counts.intentions} rules, ${o.counts.pairs} pair keys`),
        card('Keys', o.counts.keys),
        card('Audit head', `#${o.audit.head.seq}`, o.audit.head.hash.slice(0, 16)),
      ),
      h('h3', {}, 'Control-plane replicas'),
      table(['replica', 'address', 'readiness', 'custody', 'agents', 'last heard'], o.replicas.map((r) => [
        h('span', {}, r.id, r.self ? badge('this one') : null),
        r.url,
        r.ready ? badge('ready', 'ok') : badge(r.reason ?? 'not ready', 'bad'),
        r.sealed ? badge('sealed', 'warn') : badge('unsealed', 'ok'),
        r.agentsConnected,
        r.self ? 'now' : relative(r.seenAt, o.now),
      ]), { class: 'replicas' }),
      h('h3', {}, 'Audit chain'),
      h('p', { class: 'chain-watch' }, ...chainWatch(o.auditChain, o.audit.head.seq, o.now)),
      h('p', {},
        o.audit.lastVerified === null
          ? badge('never verified from here', 'warn')
          : h('span', {}, o.audit.lastVerified.ok ? badge('intact', 'ok') : badge('BROKEN', 'bad'), ` last verified ${when(o.audit.lastVerified.at)} by ${o.audit.lastVerified.actor}: ${o.audit.lastVerified.reason}`),
        ' ',
        o.audit.checkpoint === null ? 'No signed checkpoint yet.' : `Newest signed checkpoint: #${o.audit.checkpoint.seq} at ${when(o.audit.checkpoint.at)}.`,
        ' ', h('a', { href: '#/audit' }, 'Verify it on the audit page'),
      ),
      h('h3', {}, 'Recent refusals'),
      o.refusals.length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : table(['#', 'time', 'actor', 'action', 'target', 'reason'], o.refusals.map((e) => [String(e.seq), when(e.at), e.actor, e.action, e.target, e.reason]), { class: 'refusals' }),
    )
    drawn(root)
  }
  await draw()
  return { refresh: draw }
}
