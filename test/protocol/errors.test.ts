// Keeps the error tables honest: every code unique across packages, named with its
// package's prefix, carrying a real HTTP status and an application close code, and
// documented in docs/errors.md exactly as the tables say.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { repoRoot } from '../kit/paths.js'

import { ERROR_TABLES, renderErrorDoc } from '../../scripts/errors-doc.js'
import { KeymeshError, isKeymeshError, protoError } from '../../protocol/src/errors.js'

const root = repoRoot()

t.test('every code is unique and carries its package prefix', async (t) => {
  const seen = new Map<string, string>()
  const closeCodes = new Map<number, string>()
  for (const { pkg, prefix, table } of ERROR_TABLES) {
    for (const [code, spec] of Object.entries(table)) {
      t.ok(code.startsWith(prefix), `${code} starts with ${prefix}`)
      t.notOk(seen.has(code), `${code} is declared once (also in ${seen.get(code) ?? 'no other package'})`)
      seen.set(code, pkg)
      t.ok(spec.status >= 400 && spec.status <= 599, `${code} has an error HTTP status`)
      t.ok(spec.closeCode >= 4000 && spec.closeCode <= 4999, `${code} has an application close code`)
      t.notOk(closeCodes.has(spec.closeCode), `${code}'s close code ${spec.closeCode} is not shared with ${closeCodes.get(spec.closeCode) ?? 'another code'}`)
      closeCodes.set(spec.closeCode, code)
      t.ok(spec.message.length > 0 && !/[.]$/.test(spec.message), `${code} has a message (no trailing period, details follow a colon)`)
    }
  }
})

t.test('docs/errors.md lists every code as the tables declare it', async (t) => {
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8')
  t.equal(doc, renderErrorDoc(), 'docs/errors.md is current (run npm run docs:errors)')
})

t.test('an error carries code, status, close code, detail and cause', async (t) => {
  const cause = new Error('inner')
  const e = protoError('PROTO_ERR_RECORD_COUNTER', 'expected 4, got 9', { cause })
  t.ok(e instanceof KeymeshError)
  t.equal(e.code, 'PROTO_ERR_RECORD_COUNTER')
  t.equal(e.status, 400)
  t.equal(e.closeCode, 4423)
  t.equal(e.detail, 'expected 4, got 9')
  t.equal(e.cause, cause)
  t.match(e.message, /not the next expected value.*: expected 4, got 9$/)
  t.same(e.toJSON(), { code: 'PROTO_ERR_RECORD_COUNTER', message: e.message })
  t.equal(protoError('PROTO_ERR_DECRYPT').detail, undefined)
  t.ok(isKeymeshError(e))
  t.ok(isKeymeshError(e, 'PROTO_ERR_RECORD_COUNTER'))
  t.notOk(isKeymeshError(e, 'PROTO_ERR_DECRYPT'))
  t.notOk(isKeymeshError(new Error('plain')))
})
