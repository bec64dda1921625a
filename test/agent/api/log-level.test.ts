// The agent's log level at run time: GET/PUT /v1/log-level on the local API (token
// required, bad levels refused with a code), `keymesh agent log-level`, and the
// SIGHUP reload of --config's log-level (reloadLogLevel).
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { reloadLogLevel } from '../../../cli/commands/agent.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { startTestAgent } from '../../kit/agent.js'
import { captureLogger } from '../../kit/logs.js'
import { runCli } from '../../kit/cli.js'
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

t.test('keymesh agent log-level reads and sets the level', async (t) => {
  const h = await startTestControlPlane(t)
  const a = await startTestAgent(t, h, { service: 'web', api: true })
  const set = await runCli(['agent', 'log-level', 'warn', ...a.apiArgs])
  t.equal(set.code, 0, set.err)
  t.equal(set.out, 'debug → warn\n')
  const get = await runCli(['agent', 'log-level', ...a.apiArgs, '--json'])
  t.equal(get.code, 0, get.err)
  t.same(JSON.parse(get.out), { level: 'warn' })
  const bad = await runCli(['agent', 'log-level', 'loud', ...a.apiArgs])
  t.not(bad.code, 0)
  t.match(bad.err, /AGENT_ERR_BAD_REQUEST/)
})

t.test('SIGHUP re-reads log-level from --config; a bad file leaves the level as it is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keymesh-hup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'agent.json')
  const { logger, logs } = captureLogger([], 'info')
  const levels: string[] = []
  const agent = { setLogLevel: (l: string) => levels.push(l) }

  writeFileSync(file, JSON.stringify({ 'log-level': 'debug' }))
  reloadLogLevel({ config: file }, {}, agent, logger)
  t.same(levels, ['debug'])
  t.equal(logger.level, 'debug')

  reloadLogLevel({ config: file, logLevel: 'warn' }, {}, agent, logger)
  t.same(levels, ['debug', 'warn'], 'a flag still beats the file')

  writeFileSync(file, JSON.stringify({ 'log-level': 'loud' }))
  reloadLogLevel({ config: file }, {}, agent, logger)
  t.same(levels, ['debug', 'warn'], 'not applied')
  t.equal(logger.level, 'warn')
  t.match(logs.at(-1), /"code":"AGENT_ERR_CONFIG".*unchanged/)
})
