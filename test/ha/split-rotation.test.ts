// kill -9 of the control plane in the middle of a rotation's pushes, with tunnels
// opened all along. The control plane (a child process, SQLite) pushes the new pair
// key version to the web agent's session and not to the api agent's (the kit's
// push-only trap: what a process that dies between the two pushes leaves), and is
// killed. The web agent then proposes the new version to an api agent that does not
// hold it: the api agent holds the hello and asks for its key set (catch-up.ts),
// and the web agent falls back to the previous version when refused. The control
// plane restarts on its port; the api agent resyncs and the new version is used.
// Every tunnel opened meanwhile must be served: 0 refused.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Socket } from 'node:net'

import { systemClock } from '../../platform/src/index.js'
import { pairId } from '../../protocol/src/index.js'
import { dial, echoServer, startTestAgent, untilKeySet, type AgentControlPlane, type TestAgent } from '../kit/agent.js'
import { adminApi, startChildControlPlane } from '../kit/cp.js'
import { until } from '../kit/wait.js'

const PAIR = pairId('web', 'api')
const version = (a: TestAgent): number | undefined => a.agent.keyset.current(PAIR)?.version

/** One round trip through a fresh tunnel: true when the echo came back whole. */
async function roundTrip(web: TestAgent): Promise<boolean> {
  let s: Socket
  try {
    s = await dial(web.agent, 'api')
  } catch {
    return false
  }
  const sent = randomBytes(512)
  const chunks: Buffer[] = []
  const done = new Promise<boolean>((resolve) => {
    s.on('data', (c: Buffer) => chunks.push(c))
    s.once('end', () => resolve(Buffer.concat(chunks).equals(sent)))
    s.once('error', () => resolve(false))
    s.once('close', () => resolve(false))
  })
  s.end(sent)
  return done
}

/** Tunnels opened one after another by `lanes` clients until stop(), counted. */
function tunnelsThroughout(web: TestAgent, lanes: number) {
  const counts = { served: 0, refused: 0 }
  let stopped = false
  const wakers = new Set<() => void>()
  const lane = async (): Promise<void> => {
    while (!stopped) {
      if (await roundTrip(web)) counts.served++
      else counts.refused++
      for (const w of [...wakers]) w()
    }
  }
  const running = Promise.all(Array.from({ length: lanes }, lane))
  /** Resolves once `check` holds, checked after each tunnel. */
  const after = <T>(check: () => T, what: string) =>
    until(check, what, {
      ms: 60_000,
      on: (wake) => {
        wakers.add(wake)
        return () => wakers.delete(wake)
      },
      detail: () => JSON.stringify(counts),
    })
  return {
    counts,
    after,
    /** Resolves once `n` more tunnels were served. */
    served: (n: number, what: string) => {
      const target = counts.served + n
      return after(() => counts.served >= target, what)
    },
    stop: async () => {
      stopped = true
      await running
    },
  }
}

t.test('kill -9 of the control plane between the two pushes of a rotation: tunnels opened throughout, none refused', async (t) => {
  const dataDir = join(t.testdir(), 'cp')
  const first = await startChildControlPlane({ t, name: 'control plane', dataDir, faults: true })
  const port = Number(new URL(first.url).port)
  const h: AgentControlPlane = { cp: { url: first.url }, clock: systemClock, identityPub: first.identityPub(), api: adminApi(first.url, first.adminToken() as string) }
  t.equal((await h.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })).status, 201)
  const echo = await echoServer(t)
  // A short hold keeps the test short while the control plane is down (each hello offering v2 waits it out).
  const api = await startTestAgent(t, h, { service: 'api', expose: echo.address, limits: { keySetWaitMs: 500 } })
  const web = await startTestAgent(t, h, { service: 'web', connect: ['api'] })
  const webId = web.agent.status().agentId as string
  await untilKeySet(web.agent, () => web.agent.keyset.reachablePeers(PAIR).length === 1, 'web to learn the api agent')
  await untilKeySet(api.agent, () => api.agent.keyset.peer(PAIR, webId) !== undefined, 'api to learn the web agent')

  const load = tunnelsThroughout(web, 2)
  await load.served(4, 'tunnels before the rotation')

  await first.ask('push-only web', 'armed')
  const rotated = await h.api('POST', '/v1/pairs/api/web/rotate')
  t.equal(rotated.status, 200)
  t.equal(rotated.body.version, 2)
  await untilKeySet(web.agent, () => version(web) === 2, 'web to hold v2')
  t.equal(version(api), 1, 'the api agent never heard of v2')
  await first.kill()

  // web settles on v1 for limits.sweepMs, then proposes v2 to an api agent without it
  // and without a control plane: held, refused after keySetWaitMs, retried with v1.
  await load.after(() => api.logs.some((l) => l.includes('a peer agent is ahead of this key set')), 'api to be offered v2')
  await load.served(4, 'tunnels while the control plane is down')

  await startChildControlPlane({ t, name: 'restarted control plane', dataDir, port })
  await untilKeySet(api.agent, () => version(api) === 2, 'api to resync and hold v2', 60_000)
  const onV2 = (): boolean => web.logs.some((l) => l.includes('"msg":"tunnel open"') && l.includes('"keyVersion":2'))
  await load.after(onV2, 'a tunnel on v2')
  await load.served(4, 'tunnels after the resync')
  await load.stop()

  if (load.counts.refused > 0) {
    const interesting = (l: string): boolean => /"code"|reject|refus|ahead|held|retry|unreachable/.test(l)
    t.comment(['web:', ...web.logs.filter(interesting), 'api:', ...api.logs.filter(interesting)].join('\n'))
  }
  t.equal(load.counts.refused, 0, `0 of ${load.counts.served} tunnels refused`)
  t.ok(onV2(), 'tunnels moved to v2 once both agents held it')
  t.ok(api.logs.some((l) => l.includes('asking the control plane for it')), 'the api agent asked for its key set')
})
