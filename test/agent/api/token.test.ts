// The local API's token file: created once (0600, 32 random bytes as base64url),
// reused while it is private and well-formed, replaced when it is neither; the
// bearer comparison.
import t from 'tap'
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { API_TOKEN_FILE, bearerMatches, loadOrCreateApiToken } from '../../../agent/src/api/token.js'

t.test('the token is written once, 0600, and kept across starts', async (t) => {
  const dir = t.testdir()
  const token = loadOrCreateApiToken(dir, (n) => new Uint8Array(n).fill(7))
  t.equal(token, Buffer.alloc(32, 7).toString('base64url'))
  const path = join(dir, API_TOKEN_FILE)
  t.equal(statSync(path).mode & 0o777, 0o600)
  t.equal(readFileSync(path, 'utf8'), `${token}\n`)
  t.equal(loadOrCreateApiToken(dir), token, 'a restart keeps it, so clients keep working')
})

t.test('a token file others could read, or one that holds no token, is replaced', async (t) => {
  const dir = t.testdir()
  const path = join(dir, API_TOKEN_FILE)
  const first = loadOrCreateApiToken(dir)
  chmodSync(path, 0o644)
  const second = loadOrCreateApiToken(dir)
  t.not(second, first, 'it may have been read')
  t.equal(statSync(path).mode & 0o777, 0o600)
  writeFileSync(path, 'not a token\n', { mode: 0o600 })
  t.match(loadOrCreateApiToken(dir), /^[A-Za-z0-9_-]{43}$/)
})

t.test('bearerMatches takes only Bearer and the exact token', async (t) => {
  const token = 'a'.repeat(43)
  t.ok(bearerMatches(`Bearer ${token}`, token))
  t.ok(bearerMatches(`bearer\t${token} `, token))
  t.notOk(bearerMatches(undefined, token))
  t.notOk(bearerMatches('', token))
  t.notOk(bearerMatches(`Bearer ${token.slice(1)}`, token))
  t.notOk(bearerMatches(`Bearer ${token}b`, token))
  t.notOk(bearerMatches(`Bearer ${'b'.repeat(43)}`, token))
  t.notOk(bearerMatches(`Basic ${token}`, token))
  t.notOk(bearerMatches(`Bearer ${token} extra`, token))
})
