import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'

import { REDACT_CENSOR, REDACT_PATHS, logRedaction, redactFields } from '../../platform/src/redact.js'

function capture(): { stream: Writable; lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  return { stream, lines }
}

t.test('a logger with logRedaction() writes no token, key byte or secret field', async (t) => {
  const key = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex')
  const token = 'kmt_op_0123456789abcdefghijklmnopqrstuv'
  const { stream, lines } = capture()
  const log = pino({ level: 'debug', redact: logRedaction(['message.pair.versions[*].key']) }, stream)
  log.info({
    req: { headers: { authorization: `Bearer ${token}`, cookie: 'session=abc123', host: 'cp' } },
    key: key.toString('base64'),
    body: { secret: key.toString('hex'), joinToken: 'not-a-path', name: 'orders' },
    message: { type: 'pair.update', pair: { versions: [{ version: 2, key: key.toString('base64url') }] } },
  }, 'logged')
  const line = lines.join('')
  for (const text of [token, 'abc123', key.toString('base64'), key.toString('hex'), key.toString('base64url')]) t.notOk(line.includes(text), `${text.slice(0, 12)}… is not in the line`)
  t.match(JSON.parse(line), {
    req: { headers: { authorization: REDACT_CENSOR, cookie: REDACT_CENSOR, host: 'cp' } },
    key: REDACT_CENSOR,
    body: { secret: REDACT_CENSOR, name: 'orders' },
    message: { pair: { versions: [{ version: 2, key: REDACT_CENSOR }] } },
  })
})

t.test('paths are the shared ones plus the extra ones, each once', async (t) => {
  const { paths, censor } = logRedaction(['msg.token', 'key'])
  t.equal(censor, '[Redacted]')
  t.same(paths, [...REDACT_PATHS, 'msg.token'])
  t.ok(REDACT_PATHS.includes('req.headers.authorization'))
  t.ok(Object.isFrozen(REDACT_PATHS))
})

t.test('redactFields replaces secret-looking fields at any depth, in any case', async (t) => {
  t.same(redactFields([{ apiKey: 'x', nested: { Token: 'y', ok: 1, list: [{ password: 'p' }] } }, 2, null]), [
    { apiKey: REDACT_CENSOR, nested: { Token: REDACT_CENSOR, ok: 1, list: [{ password: REDACT_CENSOR }] } },
    2,
    null,
  ])
  t.equal(redactFields('plain'), 'plain')
})
