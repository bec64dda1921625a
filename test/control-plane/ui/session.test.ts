// Console sessions over HTTP: sign-in, the cookie, CSRF on changes, sign-out,
// one-time links, expiry and revocation, the files and their headers.
import t from 'tap'
import { request as httpsRequest } from 'node:https'
import { readFileSync } from 'node:fs'

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { MINUTE } from '../../../platform/src/index.js'
import { runCli } from '../../kit/cli.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { consoleClient } from './client.js'

const h = await startTestControlPlane(t)
const { call, signIn } = consoleClient(h.cp.url)
const admin = h.adminToken
const lastEntry = async (action: string) => (await h.api('GET', `/v1/audit?action=${action}&limit=1000`)).body.entries.at(-1)

t.test('the page and its files are served with a strict CSP, and nothing else is', async (t) => {
  const bare = await call('GET', '/ui')
  t.equal(bare.status, 308)
  t.equal(bare.headers.get('location'), '/ui/')
  const page = await call('GET', '/ui/')
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.match(page.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'; style-src 'self'/)
  t.equal(page.headers.get('x-frame-options'), 'DENY')
  t.match(page.headers.get('content-security-policy'), /frame-ancestors 'none'/)
  const scripts = [...String(page.body).matchAll(/<script\b[^>]*>/g)].map((m) => m[0])
  t.ok(scripts.length > 0 && scripts.every((s) => /\ssrc="\/ui\/assets\//.test(s)), 'every script is a file of this origin, none inline')
  t.notMatch(page.body, /https?:\/\//, 'nothing from another origin')
  const main = await call('GET', '/ui/assets/main.js')
  t.equal(main.status, 200)
  t.match(main.headers.get('content-type'), /^text\/javascript/)
  t.match(main.body, /EventSource/)
  t.equal((await call('GET', '/ui/assets/console.css')).status, 200)
  t.equal((await call('GET', '/ui/assets/icon.svg')).headers.get('content-type'), 'image/svg+xml')
  for (const name of ['nope.js', 'main.d.ts', '..%2F..%2Fpackage.json', 'main.js.map']) t.equal((await call('GET', `/ui/assets/${name}`)).status, 404, `${name} is not served`)
})

t.test('signing in with a token sets an HttpOnly, SameSite=Strict session cookie and says what the role may do', async (t) => {
  const s = await signIn({ token: admin })
  const [session, hint] = s.setCookies
  t.match(session, /^keymesh-console=[A-Za-z0-9_-]{43}; Max-Age=1800; Path=\/; HttpOnly; SameSite=Strict$/, 'HttpOnly, Strict, 30 minutes; not Secure over plain HTTP')
  t.match(hint, /^keymesh-console-hint=1; Max-Age=1800; Path=\/; SameSite=Strict$/, 'the hint holds nothing but 1')
  t.notOk(s.setCookies.join().includes(admin.slice(4)), 'the token is not in a cookie')
  t.match(s.body, { name: 'bootstrap-admin', role: 'admin', via: 'session', csrf: /^[A-Za-z0-9_-]{43}$/ })
  t.ok(s.body.allowed.includes('token.create'))
  const entry = await lastEntry('console.sign-in')
  t.match(entry, { outcome: 'ok', details: { via: 'token', sessionId: /^ses_/ } })
  t.notOk(JSON.stringify(entry).includes(s.cookie.split('=')[1]?.split(';')[0] ?? 'x'), 'the cookie is not audited')

  const auditor = (await h.api('POST', '/v1/tokens', { name: 'ann', role: 'auditor' })).body
  const a = await signIn({ token: auditor.token })
  t.same(a.body.allowed.filter((op: string) => !/\.(list|get|public|read|verify|export)$|^console\./.test(op)), [], 'an auditor may only read')
})

t.test('a refused sign-in is a 401 of the HTTP layer and creates nothing', async (t) => {
  for (const [body, status, code] of [
    [{ token: `kmo_${'A'.repeat(43)}` }, 401, 'CP_ERR_UNAUTHENTICATED'],
    [{ token: 'not-a-token' }, 401, 'CP_ERR_TOKEN_FORM'],
    [{}, 400, 'CP_ERR_INVALID_FIELD'],
    [{ token: admin, linkToken: 'x' }, 400, 'CP_ERR_INVALID_FIELD'],
    [{ token: admin, extra: 1 }, 400, 'CP_ERR_UNKNOWN_FIELD'],
  ] as const) {
    const res = await call('POST', '/ui/api/session', { body })
    t.equal(res.status, status)
    t.equal(res.body.error.code, code)
    t.same(res.cookies, [], 'no cookie')
  }
})

t.test('a session reads as its token does, and changes only with its CSRF token from its own origin', async (t) => {
  const s = await signIn({ token: admin })
  t.equal((await call('GET', '/v1/keys', { session: s })).status, 200, 'a read needs no CSRF token')
  const view = await call('GET', '/ui/api/session', { session: s })
  t.match(view.body, { via: 'session', csrf: s.csrf, role: 'admin' })
  const body = { name: 'k1', type: 'aead' }
  const refused = [
    await call('POST', '/v1/keys', { session: s, body, csrf: false }),
    await call('POST', '/v1/keys', { session: s, body, csrf: 'A'.repeat(43) }),
    await call('POST', '/v1/keys', { session: s, body, csrf: 'short' }),
    await call('POST', '/v1/keys', { session: s, body, headers: { origin: 'https://evil.example' } }),
    await call('POST', '/v1/keys', { session: s, body, headers: { origin: 'not a url' } }),
    await call('POST', '/v1/keys', { session: s, body, headers: { 'sec-fetch-site': 'cross-site' } }),
  ]
  t.same(refused.map((r) => [r.status, r.body.error.code]), Array(6).fill([403, 'CP_ERR_CONSOLE_CSRF']), 'no token, a wrong one, another origin: 403')
  const audited = (await h.api('GET', '/v1/audit?action=key.create&outcome=deny')).body.entries
  t.equal(audited.length, 6, 'each refusal is audited')
  t.match(audited[0], { actor: `operator:${s.body.tokenId}`, target: 'http:POST /v1/keys', details: { code: 'CP_ERR_CONSOLE_CSRF' } }, 'with the operator as the actor')
  const made = await call('POST', '/v1/keys', { session: s, body, headers: { origin: h.cp.url, 'sec-fetch-site': 'same-origin' } })
  t.equal(made.status, 201, 'with its token, from its origin: made')
  t.match(await lastEntry('key.create'), { outcome: 'ok', actor: `operator:${s.body.tokenId}` })
  const preview = await call('POST', '/v1/keys/k1/rotate?dryRun=true', { session: s })
  t.match(preview.body, { dryRun: true, changes: [{ action: 'key.rotate' }] }, 'dry runs work from the console')
  const both = await call('GET', '/ui/api/session', { session: { ...s, cookie: 'keymesh-console=garbage' }, bearer: admin })
  t.equal(both.body.via, 'token', 'a bearer token wins over a cookie')
})

t.test('signing out ends the session on the spot and clears both cookies', async (t) => {
  const s = await signIn({ token: admin })
  const out = await call('DELETE', '/ui/api/session', { session: s })
  t.equal(out.status, 200)
  t.same(out.body, { signedOut: true })
  t.match(out.cookies, [/^keymesh-console=; Max-Age=0; Path=\/; HttpOnly; SameSite=Strict$/, /^keymesh-console-hint=; Max-Age=0/])
  t.match(await lastEntry('console.sign-out'), { outcome: 'ok' })
  const after = await call('GET', '/v1/keys', { session: s })
  t.same([after.status, after.body.error.code], [401, 'CP_ERR_CONSOLE_SESSION'])
  t.same((await call('DELETE', '/ui/api/session', { bearer: admin })).body, { signedOut: false }, 'a bearer token has no session to end')
  const malformed = await call('GET', '/v1/keys', { session: { ...s, cookie: 'keymesh-console=short' } })
  t.same([malformed.status, malformed.body.error.code], [401, 'CP_ERR_CONSOLE_SESSION'])
})

t.test('a one-time link signs in once, for its own token, and is made with a bearer token only', async (t) => {
  const made = await call('POST', '/ui/api/links', { bearer: admin, body: {} })
  t.equal(made.status, 201)
  t.match(made.body, { code: /^[A-Za-z0-9_-]{43}$/, path: /^\/ui\/#link=[A-Za-z0-9_-]{43}$/ })
  t.equal(made.body.expiresAt, h.clock.now() + 15 * MINUTE)
  t.notOk(JSON.stringify(await lastEntry('console.link')).includes(made.body.code), 'the code is not audited')
  const s = await signIn({ linkToken: made.body.code })
  t.match(s.body, { role: 'admin', via: 'session' })
  t.match(await lastEntry('console.sign-in'), { details: { via: 'link' } })
  for (const link of [made.body.code, 'A'.repeat(43), 'short!']) {
    const again = await call('POST', '/ui/api/session', { body: { linkToken: link } })
    t.same([again.status, again.body.error.code], [401, 'CP_ERR_CONSOLE_LINK'])
  }
  const logs = h.logs.join('')
  t.ok(logs.includes('/ui/api/session') && !logs.includes(made.body.code), 'the link\'s code is not logged, even at debug')
  t.notOk(logs.includes(s.cookie.split(';')[0]?.split('=')[1] ?? 'x') || logs.includes(admin), 'nor a session cookie or the token')
  const fromSession = await call('POST', '/ui/api/links', { session: s, body: {} })
  t.same([fromSession.status, fromSession.body.error.code], [403, 'CP_ERR_CONSOLE_BEARER'], 'a session cannot make itself a new one')
  const long = await call('POST', '/ui/api/links', { bearer: admin, body: { ttlMs: 2 * 3_600_000 } })
  t.equal(long.status, 400, 'at most an hour')

  const ops = (await h.api('POST', '/v1/tokens', { name: 'op', role: 'operator' })).body
  const opLink = await call('POST', '/ui/api/links', { bearer: ops.token, body: { ttlMs: MINUTE } })
  await h.api('POST', `/v1/tokens/${ops.id}/revoke`)
  t.equal((await call('POST', '/ui/api/session', { body: { linkToken: opLink.body.code } })).status, 401, 'a revoked token\'s link opens nothing')
  const expiring = await call('POST', '/ui/api/links', { bearer: admin, body: { ttlMs: MINUTE } })
  h.clock.advance(MINUTE)
  t.equal((await call('POST', '/ui/api/session', { body: { linkToken: expiring.body.code } })).status, 401, 'an expired link opens nothing')
})

t.test('keymesh console link prints the address and a link that signs in once', async (t) => {
  const tokenFile = join(h.dataDir, 'cli.token')
  writeFileSync(tokenFile, admin, { mode: 0o600 })
  const cli = (...argv: string[]) => runCli([...argv, '--cp', h.cp.url, '--token-file', tokenFile])
  const text = await cli('console', 'link')
  t.equal(text.code, 0, text.err)
  t.match(text.out, new RegExp(`^console: ${h.cp.url}/ui/\nsign in once, until .+: ${h.cp.url}/ui/#link=[A-Za-z0-9_-]{43}\n$`))
  const json = await cli('console', 'link', '--ttl', '5m', '--json')
  const out = JSON.parse(json.out)
  t.match(out, { console: `${h.cp.url}/ui/`, expiresAt: new Date(h.clock.now() + 5 * MINUTE).toISOString() }, 'times in UTC, as every --json')
  t.match((await signIn({ linkToken: out.link.split('#link=')[1] })).body, { role: 'admin' })
  t.match((await cli('console', 'link', '--ttl', 'soon')).err, /CP_ERR_USAGE|--ttl/)
})

t.test('a session ends with its token, and never outlives it', async (t) => {
  const ops = (await h.api('POST', '/v1/tokens', { name: 'short', role: 'operator', ttlMs: 5 * MINUTE })).body
  const s = await signIn({ token: ops.token })
  t.equal(s.body.expiresAt, h.clock.now() + 5 * MINUTE, 'capped at the token\'s expiry')
  t.match(s.setCookies[0], /Max-Age=300;/)
  h.clock.advance(5 * MINUTE)
  t.equal((await call('GET', '/v1/keys', { session: s })).body.error.code, 'CP_ERR_CONSOLE_SESSION', 'the token expired: so did the session')

  const ops2 = (await h.api('POST', '/v1/tokens', { name: 'revoked', role: 'operator' })).body
  const s2 = await signIn({ token: ops2.token })
  await h.api('POST', `/v1/tokens/${ops2.id}/revoke`)
  t.equal((await call('GET', '/v1/keys', { session: s2 })).body.error.code, 'CP_ERR_CONSOLE_SESSION', 'revoked: refused at the next request')

  const s3 = await signIn({ token: admin })
  h.clock.advance(30 * MINUTE)
  t.equal((await call('GET', '/v1/keys', { session: s3 })).body.error.code, 'CP_ERR_CONSOLE_SESSION', 'after 30 minutes')
})

t.test('failed sign-ins spend the source\'s budget of failed authentications', async (t) => {
  let status = 0
  for (let i = 0; i < 60 && status !== 429; i++) status = (await call('POST', '/ui/api/session', { body: { token: `kmo_${'B'.repeat(43)}` } })).status
  t.equal(status, 429, 'then 429, before any token is looked at')
  t.equal((await call('POST', '/ui/api/session', { body: { token: admin } })).status, 429, 'a good token waits too')
})

t.test('over TLS the cookie is Secure and __Host- named', async (t) => {
  const tls = await startTestControlPlane(t, { madeTls: true })
  const ca = readFileSync(tls.caFile as string)
  const { status, cookies } = await new Promise<{ status: number; cookies: string[] }>((resolve, reject) => {
    const url = new URL('/ui/api/session', tls.cp.url)
    const req = httpsRequest(url, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, cookies: res.headers['set-cookie'] ?? [] })
    })
    req.on('error', reject)
    req.end(JSON.stringify({ token: tls.adminToken }))
  })
  t.equal(status, 201)
  t.match(cookies[0], /^__Host-keymesh-console=[A-Za-z0-9_-]{43}; Max-Age=1800; Path=\/; HttpOnly; Secure; SameSite=Strict$/)
  t.match(cookies[1], /^__Host-keymesh-console-hint=1; .*Secure/)
})
