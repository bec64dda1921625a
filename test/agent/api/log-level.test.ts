// The agent's log level at run time: GET/PUT /v1/log-level on the local API (token
// required, bad levels refused with a code). The CLI side (`keymesh agent log-level`,
// SIGHUP) is in test/cli/commands/agent-log-level.test.ts.
import t from 'tap'

import { startTestControlPlane } from '../../kit/cp.js'
import { startTestAgent } from '../../kit/agent.js'
import { until } from '../../kit/wait.js'

const requestLines = (logs: string[]): number => logs.filter((l) => l.includes('"msg":"API request"')).length

t.test('PUT /v1/log-level changes what the agent logs; bad levels and missing tokens are refused', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await startTestAgent(t, h, { service: 'web', api: true })
  const url = `${a.agent.apiUrl}/v1/log-level`
  const put = (body: unknown, headers = a.apiHeaders) => fetch(url, { method: 'PUT', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) })

  t.same(await (await fetch(url, { headers: a.apiHeaders })).json(), { level: 'debug' }, 'the test agent starts at debug')
  // The request line is written when the answer has gone out: waited for, not assumed.
  await until(() => requestLines(a.logs) > 0, 'at debug, the API request is logged')

  const res = await put({ level: 'info' })
  t.equal(res.status, 200)
  t.same(await res.json(), { level: 'info', previous: 'debug' })
  const quiet = requestLines(a.logs)
  await fetch(`${a.agent.apiUrl}/v1/status`, { headers: a.apiHeaders })
  await fetch(`${a.agent.apiUrl}/readyz`)
  t.equal(requestLines(a.logs), quiet, 'at info, no request line appears')

  a.agent.setLogLevel('debug')
  await fetch(`${a.agent.apiUrl}/readyz`)
  await until(() => requestLines(a.logs) > quiet, 'back at debug, request lines appear again')
  t.pass('back at debug, request lines appear again')

  const bad = await put({ level: 'loud' })
  t.equal(bad.status, 400)
  t.match(await bad.json(), { error: { code: 'AGENT_ERR_BAD_REQUEST', message: /one of fatal, error, warn, info, debug, trace, silent/ } })
  const none = await put({})
  t.equal(none.status, 400)

  const anon = await put({ level: 'silent' }, {})
  t.equal(anon.status, 401)
  t.match(await anon.json(), { error: { code: 'AGENT_ERR_API_TOKEN' } })
  t.equal((await fetch(url)).status, 401, 'GET needs the token too')
  t.same(await (await fetch(url, { headers: a.apiHeaders })).json(), { level: 'debug' }, 'the refused requests changed nothing')
})
