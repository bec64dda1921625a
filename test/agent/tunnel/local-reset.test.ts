// How the exposing agent ends its upstream connection when it stops mid-stream:
// always a reset, never a FIN a service could read as "request complete". The
// tunnel-break and peer-reset cases are in tunnel.test.ts; here the agent itself
// stops: shutdown (SIGTERM closes the service) and a process exit without one.
import t from 'tap'
import { once } from 'node:events'

import { resetLocalSocketsAtExit } from '../../../agent/src/tunnel/service.js'
import { tcpProxy, type TcpProxy } from '../../kit/tcp-proxy.js'
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

// The other agent killed -9: its kernel ends the WebSocket's TCP connection with a FIN
// (nothing unread) or a reset (something unread), and no CLOSE record. The surviving
// agent, whichever it is, must reset its own local socket: the service behind the
// exposing agent (an upload cut short) and the client of the connecting agent (a
// download cut short) each see ECONNRESET, never a clean end short of the length.
// A relay between the agents cuts the connection both ways, as the dead kernel would.
for (const cut of ['FIN', 'reset'] as const) {
  for (const inFlight of [false, true]) {
    t.test(`the peer agent dying mid-stream (its WebSocket ended by a ${cut}${inFlight ? ', data in flight' : ''}) resets the surviving agent's local socket`, async (t) => {
      let relay: TcpProxy | undefined
      let svcSide: Promise<string> | undefined
      let received = 0
      const p = await startTunnelPair(t, {
        onUpstream: (s) => {
          svcSide = outcome(s)
          s.on('data', (d: Buffer) => (received += d.length))
          s.write(Buffer.alloc(64 * 1024, 7)) // a download under way
        },
        endpoint: async (b) => {
          relay = await tcpProxy(t, b)
          return `ws://127.0.0.1:${relay.port}/v1/tunnel`
        },
      })
      const c = await p.client()
      const how = outcome(c)
      await once(c, 'data')
      c.write(Buffer.alloc(64 * 1024, 1)) // an upload under way
      await new Promise<void>((resolve) => {
        const check = (): void => void (received >= 64 * 1024 ? resolve() : setImmediate(check))
        check()
      })
      if (inFlight) c.write(Buffer.alloc(512 * 1024, 2))
      if (cut === 'FIN') await relay?.cut()
      else relay?.reset()
      t.equal(await svcSide, 'ECONNRESET', 'exposing agent survived: its service saw a reset, not a clean end')
      t.equal(await how, 'ECONNRESET', 'connecting agent survived: its client saw a reset, not a clean end')
    })
  }
}
