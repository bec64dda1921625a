// The console's entry: sign-in, the frame (navigation, who is signed in, sign-out),
// the pages by the URL's fragment (#/overview, #/graph, #/keys[/NAME], #/agents,
// #/audit), and the live feed: each new audit entry, from any operator or replica,
// reaches the page within a second (the audit page shows it, the others draw again).
//
// The operator token is typed into the sign-in form, sent once, and the form is
// cleared; a one-time link (#link=CODE) is taken out of the address bar and its
// history entry before it is used.
import { ApiError, currentSession, get, send, setSession, whenReadiness, whenSignedOut, type Session } from './api.js'
import { agentsPage } from './agents.js'
import { auditPage } from './audit.js'
import { h, when } from './dom.js'
import { graphPage } from './graph.js'
import { keysPage } from './keys.js'
import { overviewPage } from './overview.js'
import type { FeedBatch, Page, PageFn } from './page.js'
import { errorText, notice } from './widgets.js'

const PAGES: Readonly<Record<string, { title: string; draw: PageFn }>> = {
  overview: { title: 'Overview', draw: overviewPage },
  graph: { title: 'Service graph', draw: graphPage },
  keys: { title: 'Keys', draw: keysPage },
  agents: { title: 'Agents', draw: agentsPage },
  audit: { title: 'Audit log', draw: auditPage },
}

const app = document.getElementById('app') as HTMLElement
let page: Page | null = null
let events: EventSource | null = null
let pending: ReturnType<typeof setTimeout> | undefined
let drawing = 0

function signInForm(why?: string): void {
  events?.close()
  events = null
  page = null
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'kmo_…', 'aria-label': 'operator token', required: true })
  const error = h('p', { class: 'bad', role: 'alert' }, why ?? '')
  const form = h('form', { class: 'sign-in' },
    h('h1', {}, 'keymesh console'),
    h('p', {}, 'Sign in with an operator token. It is exchanged for a session of its role and not kept by this page.'),
    token,
    h('button', { type: 'submit' }, 'Sign in'),
    error,
  )
  form.addEventListener('submit', (ev) => {
    ev.preventDefault()
    const value = token.value
    token.value = ''
    void signIn({ token: value }).catch((e) => (error.textContent = errorText(e)))
  })
  app.replaceChildren(form)
  document.body.dataset['page'] = 'sign-in'
  token.focus()
}

async function signIn(body: { token: string } | { linkToken: string }): Promise<void> {
  setSession(await send<Session>('POST', '/ui/api/session', body))
  if (!location.hash.startsWith('#/')) location.hash = '#/overview'
  frame()
}

function frame(): void {
  const s = currentSession() as Session
  const main = h('main', { id: 'page' })
  const signOut = h('button', { type: 'button', onClick: () => void send('DELETE', '/ui/api/session').finally(() => signInForm('Signed out.')) }, 'Sign out')
  app.replaceChildren(
    h('header', {},
      h('span', { class: 'brand' }, 'keymesh'),
      h('nav', {}, ...Object.entries(PAGES).map(([name, p]) => h('a', { href: `#/${name}`, 'data-nav': name }, p.title))),
      h('span', { class: 'who' }, h('span', { id: 'live-dot', title: 'live updates' }), `${s.name} (${s.role})`, s.expiresAt !== null ? h('span', { class: 'muted' }, ` until ${when(s.expiresAt).slice(11, 16)}`) : null),
      signOut,
    ),
    h('div', { id: 'notice' }),
    h('div', { id: 'not-ready', class: 'banner bad', role: 'alert', hidden: true }),
    main,
  )
  listen()
  void route()
}

async function route(): Promise<void> {
  const main = document.getElementById('page')
  if (!main || currentSession() === null) return
  const [name = 'overview', ...params] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent)
  const p = PAGES[name] ?? PAGES['overview']
  const which = PAGES[name] ? name : 'overview'
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.getAttribute('data-nav') === which)
  const mine = ++drawing
  const root = h('section', { 'data-page': which })
  main.replaceChildren(root)
  document.body.dataset['page'] = which
  document.title = `${p?.title ?? ''} · keymesh`
  try {
    const drawnPage = await (p as { draw: PageFn }).draw(root, params)
    if (mine === drawing) page = drawnPage
  } catch (e) {
    if (e instanceof ApiError && e.status === 503) root.replaceChildren(h('p', { class: 'muted' }, 'Waiting for the control plane to be ready.'))
    else if (!(e instanceof ApiError && e.status === 401)) root.replaceChildren(h('p', { class: 'bad', role: 'alert' }, errorText(e)))
  }
}

/** The live feed: audit entries as server-sent events; a page draws again at most every 200 ms. */
function listen(): void {
  events?.close()
  const dot = (state: string): void => document.getElementById('live-dot')?.setAttribute('class', state)
  events = new EventSource('/ui/api/events')
  events.addEventListener('open', () => dot('on'))
  events.addEventListener('audit', (ev) => {
    const batch = JSON.parse((ev as MessageEvent<string>).data) as FeedBatch
    if (page?.onAudit) page.onAudit(batch)
    else {
      clearTimeout(pending)
      pending = setTimeout(() => void page?.refresh().catch((e) => notice(errorText(e), 'bad')), 200)
    }
  })
  events.addEventListener('ended', () => {
    setSession(null)
    signInForm('Your session ended: sign in again.')
  })
  events.addEventListener('error', () => {
    dot('off')
    // A refused reconnect (the session is gone) closes the stream for good: ask why.
    if (events?.readyState === EventSource.CLOSED && currentSession() !== null) {
      void get('/ui/api/session').catch(() => {
        if (currentSession() === null) return
        setSession(null)
        signInForm('Your session ended: sign in again.')
      })
    }
  })
}

/** A one-time sign-in link in the address (#link=CODE): used, and first taken out of the address bar and the history. */
async function takeLink(): Promise<boolean> {
  const link = /^#link=([A-Za-z0-9_-]+)$/.exec(location.hash)?.[1]
  if (link === undefined) return false
  history.replaceState(null, '', '#/overview')
  // The link replaces whatever session this page had: its stream and late answers end here.
  events?.close()
  events = null
  setSession(null)
  try {
    await signIn({ linkToken: link })
  } catch (e) {
    setSession(null)
    signInForm(errorText(e))
  }
  return true
}

async function start(): Promise<void> {
  whenSignedOut((why) => signInForm(`Your session ended (${why}): sign in again.`))
  // A 503: the control plane is up but not ready; a banner says so until an answer is not a 503.
  whenReadiness((why) => {
    const banner = document.getElementById('not-ready')
    if (!banner) return
    banner.hidden = why === null
    banner.textContent = why === null ? '' : `The control plane is not ready: ${why}. Changes are refused until it is; this page retries on its own.`
  })
  window.addEventListener('hashchange', () => void takeLink().then(async (taken) => {
    if (!taken) await route()
  }))
  if (await takeLink()) return
  // The session cookie is HttpOnly; its hint (nothing but `1`) says whether to ask for it.
  if (!/(^|; )(__Host-)?keymesh-console-hint=1/.test(document.cookie)) {
    signInForm()
    return
  }
  try {
    setSession(await get<Session>('/ui/api/session'))
    frame()
  } catch {
    signInForm('Your session ended: sign in again.')
  }
}

void start()
