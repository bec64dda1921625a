// The operator console in a real browser (headless Chromium, test/kit/browser.ts):
// one control plane with three services and two rules, one browser for every
// subtest. Each page is drawn once at least, and a screenshot of each is written
// under this test's directory.
import t from 'tap'
import { mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

import { launchBrowser, noBrowser } from '../../kit/browser.js'
import { startTestControlPlane } from '../../kit/cp.js'

// The page's globals, inside page.evaluate (the test project has no DOM types).
declare const document: any, window: any, history: any, location: any, localStorage: any, sessionStorage: any

// The screenshots' directory first: t.testdir() empties the directory on each call, so it
// is called once, and the control plane's data lives in a folder of it.
const shots = t.testdir()
const cpDir = join(shots, 'cp')
mkdirSync(cpDir)
const h = await startTestControlPlane(t, { dataDir: cpDir })
const { api, cp } = h
for (const [src, dst] of [['web', 'api'], ['api', 'db']]) await api('POST', '/v1/intentions', { src, dst })
await api('POST', '/v1/keys', { name: 'orders', type: 'aead', rotationPeriodMs: 30 * 86_400_000 })
await api('POST', '/v1/keys/orders/rotate')
const auditor = (await api('POST', '/v1/tokens', { name: 'ann', role: 'auditor' })).body as { id: string; token: string }
const operator = (await api('POST', '/v1/tokens', { name: 'otto', role: 'operator' })).body as { id: string; token: string }

const skip = noBrowser(t)
const browser = skip === null ? await launchBrowser(t) : null
const page = browser?.page
const ui = `${cp.url}/ui/`

/** Waits until the page named is drawn (its section carries data-ready). */
const ready = (name: string) => page?.waitForSelector(`section[data-page="${name}"][data-ready]`)
const shot = async (name: string): Promise<string> => {
  const path = join(shots, `${name}.png`)
  await page?.screenshot({ path, fullPage: true })
  return path
}
const signIn = async (token: string): Promise<void> => {
  await browser?.context.clearCookies()
  await page?.goto(ui)
  await page?.fill('input[name=token]', token)
  await page?.click('form.sign-in button[type=submit]')
  await ready('overview')
}
/** Audit entries the control plane holds, newest first. */
const entries = async (q: Record<string, string>) =>
  (await api('GET', `/ui/api/audit?${new URLSearchParams({ ...q, limit: '20' }).toString()}`)).body.entries as { seq: number; actor: string; action: string; outcome: string; reason: string; details: { code?: string } }[]

t.test('an operator signs in and sees the graph of three services and two rules', { skip: skip ?? false }, async (t) => {
  if (!page || !browser) return
  await signIn(h.adminToken)
  t.equal(await page.$('input[name=token]'), null, 'the sign-in form is gone')
  t.same(await page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0], 'nothing in browser storage')
  t.notOk((await page.evaluate(() => document.cookie)).includes('kmo_'), 'no token where scripts can read it')
  const cookie = (await browser.context.cookies()).find((c) => c.name === 'keymesh-console')
  t.match(cookie, { httpOnly: true, sameSite: 'Strict', path: '/' }, 'the session cookie is HttpOnly and SameSite=Strict')
  t.notOk(cookie?.value.includes(h.adminToken), 'and is not the token')
  t.ok(statSync(await shot('overview')).size > 0)

  await page.goto(`${ui}#/graph`)
  await ready('graph')
  t.same(await page.$$eval('g.node', (ns) => ns.map((n) => n.getAttribute('data-service')).sort()), ['api', 'db', 'web'], 'three services')
  t.same(await page.$$eval('g.edge', (es) => es.map((e) => e.getAttribute('data-edge')).sort()), ['api->db', 'web->api'], 'two rules')
  t.equal(await page.getAttribute('g.edge[data-edge="web->api"]', 'data-pair'), 'api:web', 'each with its pair key')
  t.ok(statSync(await shot('graph')).size > 0)
})

t.test('rotating a pair key from the page shows the new version and its audit entry', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await page.click('g.edge[data-edge="web->api"]')
  t.equal(await page.textContent('#edge-panel [data-field=version]'), 'v1')
  await page.click('#edge-panel [data-action=rotate]')
  const preview = await page.waitForSelector('dialog.confirm .preview ul')
  t.match(await preview.textContent(), /pair\.rotate.*pair:api:web/, 'the preview says what would change')
  t.equal((await api('GET', '/v1/pairs')).body.find((p: { pairId: string }) => p.pairId === 'api:web').primaryVersion, 1, 'the preview changed nothing')
  await page.click('dialog.confirm [data-confirm]')
  await page.waitForFunction(() => document.querySelector('#edge-panel [data-field=version]')?.textContent === 'v2')
  const [rotated] = await entries({ action: 'pair.rotate' })
  t.match(rotated, { outcome: 'ok', actor: `operator:${(await api('GET', '/ui/api/session')).body.tokenId}` })
  await page.waitForSelector(`#edge-panel .pair-audit li[data-seq="${rotated?.seq}"]`)
  t.match(await page.textContent(`#edge-panel .pair-audit li[data-seq="${rotated?.seq}"]`), /pair\.rotate.*rotated api:web to v2/, 'its audit entry is on the page')
  t.equal(await page.textContent('g.edge[data-edge="web->api"] text'), 'v2 · 0⇄', 'and the arrow says v2')
})

t.test('a change made elsewhere appears on the open page without a reload', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await page.goto(`${ui}#/audit`)
  await ready('audit')
  await api('POST', '/v1/keys', { name: 'invoices', type: 'aead' })
  const row = await page.waitForSelector('table.audit tbody tr:first-child >> text=key:invoices')
  t.ok(row, 'the audit page shows the CLI\'s change at the top')
  await shot('audit')
  await page.goto(`${ui}#/keys`)
  await ready('keys')
  t.same(await page.$$eval('table.keys tbody tr td:first-child', (cells) => cells.map((c) => c.textContent)), ['invoices', 'orders'])
  await shot('keys')
  await page.click('a[href="#/keys/orders"]')
  await ready('keys')
  await page.waitForSelector('table.versions')
  t.equal(await page.locator('table.versions tbody tr').count(), 2, 'both versions of orders')
  await shot('key-detail')
  await page.goto(`${ui}#/agents`)
  await ready('agents')
  await shot('agents')
})

t.test('an auditor finds every change control disabled, and a forged change is refused and audited', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await signIn(auditor.token)
  await page.goto(`${ui}#/graph`)
  await ready('graph')
  await page.click('g.edge[data-edge="api->db"]')
  await page.waitForSelector('#edge-panel [data-action=rotate]')
  t.same(await page.$$eval('#edge-panel button.action', (bs) => bs.map((b) => b.hasAttribute('disabled'))), [true, true], 'rotate and remove are disabled')
  await page.goto(`${ui}#/keys/orders`)
  await page.waitForSelector('table.versions')
  const controls = await page.$$eval('button.action', (bs) => bs.map((b) => b.hasAttribute('disabled')))
  t.ok(controls.length >= 3 && controls.every(Boolean), 'every key control is disabled')

  // A forged POST from the auditor's page: without the CSRF token, then with it.
  const forged = await page.evaluate(async () => {
    const plain = await fetch('/v1/pairs/api/db/rotate', { method: 'POST' })
    const session = await (await fetch('/ui/api/session')).json() as { csrf: string }
    const withCsrf = await fetch('/v1/pairs/api/db/rotate', { method: 'POST', headers: { 'x-keymesh-csrf': session.csrf } })
    const code = async (r: Response): Promise<string> => ((await r.json()) as { error: { code: string } }).error.code
    return [plain.status, await code(plain), withCsrf.status, await code(withCsrf)]
  })
  t.same(forged, [403, 'CP_ERR_CONSOLE_CSRF', 403, 'CP_ERR_FORBIDDEN'], 'refused: no CSRF token, then the role')
  const refused = await entries({ actor: `operator:${auditor.id}`, outcome: 'deny' })
  t.same(refused.map((e) => [e.action, e.details.code]), [['pair.rotate', 'CP_ERR_FORBIDDEN'], ['pair.rotate', 'CP_ERR_CONSOLE_CSRF']], 'both are in the audit log, with the auditor as the actor')
  t.equal((await api('GET', '/v1/pairs')).body.find((p: { pairId: string }) => p.pairId === 'api:db').primaryVersion, 1, 'and nothing rotated')
})

t.test('a session whose token is revoked is refused at once', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await signIn(operator.token)
  t.equal((await api('POST', `/v1/tokens/${operator.id}/revoke`)).status, 200)
  await page.waitForSelector('form.sign-in', { timeout: 5_000 })
  t.match(await page.textContent('form.sign-in'), /session ended/, 'the open page goes back to sign-in by itself')
  const stale = await page.evaluate(async () => {
    const res = await fetch('/v1/keys')
    return [res.status, ((await res.json()) as { error: { code: string } }).error.code]
  })
  t.same(stale, [401, 'CP_ERR_CONSOLE_SESSION'], 'and its cookie opens nothing')
})

t.test('the Content-Security-Policy blocks an injected inline script', { skip: skip ?? false }, async (t) => {
  if (!page || !browser) return
  await signIn(h.adminToken)
  browser.console.length = 0
  const ran = await page.evaluate(() => {
    const script = document.createElement('script')
    script.textContent = 'window.injected = true'
    document.body.append(script)
    return window['injected'] === true
  })
  t.equal(ran, false, 'the script did not run')
  t.match(browser.console.join('\n'), /^error: .*inline script violates the following Content Security Policy directive '?script-src 'self''?/m, 'Chromium says why, on the console')
})

t.test('a one-time sign-in link signs in once, and is gone from the address bar', { skip: skip ?? false }, async (t) => {
  if (!page || !browser) return
  await browser.context.clearCookies()
  const link = (await api('POST', '/ui/api/links', {})).body as { path: string }
  await page.goto(`${cp.url}${link.path}`)
  await ready('overview')
  t.notOk(page.url().includes('link='), 'the code left the address bar')
  t.notOk(await page.evaluate(() => history.length > 1 && location.href.includes('link=')))
  await browser.context.clearCookies()
  await page.goto(`${cp.url}${link.path}`)
  await page.waitForSelector('form.sign-in')
  t.match(await page.textContent('form.sign-in'), /CP_ERR_CONSOLE_LINK/, 'a second use is refused')
})

t.test('the overview reads the scheduled audit verification', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await signIn(h.adminToken)
  const text = await page.textContent('p.chain-watch')
  t.match(text, /^(intact last verified .* up to #\d+|verification pending the first scheduled pass has not ended yet)/, 'how far the chain was verified, or that the first pass is still running')
})

t.test('a control plane that answers 503 shows a not-ready banner until it answers again', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await signIn(h.adminToken)
  t.equal(await page.isVisible('#not-ready'), false, 'no banner while ready')
  const notReady = JSON.stringify({ error: { code: 'CP_ERR_STORE_WRITE', message: 'the store refuses writes' } })
  await page.route('**/ui/api/keys*', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: notReady }))
  await page.goto(`${ui}#/keys`)
  await page.waitForSelector('#not-ready:not([hidden])')
  t.match(await page.textContent('#not-ready'), /not ready: the store refuses writes \(CP_ERR_STORE_WRITE\)/, 'the banner says why')
  t.equal(await page.$('form.sign-in'), null, 'and the session is kept')
  await page.unroute('**/ui/api/keys*')
  await page.goto(`${ui}#/overview`)
  await ready('overview')
  await page.waitForSelector('#not-ready[hidden]', { state: 'attached' })
  t.pass('the banner goes with the next answer that is not a 503')
})

t.test('a version is destroyed anyway from the page with a reason, which is audited', { skip: skip ?? false }, async (t) => {
  if (!page) return
  await signIn(h.adminToken)
  await page.goto(`${ui}#/keys/orders`)
  await page.waitForSelector('table.versions [data-action="scheduled-destruction-1"]')
  await page.click('table.versions [data-action="scheduled-destruction-1"]')
  await page.waitForSelector('dialog.confirm .preview ul')
  // The preview is asked again when a field changes: the reason first, then the box.
  await page.fill('dialog.confirm [data-field=reason]', 'retired by the browser test')
  await page.check('dialog.confirm [data-field=force]')
  await page.waitForFunction(() => /key\.state/.test(document.querySelector('dialog.confirm .preview')?.textContent ?? ''))
  await page.click('dialog.confirm [data-confirm]')
  await page.waitForSelector('table.versions [data-action="cancel-1"]')
  const [entry] = await entries({ action: 'key.state', target: 'key:orders' })
  t.match(entry, { outcome: 'ok', reason: /scheduled-destruction \(forced: retired by the browser test\)/ }, 'the reason is in the audit entry')
})
