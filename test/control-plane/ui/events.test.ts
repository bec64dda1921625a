// The live feed (ui/feed.ts) and its server-sent events (ui/events.ts, GET /ui/api/events).
import t from 'tap'

import { SECOND } from '../../../platform/src/index.js'
import { ConsoleFeed, type FeedBatch } from '../../../control-plane/src/ui/feed.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { until } from '../../kit/wait.js'
import { consoleClient } from './client.js'

const h = await startTestControlPlane(t)
const { api, cp, clock } = h

/** An event stream as a browser's EventSource reads it: frames, one at a time. */
async function openEvents(headers: Record<string, string>) {
  const ac = new AbortController()
  const res = await fetch(`${cp.url}/ui/api/events`, { headers, signal: ac.signal })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let buffer = ''
  const decoder = new TextDecoder()
  return {
    res,
    /** The next frame (`event: …\ndata: …` or `: ping`), or null when the stream ended. */
    async next(): Promise<string | null> {
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end !== -1) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          return frame
        }
        const { value, done } = await reader.read()
        if (done) return null
        buffer += decoder.decode(value, { stream: true })
      }
    },
    close: () => ac.abort(),
  }
}
const data = (frame: string | null): FeedBatch => JSON.parse(/^data: (.*)$/m.exec(frame ?? '')?.[1] ?? 'null') as FeedBatch

t.test('a change reaches an open stream as an audit event; pings keep it open', async (t) => {
  const s = await openEvents({ authorization: `Bearer ${h.adminToken}` })
  t.equal(s.res.status, 200)
  t.match(s.res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(await s.next(), 'retry: 2000')
  await api('POST', '/v1/keys', { name: 'live', type: 'aead' })
  const frame = await s.next()
  t.match(frame, /^id: \d+\nevent: audit\ndata: /)
  t.match(data(frame), { skipped: 0, entries: [{ action: 'key.create', target: 'key:live', outcome: 'ok' }] })
  clock.advance(15 * SECOND)
  t.equal(await s.next(), ': ping')
  s.close()
})

t.test('a stream of a session whose token is revoked says so and ends', async (t) => {
  const op = (await api('POST', '/v1/tokens', { name: 'otto', role: 'operator' })).body
  const session = await consoleClient(cp.url).signIn({ token: op.token })
  const s = await openEvents({ cookie: session.cookie })
  t.equal(await s.next(), 'retry: 2000')
  await api('POST', `/v1/tokens/${op.id}/revoke`)
  t.equal(await s.next(), 'event: ended\ndata: {"code":"CP_ERR_CONSOLE_SESSION"}')
  t.equal(await s.next(), null, 'and the stream ends')
})

t.test('the feed hands out what others wrote at its next poll, and at most a batch of the newest', async (t) => {
  const feed = new ConsoleFeed(cp.ctx, { pollMs: 500, maxBatch: 2 })
  t.teardown(() => feed.close())
  const got: FeedBatch[] = []
  const unsubscribe = await feed.subscribe((b) => got.push(b))
  await feed.subscribe(() => {
    throw new Error('a listener that fails')
  })
  // Written behind the feed's back, as another replica would: no nudge.
  for (const name of ['a1', 'a2', 'a3']) await cp.ctx.store.transaction((tx) => cp.ctx.audit.append(tx, { actor: 'system:test', action: 'test.write', target: name, outcome: 'ok', reason: 'ok' }))
  t.same(got, [], 'nothing before the poll')
  clock.advance(500)
  await until(() => got.length === 1, 'the poll read the log')
  t.same(got[0]?.entries.map((e) => e.target), ['a2', 'a3'], 'the newest two')
  t.equal(got[0]?.skipped, 1, 'and how many were passed over')
  t.match(h.logs.join(''), /console feed: a listener failed/, 'a failing listener is logged, and the others still hear')
  unsubscribe()
  feed.nudge()
  feed.close()
  await feed.read()
  t.equal(got.length, 1, 'nothing after close')
})

t.test('a feed whose store fails says so once per outage, and carries on when it is back', async (t) => {
  const logs: string[] = []
  let down = true
  const store = { ...cp.ctx.store, read: (fn: Parameters<typeof cp.ctx.store.read>[0]) => (down ? Promise.reject(new Error('store away')) : cp.ctx.store.read(fn)) }
  const logger = { warn: (_o: unknown, m: string) => logs.push(m), info: (m: string) => logs.push(m), error: (_o: unknown, m: string) => logs.push(m) }
  const feed = new ConsoleFeed({ ...cp.ctx, store: store as typeof cp.ctx.store, logger: logger as unknown as typeof cp.ctx.logger })
  t.teardown(() => feed.close())
  await feed.subscribe(() => {})
  await feed.read()
  await feed.read()
  t.same(logs, ['console feed: reading the audit log failed; retrying at the next change'], 'logged once')
  down = false
  await feed.read()
  t.same(logs.at(-1), 'console feed: reading the audit log again')
})

t.test('closing the control plane ends open streams at once', async (t) => {
  const other = await startTestControlPlane(t)
  const res = await fetch(`${other.cp.url}/ui/api/events`, { headers: { authorization: `Bearer ${other.adminToken}` } })
  const body = res.text()
  await other.cp.close()
  t.equal(await body, 'retry: 2000\n\n', 'the stream ended with the control plane')
})
