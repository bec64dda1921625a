// The pipe between a local TCP connection and a tunnel session: checksummed
// streams both ways, half-close in each direction, back-pressure with a reader
// that stops (measured in buffered bytes, not time), teardown on a reset from
// either side or a cut WebSocket, and a wire capture that holds no plaintext.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { Socket } from 'node:net'

import { AGENT_ERRORS } from '../../../agent/src/errors.js'
import { echo, echoWorks, outcome, readAll, startTcpTap, startTunnelPair, writeAll, type TunnelPair } from '../../kit/tunnel-pair.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Resolves once both agents have reported conn.close for their tunnel (returns their reasons). */
async function closed(p: TunnelPair, n = 1): Promise<Array<string | undefined>> {
  const a = await p.a.cap.usageEvent((e) => e.kind === 'conn.close' && p.a.cap.usage.filter((x) => x.kind === 'conn.close').length >= n)
  const b = await p.b.cap.usageEvent((e) => e.kind === 'conn.close' && p.b.cap.usage.filter((x) => x.kind === 'conn.close').length >= n)
  return [a.reason, b.reason]
}

/** Resolves once `value()` has not changed for `turns` event-loop turns: everything in between is stuck. */
async function stalled(value: () => number, turns = 200): Promise<void> {
  let last = value()
  let same = 0
  while (same < turns) {
    await new Promise((r) => setImmediate(r))
    const v = value()
    same = v === last ? same + 1 : 0
    last = v
  }
}

t.test('carries a checksummed stream both ways at once, and closes both tunnels cleanly', async (t) => {
  const p = await startTunnelPair(t)
  const data = randomBytes(6 * 1024 * 1024 + 12345)
  const c = await p.client()
  const echoed = readAll(c)
  await writeAll(c, data)
  const got = await echoed
  t.equal(got.length, data.length)
  t.equal(sha(got), sha(data), 'every byte came back, in order')
  t.same(await closed(p), [undefined, undefined], 'both sides report a clean close')
  const aClose = p.a.cap.usage.find((e) => e.kind === 'conn.close')
  t.match(aClose, { pairId: 'billing:orders', peerService: 'billing', peerAgent: p.b.agentId, keyVersion: 1, bytesIn: data.length, bytesOut: data.length })
  const bClose = p.b.cap.usage.find((e) => e.kind === 'conn.close')
  t.match(bClose, { peerService: 'orders', peerAgent: p.a.agentId, bytesIn: data.length, bytesOut: data.length })
  t.match(p.a.cap.usage.find((e) => e.kind === 'conn.open'), { pairId: 'billing:orders', peerAgent: p.b.agentId, keyVersion: 1 })
  t.equal(p.a.svc.stats().open, 0)
  t.equal(p.b.svc.stats().open, 0)
  t.equal(p.a.svc.stats().bytesOut, data.length)
})

t.test('half-close: the client shuts its write side, the service answers, then closes', async (t) => {
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      const parts: Buffer[] = []
      s.on('data', (d: Buffer) => parts.push(d))
      s.on('end', () => s.end(`got ${sha(Buffer.concat(parts))}`))
    },
  })
  const data = randomBytes(1024 * 1024)
  const c = await p.client()
  const answer = readAll(c)
  await writeAll(c, data) // ends our side
  t.equal((await answer).toString(), `got ${sha(data)}`, 'the answer came after our FIN, then a clean FIN')
  t.same(await closed(p), [undefined, undefined])
})

t.test('half-close: the service shuts first, the client keeps sending until it is done', async (t) => {
  let received: Promise<Buffer> | undefined
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      received = readAll(s)
      s.end('greeting, and that is all from me')
    },
  })
  const c = await p.client()
  const fromService = readAll(c)
  t.equal((await fromService).toString(), 'greeting, and that is all from me', 'the service\'s FIN arrived as a clean end')
  const data = randomBytes(512 * 1024)
  await writeAll(c, data)
  t.equal(sha(await (received as Promise<Buffer>)), sha(data), 'data after the other side ended still arrives in full')
  t.same(await closed(p), [undefined, undefined])
})

t.test('back-pressure: a reader that stops holds the writer back with bounded agent buffers, and reading again drains every byte', async (t) => {
  let arrive: (s: Socket) => void = () => {}
  const arrived = new Promise<Socket>((resolve) => (arrive = resolve))
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      s.pause()
      arrive(s)
    },
  })
  // What either agent may hold (pipe.ts): its high-water mark of records in flight,
  // plus what one local read and one parsed WebSocket read add before a pause lands.
  const bound = 2 * p.limits.highWaterBytes + 512 * 1024
  // Far beyond every buffer on the way (the agents' and three loopback connections'
  // kernel buffers, ~15 MiB here): a writer that gets this far was never held back.
  const cap = 256 * 1024 * 1024
  const chunk = randomBytes(64 * 1024)
  let maxBuffered = 0
  const buffered = (): number => {
    maxBuffered = Math.max(maxBuffered, p.a.svc.stats().bufferedBytes, p.b.svc.stats().bufferedBytes)
    return maxBuffered
  }
  const c = await p.client()
  c.on('data', () => {})
  let written = 0
  // A fast writer: it writes until the socket says stop, and again at each 'drain'.
  // It also stops once an agent holds more than the bound, so a broken back-pressure
  // fails the assertions below instead of filling memory.
  const pump = (): void => {
    while (written < cap && buffered() <= bound) {
      written += chunk.length
      if (!c.write(chunk)) return
    }
  }
  c.on('drain', pump)
  const s = await arrived
  pump()

  // Phase 1: the reader reads nothing. Everything in one process moves by events, so
  // once nothing has moved for a few hundred event-loop turns, every buffer is full.
  await stalled(() => {
    const a = p.a.svc.stats()
    const b = p.b.svc.stats()
    buffered()
    return written + a.bytesOut + a.bufferedBytes + b.bytesIn + b.bufferedBytes
  })
  t.ok(written < cap, `the writer was held back (${(written / 2 ** 20).toFixed(1)} MiB written when everything stopped)`)
  t.ok(c.writableNeedDrain, 'the client socket waits for room')
  t.ok(maxBuffered <= bound, `while the reader was paused the agents held at most ${(maxBuffered / 2 ** 20).toFixed(2)} MiB (bound ${(bound / 2 ** 20).toFixed(2)} MiB)`)

  // Phase 2: the writer is done; the reader reads again, and everything on the way drains.
  c.off('drain', pump)
  c.end()
  const hash = createHash('sha256')
  let read = 0
  s.on('data', (d: Buffer) => {
    read += d.length
    hash.update(d)
    buffered()
  })
  s.resume()
  await once(s, 'end')
  t.equal(read, written, 'every byte written arrived')
  const expected = createHash('sha256')
  for (let i = 0; i < written / chunk.length; i++) expected.update(chunk)
  t.equal(hash.digest('hex'), expected.digest('hex'), 'in order')
  t.ok(maxBuffered <= bound, `the agents held at most ${(maxBuffered / 2 ** 20).toFixed(2)} MiB throughout (bound ${(bound / 2 ** 20).toFixed(2)} MiB)`)
  s.end()
  t.same(await closed(p), [undefined, undefined])
  t.same([p.a.svc.stats().bufferedBytes, p.b.svc.stats().bufferedBytes], [0, 0], 'nothing left buffered')
})

t.test('a client reset resets the service\'s connection and ends both tunnels with AGENT_ERR_UPSTREAM', async (t) => {
  let svcSide: Promise<string> | undefined
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      if (svcSide) return echo(s)
      svcSide = outcome(s)
      s.write('ready')
    },
  })
  const c = await p.client()
  await once(c, 'data')
  c.resetAndDestroy()
  t.same(await closed(p), ['AGENT_ERR_UPSTREAM', 'AGENT_ERR_UPSTREAM'])
  t.equal(await svcSide, 'ECONNRESET', 'the service saw a reset, not a clean end')
  t.ok(await echoWorks(p), 'the agents still serve')
})

t.test('a service reset resets the client and ends both tunnels with AGENT_ERR_UPSTREAM', async (t) => {
  const p = await startTunnelPair(t, { onUpstream: (s) => s.once('data', () => s.resetAndDestroy()) })
  const c = await p.client()
  const how = outcome(c)
  c.write('hello')
  t.equal(await how, 'ECONNRESET', 'the client saw a reset, not a clean end')
  t.same(await closed(p), ['AGENT_ERR_UPSTREAM', 'AGENT_ERR_UPSTREAM'])
})

t.test('a refused upstream connection resets the client (AGENT_ERR_UPSTREAM)', async (t) => {
  const p = await startTunnelPair(t)
  await new Promise<void>((resolve) => p.upstream.server.close(() => resolve()))
  const c = await p.client()
  const how = outcome(c)
  c.write('anyone?')
  t.equal(await how, 'ECONNRESET')
  t.same(await closed(p), ['AGENT_ERR_UPSTREAM', 'AGENT_ERR_UPSTREAM'])
})

t.test('a WebSocket cut without an authenticated CLOSE resets both local connections (truncation is never a clean end)', async (t) => {
  let svcSide: Promise<string> | undefined
  let tapRef: { cut(): void } | undefined
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      svcSide = outcome(s)
      s.write('ready')
    },
    endpoint: async (b) => {
      const tap = await startTcpTap(t, () => b)
      tapRef = tap
      return `ws://127.0.0.1:${tap.port}/v1/tunnel`
    },
  })
  const c = await p.client()
  const how = outcome(c)
  await once(c, 'data')
  tapRef?.cut()
  t.equal(await how, 'ECONNRESET', 'client: reset')
  t.equal(await svcSide, 'ECONNRESET', 'service: reset')
  t.same(await closed(p), ['AGENT_ERR_TUNNEL_TRUNCATED', 'AGENT_ERR_TUNNEL_TRUNCATED'])
  t.equal(AGENT_ERRORS.AGENT_ERR_TUNNEL_TRUNCATED.closeCode, 4734)
})

t.test('a wire capture of a tunnel holds none of the plaintext, and no log holds the pair key', async (t) => {
  let tapRef: { up: Buffer[]; down: Buffer[] } | undefined
  const p = await startTunnelPair(t, {
    endpoint: async (b) => {
      const tap = await startTcpTap(t, () => b)
      tapRef = tap
      return `ws://127.0.0.1:${tap.port}/v1/tunnel`
    },
  })
  const marker = Buffer.from('TOP SECRET: the launch code is 0000; ')
  const data = Buffer.concat(Array.from({ length: 4000 }, () => marker))
  const c = await p.client()
  const echoed = readAll(c)
  await writeAll(c, data)
  t.equal(sha(await echoed), sha(data))
  const tap = tapRef as { up: Buffer[]; down: Buffer[] }
  const up = Buffer.concat(tap.up)
  const down = Buffer.concat(tap.down)
  t.ok(up.length > data.length && down.length > data.length, 'the data crossed the tap both ways')
  const probe = marker.subarray(0, 12)
  t.equal(up.indexOf(probe), -1, 'no plaintext towards the responder')
  t.equal(down.indexOf(probe), -1, 'no plaintext towards the initiator')
  await closed(p)
  const logs = p.a.cap.logText.join('') + p.b.cap.logText.join('')
  for (const v of p.versions) {
    const k = Buffer.from(v.key)
    for (const text of [k.toString('hex'), k.toString('base64'), k.toString('base64url')]) t.notOk(logs.includes(text), 'pair key absent from logs')
    t.equal(up.indexOf(k), -1, 'pair key absent from the wire')
  }
  t.ok(logs.includes('tunnel open'), 'the logs were captured')
})
