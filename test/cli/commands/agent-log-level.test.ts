// `keymesh agent log-level [LEVEL]` against a running agent, and the SIGHUP reload
// of the log level from flags, environment and --config (reloadLogLevel).
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { reloadLogLevel } from '../../../cli/commands/agent.js'
import { startTestControlPlane } from '../../kit/cp.js'
import { startTestAgent } from '../../kit/agent.js'
import { captureLogger } from '../../kit/logs.js'
import { runCli } from '../../kit/cli.js'

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
