#!/usr/bin/env node
// The installed entry point. The CLI is TypeScript compiled to dist/ by `npm ci`
// (the `prepare` script); this file only forwards to it.
import { main } from '../dist/cli/main.js'

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (err) => {
    process.stderr.write(`keymesh: ${err && err.message ? err.message : String(err)}\n`)
    process.exitCode = 1
  },
)
