// npm run bench:ui [-- --quick] — the operator console's pages on a large installation.
//
// A control plane in this process is filled by test/kit/console-data.ts with 200
// services (400 rules, their pair keys), 100 keys, 1,000 agents and 100,000 audit
// entries (--quick: a quarter of each); headless Chromium (test/kit/browser.ts)
// signs in and draws each page again and again. A page's time runs from the click
// (the address's fragment changes) to the first animation frame in which the page
// is drawn (its section carries data-ready): the data's request, the control
// plane's answer, building the DOM, and the layout of that frame. Target: every
// page under 300 ms at the 95th percentile.
//
// Printed beside each: the same page on a control plane with three services (the
// baseline: what the browser and the HTTP round trip cost on this machine now), and
// the control plane's own time to answer the page's data (GET, from Node).
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { launchBrowser, type TestBrowser } from '../test/kit/browser.js'
import { BENCH_SIZES, fillConsoleData } from '../test/kit/console-data.js'
import { startTestControlPlane, type TestControlPlane } from '../test/kit/cp.js'
import { percentile, ratio, sortNum, table, verdict } from './measure.js'
import { installHardStop } from './tunnel-procs.js'

const quick = process.argv.includes('--quick')
const SIZES = quick ? { services: 50, keys: 25, agents: 250, auditEntries: 25_000 } : BENCH_SIZES
const ROUNDS = quick ? 5 : 15
const TARGET_MS = 300
const PAGES: readonly { name: string; hash: string; data: string }[] = [
  { name: 'overview', hash: '#/overview', data: '/ui/api/overview' },
  { name: 'graph', hash: '#/graph', data: '/ui/api/graph' },
  { name: 'keys', hash: '#/keys', data: '/ui/api/keys?limit=50' },
  { name: 'agents', hash: '#/agents', data: '/ui/api/agents?limit=50' },
  { name: 'audit', hash: '#/audit', data: '/ui/api/audit?limit=100' },
]

const tmp = mkdtempSync(join(tmpdir(), 'keymesh-bench-ui-'))
const teardowns: (() => unknown)[] = []
const tap = { testdir: () => mkdtempSync(join(tmp, 'd-')), teardown: (fn: () => unknown) => void teardowns.push(fn), fail: (m: string) => { throw new Error(m) } }
const cleanup = async (): Promise<void> => {
  for (const fn of teardowns.reverse()) await fn()
}
installHardStop('bench:ui', tmp, quick ? 300_000 : 900_000, cleanup)

/** Milliseconds from a fragment change to the first frame with the page drawn, `rounds` times, alternating with overview. */
async function renderTimes(b: TestBrowser, hash: string, name: string, rounds: number): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < rounds; i++) {
    // Another page in between, so that each round draws the page from scratch.
    const other = name === 'overview' ? '#/audit' : '#/overview'
    await b.page.evaluate((h) => { location.hash = h }, other)
    await b.page.waitForSelector(`section[data-page="${other.slice(2)}"][data-ready]`)
    const ms = await b.page.evaluate(({ h, page }) => new Promise<number>((resolve) => {
      const t0 = performance.now()
      location.hash = h
      const frame = (): void => {
        if (document.querySelector(`section[data-page="${page}"][data-ready]`)) resolve(performance.now() - t0)
        else requestAnimationFrame(frame)
      }
      requestAnimationFrame(frame)
    }), { h: hash, page: name })
    times.push(ms)
  }
  return times
}

/** The control plane's answer time for a page's data, from Node. */
async function answerTimes(h: TestControlPlane, path: string, rounds: number): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now()
    const res = await h.api('GET', path)
    if (res.status !== 200) throw new Error(`${path}: ${res.status}`)
    times.push(performance.now() - t0)
  }
  return times
}

async function signedInBrowser(h: TestControlPlane): Promise<TestBrowser> {
  const b = await launchBrowser(tap)
  await b.page.goto(`${h.cp.url}/ui/`)
  await b.page.fill('input[name=token]', h.adminToken)
  await b.page.click('form.sign-in button[type=submit]')
  await b.page.waitForSelector('section[data-page="overview"][data-ready]')
  return b
}

// Declared for page.evaluate: the bench project has no DOM types.
declare const location: { hash: string }, document: { querySelector(s: string): unknown }, requestAnimationFrame: (f: () => void) => void

async function main(): Promise<void> {
  console.log(`bench:ui${quick ? ' --quick' : ''}: ${SIZES.services} services, ${SIZES.keys} keys, ${SIZES.agents} agents, ${SIZES.auditEntries} audit entries; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
  const small = await startTestControlPlane(tap)
  for (const [src, dst] of [['web', 'api'], ['api', 'db']]) await small.api('POST', '/v1/intentions', { src, dst })
  const big = await startTestControlPlane(tap)
  const t0 = performance.now()
  const { rules } = await fillConsoleData(big, SIZES)
  console.log(`filled in ${((performance.now() - t0) / 1000).toFixed(1)} s (${rules.length} rules through the admin API, agents and audit entries into the store)\n`)

  const smallBrowser = await signedInBrowser(small)
  const bigBrowser = await signedInBrowser(big)
  const rows: (string | number)[][] = []
  let ok = true
  for (const p of PAGES) {
    const base = sortNum(await renderTimes(smallBrowser, p.hash, p.name, ROUNDS))
    const times = sortNum(await renderTimes(bigBrowser, p.hash, p.name, ROUNDS))
    const answer = sortNum(await answerTimes(big, p.data, ROUNDS))
    const p95 = percentile(times, 95)
    ok &&= p95 < TARGET_MS
    rows.push([p.name, percentile(times, 50), p95, percentile(base, 50), ratio(percentile(times, 50), percentile(base, 50)), percentile(answer, 50), verdict(p95 < TARGET_MS)])
  }
  console.log(table(['page', 'p50 ms', 'p95 ms', 'baseline p50 ms', 'ratio', 'data p50 ms', `p95 < ${TARGET_MS} ms`], rows))
  console.log(`\n(${ROUNDS} rounds per page; baseline: the same page with 3 services; data: the page's GET answered to Node, beside the browser)`)
  console.log(ok ? '\nevery page within target' : '\nSOME PAGE MISSED the target')
}

main()
  .then(cleanup, async (e: unknown) => {
    console.error(e)
    await cleanup()
    process.exitCode = 1
  })
  .finally(() => rmSync(tmp, { recursive: true, force: true }))
