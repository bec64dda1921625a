// The console's files: one HTML page (made here), its style sheet
// (control-plane/web/console.css) and its ES modules, compiled by `tsc -b` from
// control-plane/web/*.ts into dist/control-plane/web/. Nothing comes from another
// origin, and the page runs no inline script: the Content-Security-Policy below
// allows scripts, styles and connections to this origin only.
//
// Files are read once, on first use, and served from memory; a name that is not
// one of them is 404 (the route never reads a path the request names).
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { cpError } from '../errors.js'

/**
 * Scripts, styles, images and connections from this origin only; no inline script
 * or style element, no plugin, no framing, no form posting elsewhere, no <base>.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/** Headers of every console page and file. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
})

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>keymesh console</title>
<link rel="icon" href="/ui/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/assets/console.css">
<script type="module" src="/ui/assets/main.js"></script>
</head>
<body>
<noscript>The keymesh console needs JavaScript; the CLI (keymesh --help) does everything it does.</noscript>
<div id="app"></div>
</body>
</html>
`

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1f3b57"/><circle cx="10" cy="11" r="4" fill="#8fd3ff"/><circle cx="22" cy="11" r="4" fill="#8fd3ff"/><circle cx="16" cy="23" r="4" fill="#8fd3ff"/><path d="M10 11L22 11L16 23Z" stroke="#8fd3ff" stroke-width="2" fill="none"/></svg>
`

export interface Asset {
  readonly contentType: string
  readonly body: string
}

const TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.html': 'text/html; charset=utf-8',
}

/** Where the compiled modules are (dist/control-plane/web, beside dist/control-plane/src) and the style sheet's source. */
const WEB_DIST = new URL('../../web/', import.meta.url)
const WEB_SOURCE = new URL('../../../../control-plane/web/', import.meta.url)

export class ConsoleAssets {
  #files: Map<string, Asset> | undefined
  readonly #dist: URL
  readonly #source: URL

  constructor(dist: URL = WEB_DIST, source: URL = WEB_SOURCE) {
    this.#dist = dist
    this.#source = source
  }

  readonly page: Asset = { contentType: TYPES['.html'] as string, body: INDEX_HTML }

  /** A file by its name under /ui/assets/, or CP_ERR_NOT_FOUND. */
  get(name: string): Asset {
    const asset = this.#load().get(name)
    if (asset === undefined) throw cpError('CP_ERR_NOT_FOUND', 'no such console file')
    return asset
  }

  #load(): Map<string, Asset> {
    if (this.#files) return this.#files
    const files = new Map<string, Asset>()
    files.set('icon.svg', { contentType: TYPES['.svg'] as string, body: ICON_SVG })
    files.set('console.css', { contentType: TYPES['.css'] as string, body: readFileSync(fileURLToPath(new URL('console.css', this.#source)), 'utf8') })
    for (const name of readdirSync(fileURLToPath(this.#dist))) {
      // Source maps and declarations stay home: the browser needs the modules only.
      if (!name.endsWith('.js')) continue
      files.set(name, { contentType: TYPES['.js'] as string, body: readFileSync(fileURLToPath(new URL(name, this.#dist)), 'utf8') })
    }
    this.#files = files
    return files
  }
}
