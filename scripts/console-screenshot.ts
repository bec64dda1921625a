// Makes docs/console-graph.png, the README's picture of the console's service graph:
// a control plane in this process with a small shop's services and rules, agents
// connected and reporting tunnels, one pair key rotated, drawn by headless Chromium
// (test/kit/browser.ts) with one arrow selected.
//
//   npm run build && node dist/scripts/console-screenshot.js [OUT.png]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import { launchBrowser } from '../test/kit/browser.js'
import { startTestControlPlane } from '../test/kit/cp.js'
import { kmsAgent } from '../test/kit/kms.js'
import { repoRoot } from '../test/kit/paths.js'

const out = resolve(process.argv[2] ?? join(repoRoot(), 'docs', 'console-graph.png'))
const tmp = mkdtempSync(join(tmpdir(), 'keymesh-screenshot-'))
const teardowns: (() => unknown)[] = []
const t = { testdir: () => mkdtempSync(join(tmp, 'd-')), teardown: (fn: () => unknown) => void teardowns.push(fn), fail: (m: string) => { throw new Error(m) } }

try {
  const h = await startTestControlPlane(t)
  const rules = [['web', 'api'], ['mobile', 'api'], ['api', 'orders'], ['api', 'users'], ['orders', 'payments'], ['orders', 'db'], ['users', 'db'], ['payments', 'ledger'], ['reports', 'db']]
  for (const [src, dst] of rules) await h.api('POST', '/v1/intentions', { src, dst })
  await h.api('POST', '/v1/intentions/deny', { src: 'reports', dst: 'payments' })
  await h.api('DELETE', '/v1/intentions/reports/db?graceMs=3600000')
  await h.api('POST', '/v1/pairs/web/api/rotate')
  const now = h.clock.now()
  let seq = 0
  for (const [service, pairs] of [['web', { 'api:web': 3 }], ['api', { 'api:web': 3, 'api:orders': 2, 'api:users': 1 }], ['orders', { 'api:orders': 2, 'db:orders': 4, 'orders:payments': 1 }], ['db', { 'db:orders': 4 }]] as const) {
    const agent = await kmsAgent(h, t, service)
    const events = Object.entries(pairs).flatMap(([pairId, n]) => Array.from({ length: n }, () => ({ kind: 'conn.open' as const, at: now, pairId, keyVersion: pairId === 'api:web' ? 2 : 1 })))
    agent.sendUsage(++seq, events)
    await agent.next('usage.ack')
  }
  const b = await launchBrowser(t, { width: 1200, height: 760 })
  await b.page.goto(`${h.cp.url}/ui/`)
  await b.page.fill('input[name=token]', h.adminToken)
  await b.page.click('form.sign-in button[type=submit]')
  await b.page.waitForSelector('section[data-page="overview"][data-ready]')
  await b.page.evaluate(() => { (globalThis as unknown as { location: { hash: string } }).location.hash = '#/graph' })
  await b.page.waitForSelector('section[data-page="graph"][data-ready]')
  await b.page.click('g.edge[data-edge="web->api"]')
  await b.page.waitForSelector('#edge-panel .pair-audit')
  await b.page.screenshot({ path: out })
  console.log(`wrote ${out}`)
} finally {
  for (const fn of teardowns.reverse()) await fn()
  rmSync(tmp, { recursive: true, force: true })
}
