// Renders docs/errors.md from the packages' error tables, so the reference can
// never drift from the code: `npm run docs:errors` writes it, and
// test/protocol/errors.test.ts fails when the committed file is stale.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { PROTO_ERRORS, type ErrorTable } from '../protocol/src/index.js'
import { CP_ERRORS } from '../control-plane/src/index.js'
import { AGENT_ERRORS } from '../agent/src/index.js'

export const ERROR_TABLES: ReadonlyArray<{ pkg: string; prefix: string; table: ErrorTable }> = [
  { pkg: 'protocol', prefix: 'PROTO_ERR_', table: PROTO_ERRORS },
  { pkg: 'control-plane', prefix: 'CP_ERR_', table: CP_ERRORS },
  { pkg: 'agent', prefix: 'AGENT_ERR_', table: AGENT_ERRORS },
]

export function renderErrorDoc(): string {
  const lines = [
    '# Error codes',
    '',
    'Every error that crosses a package boundary carries one of these stable codes, with',
    'the HTTP status it answers an API request with and the WebSocket close code it ends',
    'a session with. Messages never contain key material or caller data. Generated from',
    'the tables in each package by `npm run docs:errors`; do not edit by hand.',
  ]
  for (const { pkg, table } of ERROR_TABLES) {
    lines.push('', `## ${pkg}`, '', '| code | HTTP | close | meaning |', '|---|---|---|---|')
    for (const [code, spec] of Object.entries(table)) {
      lines.push(`| \`${code}\` | ${spec.status} | ${spec.closeCode} | ${spec.message.replace(/\|/g, '\\|')} |`)
    }
  }
  return lines.join('\n') + '\n'
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = fileURLToPath(new URL('../../docs/errors.md', import.meta.url))
  writeFileSync(out, renderErrorDoc())
  process.stdout.write(`wrote ${out}\n`)
}
