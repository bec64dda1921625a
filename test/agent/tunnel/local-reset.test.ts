// How the exposing agent ends its upstream connection when it stops mid-stream:
// always a reset, never a FIN a service could read as "request complete". The
// tunnel-break and peer-reset cases are in tunnel.test.ts; here the agent itself
// stops: shutdown (SIGTERM closes the service) and a process exit without one.
import t from 'tap'
import { once } from 'node:events'

import { resetLocalSocketsAtExit } from '../../../agent/src/tunnel/service.js'
import { outcome, startTunnelPair, type TunnelPair } from '../../kit/tunnel-pair.js'

/** A pair whose service answers "ready" to the first connection and reports how it ended. */
async function streaming(t: Tap): Promise<{ p: TunnelPair; svcSide: () => Promise<string> }> {
  let svcSide: Promise<string> | undefined
  const p = await startTunnelPair(t, {
    onUpstream: (s) => {
      svcSide = outcome(s)
      s.write('ready')
    },
  })
  return { p, svcSide: () => svcSide as Promise<string> }
}

type Tap = Parameters<typeof startTunnelPair>[0]

t.test('the exposing agent shutting down mid-stream resets the service\'s connection', async (t) => {
  const { p, svcSide } = await streaming(t)
  const c = await p.client()
  const how = outcome(c)
  await once(c, 'data')
  c.write('half a request') // the service is mid-request when its agent stops
  await p.b.svc.close()
  t.equal(await svcSide(), 'ECONNRESET', 'the service saw a reset, not a clean end')
  t.equal(await how, 'ECONNRESET', 'the client saw a reset, not a clean end')
})

t.test('a process exiting without closing its services resets every local socket', async (t) => {
  const { p, svcSide } = await streaming(t)
  t.ok(process.listeners('exit').includes(resetLocalSocketsAtExit), 'armed while services run')
  const c = await p.client()
  const how = outcome(c)
  await once(c, 'data')
  resetLocalSocketsAtExit() // what process 'exit' runs on an uncaught error or process.exit()
  t.equal(await svcSide(), 'ECONNRESET', 'exposing side: the service saw a reset')
  t.equal(await how, 'ECONNRESET', 'connecting side: the client saw a reset')
  await Promise.all([p.a.svc.close(), p.b.svc.close()])
  t.notOk(process.listeners('exit').includes(resetLocalSocketsAtExit), 'disarmed once every service closed')
})
