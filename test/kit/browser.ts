// A real browser for the console's tests and bench: the system's Chromium (Debian's
// `chromium` package; KEYMESH_CHROMIUM names another binary) driven by
// playwright-core, headless, in a fresh profile under the test's directory, with
// nothing that reaches the network on its own. One browser per test file: its start
// is most of what a browser test costs.
//
// Without a browser the test is skipped with a message saying so; under CI (`CI`
// set) it fails instead, as the PostgreSQL and SoftHSM tests do.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium']

/** Flags for a quiet, headless, throwaway Chromium (the profile directory is passed by launchPersistentContext). */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-default-apps',
  '--disable-extensions',
  '--metrics-recording-only',
  '--mute-audio',
]

interface Tap {
  testdir(): string
  teardown(fn: () => unknown): void
  fail(message: string): void
}

/** The Chromium binary to use, or undefined when there is none. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = env['KEYMESH_CHROMIUM']
  if (given !== undefined && given !== '') return existsSync(given) ? given : undefined
  return CHROMIUM_CANDIDATES.find((p) => existsSync(p))
}

export interface TestBrowser {
  readonly context: BrowserContext
  /** A page whose console messages and page errors are collected. */
  readonly page: Page
  readonly console: string[]
}

/**
 * Why the browser tests cannot run here, as the skip message of their subtests; null
 * when they can. Under CI a missing browser fails `t` instead.
 */
export function noBrowser(t: Pick<Tap, 'fail'>): string | null {
  if (findChromium() !== undefined) return null
  const why = 'no Chromium found (install Debian\'s chromium package, or set KEYMESH_CHROMIUM)'
  if (process.env['CI']) t.fail(`${why}; under CI the browser tests must run`)
  return `${why}: the browser tests are skipped`
}

/**
 * Launches Chromium with a fresh profile (in the OS temp directory), closed and removed
 * at `t`'s teardown; without `t` (a bench) the caller closes it. No browser: throws (ask noBrowser first).
 */
export async function launchBrowser(t: Tap | undefined, viewport = { width: 1280, height: 900 }): Promise<TestBrowser> {
  const executablePath = findChromium()
  if (executablePath === undefined) throw new Error('no Chromium found (install Debian\'s chromium package, or set KEYMESH_CHROMIUM)')
  // Not under t.testdir(): each call of it empties the directory, so a later call (the
  // test's screenshots, a control plane's data) would delete the profile under a running Chromium.
  const profile = mkdtempSync(join(tmpdir(), 'keymesh-chromium-'))
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: CHROMIUM_ARGS, viewport })
  t?.teardown(async () => {
    await context.close()
    rmSync(profile, { recursive: true, force: true, maxRetries: 5 })
  })
  const page = context.pages()[0] ?? (await context.newPage())
  const messages: string[] = []
  page.on('console', (m) => messages.push(`${m.type()}: ${m.text()}`))
  page.on('pageerror', (e) => messages.push(`pageerror: ${e.message}`))
  return { context, page, console: messages }
}
