// Keys: a page of keys (search, type, paging), and one key's detail — versions with
// their states and per-version use (last used, by which services), rotation
// schedule, grants — with rotate, disable and enable, and scheduled destruction
// (and its cancellation) on the page, each after a preview.
import { get, query } from './api.js'
import { badge, h, table, when } from './dom.js'
import { drawn, type Page } from './page.js'
import { actionButton, confirmChange, pagedList, type PageOf } from './widgets.js'

interface VersionView {
  readonly version: number
  readonly state: string
  readonly createdAt: number
  readonly stateChangedAt: number
  readonly destroyAt: number | null
  readonly notAfter: number | null
  readonly origin?: string
  readonly lastUsedAt?: number | null
  readonly uses30d?: number
  readonly services?: readonly string[]
}

interface KeyRow {
  readonly name: string
  readonly type: string
  readonly primaryVersion: number
  readonly rotationPeriodMs: number | null
  readonly nextRotationAt: number | null
  readonly versions: readonly VersionView[]
  readonly states: Readonly<Record<string, number>>
  readonly lastUsedAt: number | null
}

const KEY_TYPES = ['aead', 'x25519', 'ed25519', 'ecdsa-p256', 'hmac-sha256', 'pair']
const LIMIT = 50
const DAY = 86_400_000

const stateBadge = (state: string): HTMLElement =>
  badge(state, state === 'enabled' ? 'ok' : state === 'decrypt-only' ? 'muted' : state === 'destroyed' ? 'muted' : 'warn')

const period = (ms: number | null): string => (ms === null ? 'none' : ms % DAY === 0 ? `every ${ms / DAY} d` : `every ${Math.round(ms / 3_600_000)} h`)

export async function keysPage(root: HTMLElement, params: readonly string[]): Promise<Page> {
  return params[0] === undefined ? keyList(root) : keyDetail(root, params[0])
}

async function keyList(root: HTMLElement): Promise<Page> {
  const search = h('input', { type: 'search', placeholder: 'name contains…', 'aria-label': 'search keys' })
  const type = h('select', { 'aria-label': 'key type' }, h('option', { value: '' }, 'all but pair keys'), ...KEY_TYPES.map((t) => h('option', { value: t }, t)))
  const body = h('div', {})
  root.replaceChildren(h('h2', {}, 'Keys'), h('div', { class: 'filters' }, search, type), body)
  const list = await pagedList(body, [search, type], LIMIT,
    (offset) => get<PageOf<KeyRow>>(`/ui/api/keys${query({ q: search.value.trim(), type: type.value, offset, limit: LIMIT })}`),
    (items) => table(['name', 'type', 'primary', 'versions', 'rotation', 'next rotation', 'last used'], items.map((k) => [
        h('a', { href: `#/keys/${encodeURIComponent(k.name)}` }, k.name),
        k.type,
        `v${k.primaryVersion}`,
        h('span', {}, ...Object.entries(k.states).map(([st, n]) => h('span', {}, stateBadge(`${n} ${st}`), ' '))),
        period(k.rotationPeriodMs),
        when(k.nextRotationAt),
        when(k.lastUsedAt),
      ]), { class: 'keys' }),
    () => drawn(root))
  return { refresh: list.draw }
}

/**
 * The destruction dialog: the window, and for a version used within the guard window
 * (the control plane refuses it with CP_ERR_KEY_IN_USE) "destroy anyway" with its
 * reason, which the control plane requires with force and audits.
 */
function destructionFields(windowField: HTMLInputElement): { fields: HTMLElement[]; bodyAtConfirm: () => unknown } {
  const force = h('input', { type: 'checkbox', 'data-field': 'force' })
  const reason = h('input', { type: 'text', maxlength: 200, placeholder: 'why (audited)', 'aria-label': 'reason for destroying a recently used version', 'data-field': 'reason' })
  return {
    fields: [
      h('label', {}, 'Destroy after ', windowField, ' days'),
      h('p', { class: 'muted' }, 'A version used recently is refused (CP_ERR_KEY_IN_USE) unless destroyed anyway, with a reason.'),
      h('label', {}, force, ' Destroy anyway although recently used, because: ', reason),
    ],
    bodyAtConfirm: () => ({
      state: 'scheduled-destruction',
      windowMs: Number(windowField.value) * DAY,
      ...(force.checked ? { force: true, reason: reason.value.trim() } : {}),
    }),
  }
}

async function keyDetail(root: HTMLElement, name: string): Promise<Page> {
  const path = `/v1/keys/${encodeURIComponent(name)}`
  const draw = async (): Promise<void> => {
    const key = await get<KeyRow>(path)
    const grants = key.type === 'pair' ? { grants: [] } : await get<{ grants: { service: string; rights: string[] }[] }>(`${path}/grants`)
    const windowField = h('input', { type: 'number', min: 1, value: 7, 'aria-label': 'days until destruction' })
    const state = (v: VersionView, to: string, label: string, op = 'key.state'): HTMLButtonElement =>
      actionButton(label, op, () => void confirmChange({
        title: `${label}: ${name} v${v.version}`,
        method: 'POST',
        path: `${path}/versions/${v.version}/state`,
        ...(to === 'scheduled-destruction'
          ? destructionFields(windowField)
          : { body: { state: to } }),
        done: () => `${name} v${v.version}: ${label.toLowerCase()} done`,
      }).then(draw), { 'data-action': `${to}-${v.version}` })
    root.replaceChildren(
      h('p', {}, h('a', { href: '#/keys' }, '‹ all keys')),
      h('h2', {}, name, ' ', badge(key.type)),
      h('p', {},
        `Primary v${key.primaryVersion}; rotation ${period(key.rotationPeriodMs)}; next ${when(key.nextRotationAt)}. `,
        key.type !== 'pair'
          ? actionButton('Rotate', 'key.rotate', () => void confirmChange({
            title: `Rotate ${name}`, method: 'POST', path: `${path}/rotate`,
            done: (r) => `${name} rotated to v${(r as { version: number }).version}`,
          }).then(draw), { 'data-action': 'rotate' })
          : h('span', { class: 'muted' }, 'A pair key: rotate it from the service graph.'),
      ),
      h('h3', {}, 'Versions'),
      table(['version', 'state', 'created', 'last used', 'uses (30 d)', 'used by', 'destroy at', ''], [...key.versions].reverse().map((v) => [
        h('span', {}, `v${v.version}`, v.version === key.primaryVersion ? badge('primary', 'ok') : null, v.origin === 'imported' ? badge('imported') : null),
        stateBadge(v.state),
        when(v.createdAt),
        when(v.lastUsedAt),
        String(v.uses30d ?? 0),
        (v.services ?? []).join(', ') || '—',
        when(v.destroyAt),
        key.type === 'pair' || v.state === 'destroyed'
          ? ''
          : h('span', { class: 'buttons' },
            v.state === 'disabled'
              ? state(v, 'enabled', 'Enable')
              : v.state === 'scheduled-destruction'
                ? actionButton('Cancel destruction', 'key.state', () => void confirmChange({
                  title: `Cancel the destruction of ${name} v${v.version}`, method: 'POST', path: `${path}/versions/${v.version}/cancel-destruction`,
                  done: () => `${name} v${v.version} will not be destroyed`,
                }).then(draw), { 'data-action': `cancel-${v.version}` })
                : state(v, 'disabled', 'Disable'),
            v.version !== key.primaryVersion && v.state !== 'scheduled-destruction' ? state(v, 'scheduled-destruction', 'Schedule destruction') : null,
          ),
      ]), { class: 'versions' }),
      h('h3', {}, 'Grants'),
      grants.grants.length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : table(['service', 'rights'], grants.grants.map((g) => [g.service, g.rights.join(', ')])),
    )
    drawn(root)
  }
  await draw()
  return { refresh: draw }
}
