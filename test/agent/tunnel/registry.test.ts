// Live tunnels follow the key set (agent/src/tunnel/registry.ts): rotation under
// load with in-band re-handshakes and no byte lost, time and volume limits,
// revocation, expiry of a version past its grace period, intentions withdrawn.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { createServer } from 'node:http'
import type { Socket } from 'node:net'
import { WebSocketServer } from 'ws'

import { DEFAULT_LIMITS } from '../../../agent/src/config.js'
import { nodeSuite } from '../../../protocol/src/index.js'
import { TunnelSession } from '../../../protocol/src/index.js'
import { HOUR } from '../../kit/fake-clock.js'
import { echoWorks, outcome, readAll, startTunnelPair, type Tap, type TunnelPair } from '../../kit/tunnel-pair.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const rekeyed = (v?: number) => (l: Record<string, unknown>): boolean => l['msg'] === 'tunnel re-keyed' && (v === undefined || l['keyVersion'] === v)

/** An open tunnel whose client socket has exchanged one echo (so both sides are open). */
async function openTunnel(p: TunnelPair): Promise<Socket> {
  const c = await p.client()
  c.write('ping')
  await once(c, 'data')
  return c
}

/** The key version of each tunnel A opened, in order. */
const openedVersions = (p: TunnelPair): unknown[] => p.a.cap.usage.filter((e) => e.kind === 'conn.open').map((e) => e.keyVersion)

async function closeReasons(p: TunnelPair): Promise<Array<string | undefined>> {
  const a = await p.a.cap.usageEvent((e) => e.kind === 'conn.close')
  const b = await p.b.cap.usageEvent((e) => e.kind === 'conn.close')
  return [a.reason, b.reason]
}

t.test('rotation under load: three rotations re-handshake in band, no byte lost or repeated', async (t) => {
  const p = await startTunnelPair(t)
  const total = 8 * 1024 * 1024
  const data = randomBytes(total)
  const c = await p.client()
  const parts: Buffer[] = []
  let received = 0
  const rotations: number[] = []
  let receivedAtLastRekey = 0
  const progress = new EventEmitter()
  const done = new Promise<void>((resolve, reject) => {
    c.on('data', (d: Buffer) => {
      parts.push(d)
      received += d.length
      progress.emit('data')
    })
    c.on('end', () => resolve())
    c.on('error', reject)
  })
  // Rotate mid-stream at 1/4, 1/2 and 5/8 of the echo: both key sets get the new
  // version; at the settling sweep the initiator re-handshakes in band while the
  // data keeps flowing both ways.
  const driver = (async () => {
    for (const mark of [total / 4, total / 2, (5 * total) / 8]) {
      while (received < mark) await once(progress, 'data')
      const v = p.rotate()
      p.clock.advance(p.limits.sweepMs)
      await p.a.cap.logLine(rekeyed(v))
      await p.b.cap.logLine(rekeyed(v))
      rotations.push(v)
      receivedAtLastRekey = received
    }
  })()
  // The last quarter is written only once all three rotations are through, so the
  // stream spans them: data before, during and after each.
  for (let off = 0; off < total; off += 64 * 1024) {
    if (off === (3 * total) / 4) await driver
    if (!c.write(data.subarray(off, off + 64 * 1024))) await once(c, 'drain')
  }
  await driver
  c.end()
  await done
  const got = Buffer.concat(parts)
  t.same(rotations, [2, 3, 4])
  t.ok(receivedAtLastRekey < total, 'data kept flowing after the last re-handshake')
  t.equal(got.length, total, 'no byte lost or repeated')
  t.equal(sha(got), sha(data), 'checksum matches across three rotations')
  for (const side of [p.a, p.b]) {
    t.same(side.cap.logs.filter(rekeyed()).map((l) => l['keyVersion']), [2, 3, 4], `${side.service}: re-keyed three times, in order`)
  }
  t.same(await closeReasons(p), [undefined, undefined], 'the connection was never dropped')
  t.match(p.a.cap.usage.find((e) => e.kind === 'conn.close'), { keyVersion: 4, bytesOut: total, bytesIn: total })
  t.equal(p.a.cap.usage.filter((e) => e.kind === 'conn.open').length, 1, 'one connection throughout')
})

t.test('a rotation the initiator hears first neither drops a tunnel nor refuses a new one', async (t) => {
  const p = await startTunnelPair(t)
  const c = await openTunnel(p)
  // Only A hears of version 2 for now.
  p.rotate()
  p.b.keyset.update({ ...p.entryB(), versions: p.entryB().versions.filter((v) => v.version === 1).map((v) => ({ ...v, state: 'current' as const, notAfter: null })) })
  t.ok(await echoWorks(p), 'a new connection still uses version 1, which B holds')
  t.equal(p.a.cap.logs.filter(rekeyed()).length, 0, 'no re-handshake before the settling time')
  c.write('still here')
  await once(c, 'data')
  // B hears of it; after the settling sweep the tunnel moves to version 2.
  p.b.keyset.update(p.entryB())
  p.clock.advance(p.limits.sweepMs)
  await p.a.cap.logLine(rekeyed(2))
  await p.b.cap.logLine(rekeyed(2))
  c.write('after')
  const [d] = await once(c, 'data')
  t.equal(String(d), 'after')
  t.same(p.a.svc.stats().byPair['billing:orders']?.keyVersions, [2])
  c.end()
  t.equal(p.a.cap.usage.filter((e) => e.kind === 'conn.reject' || e.kind === 'handshake.fail').length, 0)
})

t.test('re-handshakes after rehandshakeAfterMs on the same key version', async (t) => {
  const p = await startTunnelPair(t)
  const c = await openTunnel(p)
  p.clock.advance(p.limits.rehandshakeAfterMs - p.limits.sweepMs)
  t.equal(p.a.cap.logs.filter(rekeyed()).length, 0, 'not before the limit')
  p.clock.advance(p.limits.sweepMs)
  await p.a.cap.logLine(rekeyed(1))
  await p.b.cap.logLine(rekeyed(1))
  c.write('after the time limit')
  const [d] = await once(c, 'data')
  t.equal(String(d), 'after the time limit')
  c.end()
  t.same(await closeReasons(p), [undefined, undefined])
})

t.test('re-handshakes after rehandshakeAfterRecords records under one key', async (t) => {
  const p = await startTunnelPair(t, { limits: { rehandshakeAfterRecords: 20 } })
  const c = await openTunnel(p)
  for (let i = 0; i < 25; i++) {
    c.write(`record ${i}`)
    await once(c, 'data')
  }
  p.clock.advance(p.limits.sweepMs)
  await p.a.cap.logLine(rekeyed(1))
  await p.b.cap.logLine(rekeyed(1))
  c.end()
  t.same(await closeReasons(p), [undefined, undefined])
})

t.test('a revoked peer agent\'s tunnels end at once with AGENT_ERR_PEER_REVOKED, on either side', async (t) => {
  for (const revokedBy of ['responder', 'initiator'] as const) {
    const p = await startTunnelPair(t)
    const c = await openTunnel(p)
    const how = outcome(c)
    if (revokedBy === 'responder') p.bListsA = false
    else p.aListsB = false
    p.push() // no clock movement: the change alone ends it
    t.equal(await how, 'ECONNRESET', `${revokedBy}: the client is reset`)
    t.same(await closeReasons(p), ['AGENT_ERR_PEER_REVOKED', 'AGENT_ERR_PEER_REVOKED'], `${revokedBy}: both sides report the revocation`)
    t.equal(p.a.svc.stats().open + p.b.svc.stats().open, 0)
  }
})

t.test('a tunnel whose key version passes its grace period ends with AGENT_ERR_KEY_EXPIRED', async (t) => {
  const p = await startTunnelPair(t)
  const c = await openTunnel(p)
  const how = outcome(c)
  // B rotates with a short grace; A (the initiator) never hears of it, so nothing re-handshakes.
  const entryA = p.entryA()
  p.rotate(5_000)
  p.a.keyset.update(entryA)
  p.clock.advance(4_000)
  t.equal(p.b.svc.stats().open, 1, 'still open within the grace period')
  p.clock.advance(2_000)
  t.equal(await how, 'ECONNRESET')
  t.same(await closeReasons(p), ['AGENT_ERR_KEY_EXPIRED', 'AGENT_ERR_KEY_EXPIRED'])
})

t.test('withdrawing the intention or removing the pair ends tunnels with AGENT_ERR_NO_INTENTION', async (t) => {
  const p = await startTunnelPair(t)
  const c1 = await openTunnel(p)
  const how1 = outcome(c1)
  p.mayInitiate = false
  p.push()
  t.equal(await how1, 'ECONNRESET')
  t.same(await closeReasons(p), ['AGENT_ERR_NO_INTENTION', 'AGENT_ERR_NO_INTENTION'])

  const q = await startTunnelPair(t)
  const c2 = await openTunnel(q)
  const how2 = outcome(c2)
  q.b.keyset.remove('billing:orders')
  t.equal(await how2, 'ECONNRESET')
  t.same(await closeReasons(q), ['AGENT_ERR_NO_INTENTION', 'AGENT_ERR_NO_INTENTION'])
})

t.test('a half-closed tunnel keeps flowing the other way through a rotation', async (t) => {
  let upstreamData: Promise<Buffer> | undefined
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      upstreamData = readAll(s)
      s.end('bye')
    },
  })
  const c = await p.client()
  const fromService = readAll(c)
  t.equal(String(await fromService), 'bye')
  p.rotate()
  p.clock.advance(p.limits.sweepMs) // cannot re-handshake half-closed: it keeps version 1
  c.end('late data')
  t.equal(String(await upstreamData), 'late data')
  t.same(await closeReasons(p), [undefined, undefined])
  t.match(p.a.cap.usage.find((e) => e.kind === 'conn.close'), { keyVersion: 1 })
})

t.test('a re-handshake the peer never answers ends the tunnel after handshakeTimeoutMs (AGENT_ERR_HANDSHAKE_TIMEOUT)', async (t) => {
  const p = await startTunnelPair(t)
  // A stand-in for agent B that completes the first handshake and then reads nothing.
  const server = createServer()
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  let opened: () => void = () => {}
  const isOpen = new Promise<void>((r) => (opened = r))
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      let deaf = false
      const session = new TunnelSession({
        suite: nodeSuite,
        staticKey: p.b.staticKey,
        role: 'responder',
        resolve: () => ({ psk: p.versions[0]?.key as Uint8Array, remoteStatic: p.a.staticKey.publicKey }),
        send: (b) => ws.send(b),
        handler: { onOpen: () => ((deaf = true), opened()), onData: () => {}, onEnd: () => {}, onRekeyed: () => {}, onError: () => {} },
      })
      ws.on('error', () => {})
      ws.on('message', (d: Buffer) => {
        if (!deaf) session.receive(d)
      })
    }),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const ws of wss.clients) ws.terminate()
    server.close()
  })
  p.endpoint = `ws://127.0.0.1:${(server.address() as { port: number }).port}`
  p.a.keyset.update(p.entryA())
  const c = await p.client()
  const how = outcome(c)
  await isOpen
  await p.a.cap.usageEvent((e) => e.kind === 'conn.open')
  p.clock.advance(p.limits.rehandshakeAfterMs)
  t.ok(p.a.cap.logs.some((l) => l['msg'] === 'tunnel re-handshake started'), 'the initiator asked for a re-handshake')
  p.clock.advance(p.limits.handshakeTimeoutMs - p.limits.sweepMs)
  t.equal(p.a.svc.stats().open, 1, 'still waiting within the timeout')
  p.clock.advance(p.limits.sweepMs)
  t.equal(await how, 'ECONNRESET')
  t.match(await p.a.cap.usageEvent((e) => e.kind === 'conn.close'), { reason: 'AGENT_ERR_HANDSHAKE_TIMEOUT' })
})

// Clock jumps (issue 17): the settling time and the re-handshake timers are elapsed
// time, so a wall clock stepped three hours either way changes neither.
t.test('an initiator whose wall clock jumps back 3 h mid-settling still moves to the new version on time, and still re-handshakes', async (t) => {
  const p = await startTunnelPair(t)
  const c = await openTunnel(p)
  p.rotate()
  p.clockA.jump(-3 * HOUR)
  t.ok(await echoWorks(p), 'a connection during the settling time works')
  t.same(openedVersions(p), [1, 1], 'and keeps to the replaced version')
  p.clock.advance(p.limits.sweepMs)
  await p.a.cap.logLine(rekeyed(2))
  t.ok(await echoWorks(p), 'a connection after the settling time works')
  t.same(openedVersions(p), [1, 1, 2], 'and uses the new version: the settling time ended on time, not 3 h late')
  p.clockA.jump(-3 * HOUR)
  p.clock.advance(p.limits.rehandshakeAfterMs)
  await p.a.cap.logCount(rekeyed(2), 2)
  c.write('after two jumps back')
  const [d] = await once(c, 'data')
  t.equal(String(d), 'after two jumps back', 'the live tunnel re-handshook after rehandshakeAfterMs of elapsed time and carries on')
  c.end()
  t.same(await closeReasons(p), [undefined, undefined], 'never dropped')
})

t.test('an initiator whose wall clock jumps ahead 3 h mid-settling neither moves early nor drops the version still in grace', async (t) => {
  const p = await startTunnelPair(t)
  const c = await openTunnel(p)
  // Only A hears of version 2 for now; then A's clock jumps past v1's notAfter (1 h away).
  p.rotate()
  p.b.keyset.update({ ...p.entryB(), versions: p.entryB().versions.filter((v) => v.version === 1).map((v) => ({ ...v, state: 'current' as const, notAfter: null })) })
  p.clockA.jump(3 * HOUR)
  p.a.keyset.update(p.entryA()) // the same set again, as a resync would send it, checks every live tunnel
  t.ok(await echoWorks(p), 'a new connection works: version 1, which B holds, is still in its grace')
  t.same(openedVersions(p), [1, 1])
  c.write('still here')
  t.equal(String((await once(c, 'data'))[0]), 'still here', 'the live tunnel on version 1 was not ended as expired')
  p.b.keyset.update(p.entryB())
  p.clock.advance(p.limits.sweepMs)
  await p.a.cap.logLine(rekeyed(2))
  t.ok(await echoWorks(p))
  t.same(openedVersions(p), [1, 1, 2], 'version 2 after the settling time')
  t.ok(p.a.keyset.version(p.entryA().pairId, 1), 'version 1 is usable for the rest of its grace...')
  p.clock.advance(HOUR)
  t.equal(p.a.keyset.version(p.entryA().pairId, 1), undefined, '...and not after it')
  c.end()
  t.same(await closeReasons(p), [undefined, undefined], 'never dropped')
})

/**
 * A pair with a live tunnel on v1, then a rotation that reached A as a push just
 * before A's control session went down: B (whose push never came) holds only v1.
 * `before` runs between the tunnel and the rotation.
 */
async function rotationBMissed(t: Tap, before?: (p: TunnelPair) => void, graceMs?: number): Promise<{ p: TunnelPair; c: Socket }> {
  const epoch = { now: 1 as number | undefined }
  const p = await startTunnelPair(t, { controlEpochA: () => epoch.now })
  const c = await openTunnel(p)
  before?.(p)
  const v1 = new Uint8Array((p.versions[0] as { key: Uint8Array }).key)
  p.rotate(graceMs)
  epoch.now = undefined // the control plane died right after pushing to A
  p.b.keyset.update({ ...p.entryB(), versions: [{ version: 1, key: v1, state: 'current', notAfter: null }] })
  return { p, c }
}

const started = (to: number) => (l: Record<string, unknown>): boolean => l['msg'] === 'tunnel re-handshake started' && l['to'] === to

t.test('a live tunnel does not move to a version its peer may have missed until the peer shows it holds it', async (t) => {
  const { p, c } = await rotationBMissed(t)
  p.clock.advance(p.limits.sweepMs)
  p.clock.advance(p.limits.sweepMs)
  t.equal(p.a.cap.logs.filter(started(2)).length, 0, 'no re-handshake to v2: B may not hold it')
  c.write('still')
  t.equal(String((await once(c, 'data'))[0]), 'still', 'the tunnel carries on, on v1')
  // B catches up (its push, or a key set it asked for); a new tunnel on v2 shows it.
  p.b.keyset.update(p.entryB())
  t.ok(await echoWorks(p), 'a new tunnel on v2')
  await p.a.cap.logLine(rekeyed(2))
  await p.b.cap.logLine(rekeyed(2))
  c.write('moved')
  t.equal(String((await once(c, 'data'))[0]), 'moved')
  t.same(p.a.svc.stats().byPair['billing:orders']?.keyVersions, [2])
  c.end()
  t.same(await closeReasons(p), [undefined, undefined], 'never dropped')
})

t.test("the control plane's peer.up shows the peer holds the current versions: live tunnels move then", async (t) => {
  const { p, c } = await rotationBMissed(t)
  p.clock.advance(p.limits.sweepMs)
  p.b.keyset.update(p.entryB()) // B reconnected and has the whole set
  p.a.svc.peerUp(p.a.agentId) // (A's own id: no peer of this pair, nothing changes)
  t.equal(p.a.cap.logs.filter(started(2)).length, 0)
  p.a.svc.peerUp(p.b.agentId)
  await p.a.cap.logLine(rekeyed(2))
  c.write('moved')
  t.equal(String((await once(c, 'data'))[0]), 'moved')
  c.end()
})

t.test('waiting for the peer, a tunnel due by time re-keys on the version it uses; after rehandshakeAfterMs it moves anyway', async (t) => {
  const { p, c } = await rotationBMissed(t, (q) => q.clock.advance(q.limits.rehandshakeAfterMs / 2))
  p.clock.advance(p.limits.rehandshakeAfterMs / 2) // due by time; v2 came only half a period ago
  await p.a.cap.logLine(rekeyed(1))
  t.equal(p.a.cap.logs.filter(started(2)).length, 0, 'fresh keys on v1, not a move to v2')
  c.write('still')
  t.equal(String((await once(c, 'data'))[0]), 'still')
  p.b.keyset.update(p.entryB()) // B has it by now, but nothing has shown it
  p.clock.advance(p.limits.rehandshakeAfterMs / 2)
  await p.a.cap.logLine(rekeyed(2))
  c.end()
  t.same(await closeReasons(p), [undefined, undefined])
})

t.test('a refusal of the new version holds live tunnels back, even with the control session up', async (t) => {
  const p = await startTunnelPair(t)
  const c = await openTunnel(p)
  const half = p.limits.sweepMs / 2
  const v1 = new Uint8Array((p.versions[0] as { key: Uint8Array }).key)
  p.clock.advance(half) // half way between two sweeps
  p.rotate()
  p.b.keyset.update({ ...p.entryB(), versions: [{ version: 1, key: v1, state: 'current', notAfter: null }] })
  p.clock.advance(half) // a sweep, within the settling time
  p.clock.advance(half) // settled, between sweeps: a new tunnel proposes v2, is refused, falls back
  t.ok(await echoWorks(p))
  t.equal(p.b.svc.stats().preauthRefusalsByCode['AGENT_ERR_KEY_VERSION'], 1)
  p.clock.advance(half)
  p.clock.advance(2 * p.limits.sweepMs) // sweeps after the new settling time
  t.equal(p.a.cap.logs.filter(started(2)).length, 0, 'B refused v2: the live tunnel stays on v1')
  c.write('still')
  t.equal(String((await once(c, 'data'))[0]), 'still')
  c.end()
  t.same(await closeReasons(p), [undefined, undefined])
})

t.test('waiting for the peer, a tunnel whose version is about to leave its grace moves anyway', async (t) => {
  // A grace shorter than rehandshakeAfterMs, which would move it first.
  const grace = DEFAULT_LIMITS.rehandshakeAfterMs / 4
  const { p, c } = await rotationBMissed(t, undefined, grace)
  p.clock.advance(grace - 3 * p.limits.sweepMs)
  t.equal(p.a.cap.logs.filter(started(2)).length, 0, 'held back until then')
  p.b.keyset.update(p.entryB()) // (B has it by now; nothing has shown it)
  p.clock.advance(p.limits.sweepMs)
  await p.a.cap.logLine(rekeyed(2))
  c.end()
  t.same(await closeReasons(p), [undefined, undefined])
})

// Where the key set's wall-clock notAfter meets the monotonic timers: "about to leave
// its grace" is the grace left as elapsed time, so a step of the agent's wall clock
// neither moves a live tunnel early to a version its peer may not hold, nor keeps it
// on a version past the grace the control plane measures on its own clock.
t.test('a wall clock stepped ahead 3 h does not move a live tunnel to a version its peer may have missed', async (t) => {
  const { p, c } = await rotationBMissed(t)
  p.clockA.jump(3 * HOUR) // v1's notAfter (1 h away) is behind A's wall clock now; its grace is not
  p.clock.advance(p.limits.sweepMs)
  p.clock.advance(p.limits.sweepMs)
  t.equal(p.a.cap.logs.filter(started(2)).length, 0, 'no re-handshake to v2: B may not hold it, and v1 has most of an hour left')
  c.write('still')
  t.equal(String((await once(c, 'data'))[0]), 'still', 'the tunnel carries on, on v1')
  t.same(p.a.svc.stats().byPair['billing:orders']?.keyVersions, [1])
  c.end()
  t.same(await closeReasons(p), [undefined, undefined], 'never dropped')
})

t.test('a wall clock stepped back 3 h still moves a live tunnel whose version is about to leave its grace', async (t) => {
  const grace = DEFAULT_LIMITS.rehandshakeAfterMs / 4
  const { p, c } = await rotationBMissed(t, undefined, grace)
  p.clockA.jump(-3 * HOUR) // on A's wall clock v1 has 3 h more; the control plane ends it on time
  p.clock.advance(grace - 3 * p.limits.sweepMs)
  t.equal(p.a.cap.logs.filter(started(2)).length, 0, 'held back until then')
  p.b.keyset.update(p.entryB()) // (B has it by now; nothing has shown it)
  p.clock.advance(p.limits.sweepMs)
  t.equal(p.a.cap.logs.filter(started(2)).length, 1, 'moved with the grace about to end, not 3 h later')
  await p.a.cap.logLine(rekeyed(2))
  c.end()
  t.same(await closeReasons(p), [undefined, undefined])
})
