// Issue 12, item 2: a stranger who floods the admin API with unauthenticated
// requests carrying 8 KB paths used to append one fsync'd audit row per 401 (2,000
// requests grew keymesh.db from 4 KB to 34.5 MB). Now its refusals cost a bounded
// number of audit rows (the first of each source and code per minute, then one
// summary), its source is answered 429 CP_ERR_RATE_LIMITED once its budget of
// failures is spent, and a legitimate operator keeps being served.
import t from 'tap'
import { statSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { join } from 'node:path'

import { ATTACKER_ADDRESS } from '../kit/attacker.js'
import { startTestControlPlane, type TestControlPlane } from '../kit/cp.js'
import { MINUTE, SECOND } from '../kit/fake-clock.js'
import { metric, scrape } from '../kit/metrics.js'

const REQUESTS = 10_000
const SOCKETS = 8
// POST /v1/keys/:name/versions/:version/state with both parameters just under the
// router's 1,024-character limit and a query string on top: 8 KB a request target,
// every one of which reaches a token route.
const PARAM = 'x'.repeat(1000)
const PATH = `/v1/keys/${PARAM}/versions/${PARAM}/state?${'q='.padEnd(6000, 'z')}`

function storeBytes(dir: string): number {
  let n = 0
  for (const f of ['keymesh.db', 'keymesh.db-wal']) {
    try {
      n += statSync(join(dir, f)).size
    } catch {
      // no WAL yet
    }
  }
  return n
}

interface Answer { readonly status: number; readonly code: string | undefined; readonly retryAfter: string | undefined }

function send(method: string, agent: Agent, url: string, path: string, localAddress: string, token?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
    const req = request(url + path, { method, agent, localAddress, headers }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => {
        const body = Buffer.concat(parts).toString()
        let code: string | undefined
        try {
          code = (JSON.parse(body) as { error?: { code?: string } }).error?.code
        } catch {
          code = undefined
        }
        const ra = res.headers['retry-after']
        resolve({ status: res.statusCode ?? 0, code, retryAfter: typeof ra === 'string' ? ra : undefined })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

const get = (agent: Agent, url: string, path: string, localAddress: string, token?: string): Promise<Answer> => send('GET', agent, url, path, localAddress, token)

async function httpRows(h: TestControlPlane): Promise<Array<{ actor: string; action: string; target: string; code: string; count: number }>> {
  await h.cp.strangers.idle()
  const rows = await h.cp.ctx.store.read((r) => r.listAuditEntries({ limit: 100_000 }))
  return rows
    .filter((r) => r.target.startsWith('http:'))
    .map((r) => {
      const d = JSON.parse(r.detailsJson) as { code: string; count?: number }
      return { actor: r.actor, action: r.action, target: r.target, code: d.code, count: d.count ?? 1 }
    })
}

t.test('10,000 unauthenticated requests with 8 KB paths: bounded store growth and audit rows, 429s, the operator still served', async (t) => {
  const h = await startTestControlPlane(t)
  const url = h.cp.url
  const attacker = new Agent({ keepAlive: true, maxSockets: SOCKETS })
  const operator = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { attacker.destroy(); operator.destroy() })
  t.equal((await get(operator, url, '/v1/keys', '127.0.0.1', h.adminToken)).status, 200)
  const before = storeBytes(h.dataDir)

  const counts = new Map<string, number>()
  let retryAfter: string | undefined
  let next = 0
  let duringFlood: Answer | undefined
  const worker = async (): Promise<void> => {
    while (next < REQUESTS) {
      const i = next++
      // A well-formed token no one issued, a malformed one, or none.
      const token = i % 3 === 0 ? `kmo_${'A'.repeat(43)}` : i % 3 === 1 ? 'kmo_short' : undefined
      const a = await send('POST', attacker, url, PATH, ATTACKER_ADDRESS, token)
      const key = `${a.status} ${a.code}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
      if (a.status === 429) retryAfter = a.retryAfter
      if (i === REQUESTS / 2) duringFlood = await get(operator, url, '/v1/keys', '127.0.0.1', h.adminToken)
    }
  }
  await Promise.all(Array.from({ length: SOCKETS }, worker))

  t.equal(duringFlood?.status, 200, 'the operator is served during the flood')
  const limited = counts.get('429 CP_ERR_RATE_LIMITED') ?? 0
  const unauthenticated = (counts.get('401 CP_ERR_UNAUTHENTICATED') ?? 0) + (counts.get('401 CP_ERR_TOKEN_FORM') ?? 0)
  t.same([...counts.keys()].filter((k) => !/^(401 CP_ERR_UNAUTHENTICATED|401 CP_ERR_TOKEN_FORM|429 CP_ERR_RATE_LIMITED)$/.test(k)), [], 'only 401s and 429s')
  // The fake clock stands still: the source's burst of 40 failures, then only 429s.
  t.equal(unauthenticated, 40, 'the burst of failed authentications is answered 401')
  t.equal(limited, REQUESTS - 40, 'the rest are answered 429')
  t.equal(retryAfter, '1')
  const { series } = await scrape(url)
  t.equal(metric(series, 'keymesh_cp_http_rate_limited_total'), REQUESTS - 40, 'every 429 is counted')

  // The operator from the attacker's own address is refused until the budget refills
  // (nothing tells its token from the attacker's before the store is read) …
  const shared = await get(operator, url, '/v1/keys', ATTACKER_ADDRESS, h.adminToken)
  t.same([shared.status, shared.code], [429, 'CP_ERR_RATE_LIMITED'])
  h.clock.advance(SECOND)
  // … and served once a token has flowed in; an authenticated request gives it back.
  for (let i = 0; i < 5; i++) t.equal((await get(operator, url, '/v1/keys', ATTACKER_ADDRESS, h.adminToken)).status, 200, 'served from the attacker\'s address after a second')

  let rows = await httpRows(h)
  t.ok(rows.every((r) => r.actor === `anonymous:${ATTACKER_ADDRESS}`), 'every http refusal entry names the source')
  t.same(rows.map((r) => [r.code, r.count]).sort(), [['CP_ERR_RATE_LIMITED', 1], ['CP_ERR_TOKEN_FORM', 1], ['CP_ERR_UNAUTHENTICATED', 1]], 'one entry per code until the minute ends')
  const first = rows.find((r) => r.code === 'CP_ERR_UNAUTHENTICATED')
  t.equal(first?.target, `http:POST /v1/keys/${PARAM.slice(0, 128 - '/v1/keys/'.length)}…`, 'the target is the path cut to 128 characters')
  t.notOk(rows.some((r) => r.target.includes('?') || r.target.length > 160), 'no target is longer, none holds the query string')

  h.clock.advance(MINUTE)
  rows = await httpRows(h)
  const total = (code: string) => rows.filter((r) => r.code === code).reduce((n, r) => n + r.count, 0)
  t.ok(rows.length <= 6, `at most a first and a summary per code (${rows.length} entries)`)
  t.equal(total('CP_ERR_RATE_LIMITED'), REQUESTS - 40 + 1, 'the summaries count every refusal')
  t.equal(total('CP_ERR_UNAUTHENTICATED') + total('CP_ERR_TOKEN_FORM'), 40)
  t.match(rows.filter((r) => r.action === 'http.refusals'), [{ target: `http:remote:${ATTACKER_ADDRESS}` }])

  const grown = storeBytes(h.dataDir) - before
  t.comment(`store (keymesh.db + -wal) grew by ${grown} bytes over ${REQUESTS} requests`)
  t.ok(grown < 1024 * 1024, `the store grew by less than 1 MB (${grown} bytes)`)
  t.equal((await get(operator, url, '/v1/keys', '127.0.0.1', h.adminToken)).status, 200, 'the operator is served after the flood')
})
