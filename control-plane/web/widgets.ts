// Controls the pages share: a button for a change (greyed out when the role may not
// make it), the preview-then-confirm dialog every change goes through, notices, and
// a pager.
import { ApiError, currentSession, dryRunOf, may, send, type DryRun } from './api.js'
import { h } from './dom.js'

/** A button for `operation`; disabled, with the reason as its title, when the role may not. */
export function actionButton(label: string, operation: string, onClick: () => void, attrs: Record<string, string> = {}): HTMLButtonElement {
  const allowed = may(operation)
  return h('button', {
    type: 'button',
    class: 'action',
    'data-op': operation,
    disabled: !allowed,
    title: allowed ? null : `role ${currentSession()?.role ?? '?'} may not ${operation}`,
    onClick: () => onClick(),
    ...attrs,
  }, label)
}

/** A line at the top of the page: what just happened, or what went wrong. */
export function notice(text: string, kind: 'ok' | 'bad' = 'ok'): void {
  const box = document.getElementById('notice')
  if (!box) return
  box.replaceChildren(h('div', { class: `notice ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, text))
}

export function errorText(e: unknown): string {
  return e instanceof ApiError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e)
}

export interface Change {
  readonly title: string
  readonly method: 'POST' | 'DELETE' | 'PATCH'
  readonly path: string
  readonly body?: unknown
  /** Said after it is done. */
  readonly done: (result: unknown) => string
  /** Extra fields shown above the preview (e.g. a destruction window); their values are read at confirm. */
  readonly fields?: readonly HTMLElement[]
  /** The body again, from the fields, at confirm time. */
  readonly bodyAtConfirm?: () => unknown
}

/**
 * Shows what a change would do — the control plane runs it with `?dryRun=true` and
 * rolls it back — then makes it when confirmed. Resolves with the result, or null
 * when cancelled.
 */
export async function confirmChange(change: Change): Promise<unknown> {
  const preview = h('div', { class: 'preview' }, 'Asking the control plane what this would change…')
  const confirm = h('button', { type: 'button', class: 'danger', 'data-confirm': '' }, 'Confirm')
  const cancel = h('button', { type: 'button' }, 'Cancel')
  const dialog = h('dialog', { class: 'confirm' },
    h('h3', {}, change.title),
    ...(change.fields ?? []),
    preview,
    h('div', { class: 'buttons' }, cancel, confirm),
  )
  document.body.append(dialog)
  dialog.showModal()
  const body = (): unknown => change.bodyAtConfirm?.() ?? change.body
  const showPreview = async (): Promise<void> => {
    try {
      const dry = await send<DryRun>(change.method, dryRunOf(change.path), body())
      preview.replaceChildren(
        h('p', {}, 'This would:'),
        h('ul', {}, ...dry.changes.map((c) => h('li', {},
          h('code', {}, c.action), ' ', c.target, ': ', c.reason,
          ...c.notifications.filter((n) => n.services).map((n) => h('div', { class: 'muted' }, `agents of ${(n.services ?? []).join(', ')} get new key sets`)),
        ))),
      )
    } catch (e) {
      preview.replaceChildren(h('p', { class: 'bad' }, `Preview refused: ${errorText(e)}`))
    }
  }
  for (const f of change.fields ?? []) f.addEventListener('change', () => void showPreview())
  await showPreview()
  return new Promise((resolve) => {
    const close = (value: unknown): void => {
      dialog.close()
      dialog.remove()
      resolve(value)
    }
    cancel.addEventListener('click', () => close(null))
    dialog.addEventListener('cancel', () => close(null))
    confirm.addEventListener('click', async () => {
      confirm.disabled = true
      try {
        const result = await send<unknown>(change.method, change.path, body())
        notice(change.done(result))
        close(result)
      } catch (e) {
        notice(`${change.title}: ${errorText(e)}`, 'bad')
        close(null)
      }
    })
  })
}

export interface PageOf<T> {
  readonly total: number
  readonly offset: number
  readonly items: readonly T[]
}

/**
 * A list fetched and drawn a page at a time into `body`, with a pager; a change of
 * any of `filters` starts again from the first page. Resolves once the first page is
 * drawn; `draw` draws the current page again.
 */
export async function pagedList<T>(
  body: HTMLElement,
  filters: readonly HTMLInputElement[] | readonly (HTMLInputElement | HTMLSelectElement)[],
  limit: number,
  fetchPage: (offset: number) => Promise<PageOf<T>>,
  render: (items: readonly T[], redraw: () => Promise<void>) => HTMLElement,
  onDrawn: () => void,
): Promise<{ draw(): Promise<void> }> {
  let offset = 0
  const draw = async (): Promise<void> => {
    const page = await fetchPage(offset)
    body.replaceChildren(render(page.items, draw), pager(page.total, page.offset, limit, (o) => {
      offset = o
      void draw()
    }))
    onDrawn()
  }
  for (const f of filters) {
    f.addEventListener(f instanceof HTMLSelectElement || f.type === 'checkbox' ? 'change' : 'input', () => {
      offset = 0
      void draw()
    })
  }
  await draw()
  return { draw }
}

/** "Showing 1–50 of 1000" with previous and next. */
function pager(total: number, offset: number, limit: number, go: (offset: number) => void): HTMLElement {
  const last = Math.min(total, offset + limit)
  return h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: offset === 0, onClick: () => go(Math.max(0, offset - limit)) }, '‹ previous'),
    h('span', {}, total === 0 ? 'none' : `${offset + 1}–${last} of ${total}`),
    h('button', { type: 'button', disabled: last >= total, onClick: () => go(offset + limit) }, 'next ›'),
  )
}
