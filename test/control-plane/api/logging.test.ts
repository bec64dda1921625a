import t from 'tap'

import { startTestControlPlane } from '../../kit/cp.js'

t.test('the log level changes at run time, audited, and reaches the HTTP layer', async (t) => {
  const cp = await startTestControlPlane(t)
  const start = (await cp.api('GET', '/v1/log-level')).body.level as string
  t.same((await cp.api('PUT', '/v1/log-level', { level: 'warn' })).body, { level: 'warn', previous: start })
  t.equal((await cp.api('GET', '/v1/log-level')).body.level, 'warn')
  const quiet = cp.logs.length
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'db' })
  t.notOk(cp.logs.slice(quiet).some((l) => /"level":(20|30)/.test(l)), 'at warn: no info or debug lines, the HTTP layer\'s included')

  const dry = await cp.api('PUT', '/v1/log-level?dryRun=true', { level: 'debug' })
  t.match(dry.body, { dryRun: true, changes: [{ action: 'log.level' }] })
  t.equal(cp.cp.ctx.logger.level, 'warn', 'a dry run changes nothing')

  await cp.api('PUT', '/v1/log-level', { level: 'debug' })
  const loud = cp.logs.length
  await cp.api('POST', '/v1/intentions', { src: 'web', dst: 'api' })
  t.ok(cp.logs.slice(loud).some((l) => /"component":"http"/.test(l) && /"request body"/.test(l)), 'back at debug, the HTTP layer logs request bodies again')
  t.match(await cp.cp.ctx.audit.query(cp.cp.ctx.store, { action: 'log.level' }), [{ outcome: 'ok', reason: `log level ${start} → warn` }, { outcome: 'ok', reason: 'log level warn → debug' }])
  t.equal((await cp.api('PUT', '/v1/log-level', { level: 'loud' })).body.error.code, 'CP_ERR_INVALID_FIELD')
})
